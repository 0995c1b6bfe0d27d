"""Where a local CLI finds the admin token (and the CA of a TLS admin) without being told.

`tidal up` records, per admin URL, the path of the token file in its data dir (and the
certificate it serves, if any) in `$XDG_CONFIG_HOME/tidal/servers.json` (~/.config by default),
owner-only. The record holds paths, not secrets: a user who cannot read the data dir learns
nothing from it. The CLI looks there for the URL it talks to, then in ./.tidal (the default data
dir); a remote CLI passes --token or TIDAL_TOKEN.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

from tidal.security.datadir import TOKEN_FILE

TOKEN_HEADER = "X-Tidal-Token"  # for proxies that consume Authorization (the API server's)
RECORD = "servers.json"
DEFAULT_DATA_DIR = ".tidal"
LOOPBACK = ("127.0.0.1", "localhost")
ANY = ("0.0.0.0", "::", "")


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tidal"


def local_urls(scheme: str, host: str, port: int) -> list[str]:
    """The URLs a local CLI may use for an admin API listening on host:port."""
    hosts = [host]
    if host in ANY or host in LOOPBACK:
        hosts += [h for h in LOOPBACK if h != host]
    return [f"{scheme}://{f'[{h}]' if ':' in h else h}:{port}" for h in hosts if h not in ANY]


def record_server(urls: list[str], token_file: Path, ca_cert: Path | None) -> None:
    """Remember where the token (and CA) of the admin API at `urls` are; best effort."""
    directory = config_dir()
    path = directory / RECORD
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        records = _read(path)
        entry = {"tokenFile": str(token_file), "caCert": str(ca_cert) if ca_cert else None}
        records.update({url: entry for url in urls})
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(records, file, indent=2)
        os.replace(temporary, path)
    except OSError:
        pass  # a read-only home: the CLI still finds ./.tidal, or takes --token


def find_credentials(server: str) -> tuple[str | None, str | None]:
    """(token, CA certificate path) for the admin API at `server`, from the record or ./.tidal."""
    entry = _read(config_dir() / RECORD).get(server.rstrip("/"))
    candidates = []
    if isinstance(entry, dict) and isinstance(entry.get("tokenFile"), str):
        candidates.append((Path(entry["tokenFile"]), entry.get("caCert")))
    if urllib.parse.urlsplit(server).hostname in (*LOOPBACK, "::1"):  # never sent elsewhere
        candidates.append((Path(DEFAULT_DATA_DIR) / TOKEN_FILE, None))
    for token_file, ca_cert in candidates:
        token = read_token_file(token_file)
        if token:
            return token, ca_cert if isinstance(ca_cert, str) else None
    return None, None


def read_token_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _read(path: Path) -> dict[str, Any]:
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}
