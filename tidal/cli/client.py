"""What every `tidal` verb shares: the admin API client, manifests from files, output."""

from __future__ import annotations

import contextlib
import http.client
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console

from tidal.api.errors import InvalidSpec
from tidal.api.manifest import load_documents
from tidal.api.textfile import not_text, read_text
from tidal.security.credentials import find_credentials, read_token_file
from tidal.security.tls import client_context

DEFAULT_SERVER = "http://127.0.0.1:8081"
KNATIVE = "/apis/serving.knative.dev/v1"
SCHEDULING = "/apis/scheduling.alibabacloud.com/v1alpha1"
KNATIVE_BETA = "/apis/serving.knative.dev/v1beta1"
TIDAL = "/apis/tidal.dev/v1"
CORE = "/api/v1"
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
    "domainmappings": "domainmappings",
    "domainmapping": "domainmappings",
    "dm": "domainmappings",
    "secrets": "secrets",
    "secret": "secrets",
    "configmaps": "configmaps",
    "configmap": "configmaps",
    "cm": "configmaps",
    "persistentvolumeclaims": "persistentvolumeclaims",
    "persistentvolumeclaim": "persistentvolumeclaims",
    "pvc": "persistentvolumeclaims",
    "serviceaccounts": "serviceaccounts",
    "serviceaccount": "serviceaccounts",
    "sa": "serviceaccounts",
    "namespaces": "namespaces",
    "namespace": "namespaces",
    "ns": "namespaces",
}
CLUSTER_SCOPED = ("namespaces",)
GROUPS = {
    "resourcepolicies": SCHEDULING,
    "domainmappings": KNATIVE_BETA,
    "secrets": CORE,
    "configmaps": CORE,
    "persistentvolumeclaims": CORE,
    "serviceaccounts": CORE,
    "namespaces": CORE,
}
# kind → (plural, singular) of what `tidal delete` deletes
DELETABLE = {
    "Service": ("services", "service"),
    "ResourcePolicy": ("resourcepolicies", "resourcepolicy"),
    "DomainMapping": ("domainmappings", "domainmapping"),
    "Secret": ("secrets", "secret"),
    "ConfigMap": ("configmaps", "configmap"),
    "PersistentVolumeClaim": ("persistentvolumeclaims", "persistentvolumeclaim"),
    "ServiceAccount": ("serviceaccounts", "serviceaccount"),
    "Namespace": ("namespaces", "namespace"),
}
READ_SIZE = 64 * 1024


def resource_path(plural: str, namespace: str | None, name: str | None = None) -> str:
    """The API path of a collection (of every namespace when `namespace` is None) or of one
    object; a cluster-scoped kind's have no namespace."""
    group = GROUPS.get(plural, KNATIVE)
    scoped = namespace is not None and plural not in CLUSTER_SCOPED
    base = f"{group}/namespaces/{namespace}/{plural}" if scoped else f"{group}/{plural}"
    return f"{base}/{name}" if name else base


console = Console()
if not console.is_terminal:  # piped: never truncate table cells to 80 columns
    console = Console(width=250)


class ApiError(click.ClickException):
    pass


def credentials(
    server: str, token: str | None, token_file: str | None, ca_cert: str | None
) -> tuple[str | None, str | None]:
    """The token and CA for `server`: --token/TIDAL_TOKEN, else --token-file, else what a local
    `tidal up` recorded for that URL (tidal.security.credentials)."""
    if not token and token_file:
        token = read_token_file(Path(token_file))
        if token is None:
            raise click.ClickException(f"cannot read a token from {token_file}")
    if token and ca_cert:
        return token, ca_cert
    found_token, found_ca = find_credentials(server)
    return token or found_token, ca_cert or found_ca


class Client:
    def __init__(self, server: str, token: str | None = None, ca_cert: str | None = None) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.ca_cert = ca_cert

    def call(self, method: str, path: str, body: Any = None, text: bool = False) -> Any:
        """JSON from the admin API (or text, for logs); ApiError with the server's message."""
        with self._open(method, path, body, timeout=30) as response:
            raw = response.read()
            if text:
                return raw.decode()
            if response.headers.get_content_type() != "application/json":
                raise ApiError(f"{self.server} did not answer like tidal's admin API")
            return json.loads(raw)

    def stream(self, path: str) -> Iterator[bytes]:
        """The body of a GET as it arrives, until the server ends it (`tidal logs -f`): no read
        timeout, since a quiet replica may write nothing for hours."""
        with self._open("GET", path, None, timeout=None) as response:
            yield from iter(lambda: response.read1(READ_SIZE), b"")

    @contextlib.contextmanager
    def _open(
        self, method: str, path: str, body: Any, timeout: float | None
    ) -> Iterator[http.client.HTTPResponse]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.server + path, data=data, method=method, headers=headers
        )
        tls = client_context(self.ca_cert) if self.server.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=tls) as response:
                yield response
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("message", exc.reason)
            except ValueError:
                message = exc.reason
            raise ApiError(message) from None
        except (urllib.error.URLError, ConnectionError) as exc:
            if "CERTIFICATE" in str(exc):
                hint = "trust its certificate with --ca-cert or TIDAL_CA_CERT"
            elif "WRONG_VERSION_NUMBER" in str(exc):  # TLS spoken to a plain-HTTP server
                hint = "it does not speak TLS: use http://"
            else:
                hint = "is `tidal up` running? (set --server or TIDAL_SERVER)"
            raise ApiError(f"cannot reach tidal at {self.server} ({exc}); {hint}") from None


def load_manifests(paths: tuple[str, ...]) -> list[dict[str, Any]]:
    """Documents from files; a relative `workingDir` is resolved against its file's folder."""
    docs: list[dict[str, Any]] = []
    for path in paths:
        file = Path(path)
        try:
            text = sys.stdin.read() if path == "-" else read_text(file)
        except OSError as exc:
            raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:  # stdin
            raise click.ClickException(str(not_text(path, exc))) from None
        except ValueError as exc:  # a file that is not UTF-8
            raise click.ClickException(str(exc)) from None
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
