"""The kubeconfig `tidal up` writes (`<data-dir>/kubeconfig`) and `tidal kubeconfig --merge`
folds into the user's own, as a context named `tidal`."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from tidal.api.textfile import read_text

NAME = "tidal"
FILE = "kubeconfig"


def kubeconfig(server: str, token: str | None, ca_pem: bytes | None = None) -> dict[str, Any]:
    """A kubeconfig for `server`; kubectl sends `token` only over https, trusting `ca_pem`."""
    user: dict[str, Any] = {"token": token} if token else {}
    cluster: dict[str, Any] = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": NAME, "cluster": cluster}],
        "users": [{"name": NAME, "user": user}],
        "contexts": [
            {"name": NAME, "context": {"cluster": NAME, "user": NAME, "namespace": "default"}}
        ],
        "current-context": NAME,
        "preferences": {},
    }


def write_kubeconfig(
    data_dir: Path, server: str, token: str | None, ca_pem: bytes | None = None
) -> Path:
    """Write `<data-dir>/kubeconfig` (owner-only: it may hold the admin token)."""
    path = data_dir / FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(kubeconfig(server, token, ca_pem), out, sort_keys=False)
    return path


def default_target() -> Path:
    """Where kubectl reads its configuration: the first file of $KUBECONFIG, or ~/.kube/config."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), None)
    return Path(first) if first else Path.home() / ".kube" / "config"


def merge_into(source: Path, target: Path) -> None:
    """Add (or replace) the cluster, user and context named `tidal` in `target`; the rest of
    it, its current context included, stays as it was. A target that is not a kubeconfig is a
    ValueError naming it, and is left alone; the new file replaces the old one whole."""
    ours = yaml.safe_load(source.read_text())
    theirs = _read_kubeconfig(target) if target.exists() else {}
    theirs.setdefault("apiVersion", "v1")
    theirs.setdefault("kind", "Config")
    for section in ("clusters", "users", "contexts"):
        entries = [e for e in theirs.get(section) or [] if e.get("name") != NAME]
        theirs[section] = [*entries, *ours[section]]
    theirs.setdefault("current-context", NAME)
    target = target.resolve()  # a symlinked config (dotfiles) stays a symlink
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.tidal-{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump(theirs, out, sort_keys=False)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    """The user's kubeconfig, checked enough that merging cannot fail half-way."""
    try:
        config = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML ({exc}); left as it was") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a kubeconfig (not a mapping); left as it was")
    for section in ("clusters", "users", "contexts"):
        entries = config.get(section) or []
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError(f"{path}: {section} is not a list of entries; left as it was")
    return config
