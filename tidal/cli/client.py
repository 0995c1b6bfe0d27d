"""What every `tidal` verb shares: the admin API client, manifests from files, output."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console

from tidal.api.errors import InvalidSpec
from tidal.api.manifest import load_documents

DEFAULT_SERVER = "http://127.0.0.1:8081"
KNATIVE = "/apis/serving.knative.dev/v1"
SCHEDULING = "/apis/scheduling.alibabacloud.com/v1alpha1"
TIDAL = "/apis/tidal.dev/v1"
RESOURCES = {
    "services": "services",
    "service": "services",
    "svc": "services",
    "ksvc": "services",
    "revisions": "revisions",
    "revision": "revisions",
    "rev": "revisions",
    "routes": "routes",
    "route": "routes",
    "replicas": "replicas",
    "replica": "replicas",
    "resourcepolicies": "resourcepolicies",
    "resourcepolicy": "resourcepolicies",
    "pools": "pools",
    "pool": "pools",
}
GROUPS = {"resourcepolicies": SCHEDULING}

console = Console()
if not console.is_terminal:  # piped: never truncate table cells to 80 columns
    console = Console(width=250)


class ApiError(click.ClickException):
    pass


class Client:
    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")

    def call(self, method: str, path: str, body: Any = None, text: bool = False) -> Any:
        """JSON from the admin API (or text, for logs); ApiError with the server's message."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.server + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                if text:
                    return raw.decode()
                if response.headers.get_content_type() != "application/json":
                    raise ApiError(f"{self.server} did not answer like tidal's admin API")
                return json.loads(raw)
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", exc.reason)
            except ValueError:
                message = exc.reason
            raise ApiError(message) from None
        except (urllib.error.URLError, ConnectionError) as exc:
            raise ApiError(
                f"cannot reach tidal at {self.server} ({exc}); is `tidal up` running? "
                "(set --server or TIDAL_SERVER)"
            ) from None


def load_manifests(paths: tuple[str, ...]) -> list[dict[str, Any]]:
    """Documents from files; a relative `workingDir` is resolved against its file's folder."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        file = Path(path)
        try:
            text = sys.stdin.read() if path == "-" else file.read_text()
        except OSError as exc:
            raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
        try:
            loaded = load_documents(text)
        except InvalidSpec as exc:
            raise click.ClickException(f"{path}: {exc}") from None
        base = Path.cwd() if path == "-" else file.resolve().parent
        for doc in loaded:
            _resolve_working_dirs(doc, base)
        docs.extend(loaded)
    return docs


def _resolve_working_dirs(doc: dict[str, Any], base: Path) -> None:
    try:
        containers = doc["spec"]["template"]["spec"]["containers"]
    except (KeyError, TypeError):
        return
    for container in containers if isinstance(containers, list) else []:
        if isinstance(container, dict) and isinstance(container.get("workingDir"), str):
            container["workingDir"] = str((base / container["workingDir"]).resolve())


def output(obj: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(obj, indent=2))
    else:
        click.echo(yaml.safe_dump(obj, sort_keys=False), nl=False)
