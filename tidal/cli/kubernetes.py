"""`tidal kubernetes ...` (install manifests, the in-cluster controller) and the client that
points the other verbs at a cluster (`tidal --kubeconfig/--context`)."""

from __future__ import annotations

import base64
import json
import os
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException, RESTResponse

from tidal.api.config import load_config, parse_config
from tidal.api.errors import InvalidSpec
from tidal.api.textfile import read_text
from tidal.cli.client import ApiError, Client
from tidal.kubernetes.manifests import (
    ADMIN_PORT,
    DEFAULT_CONFIG,
    DEFAULT_IMAGE,
    GATEWAY_PORT,
    TOKEN_KEY,
    TOKEN_SECRET,
    WEBHOOK_PORT,
    manifests,
    render,
)
from tidal.security.credentials import TOKEN_HEADER, read_token_file
from tidal.store.kubernetes import API_GROUPS

ADMIN_SERVICE = "tidal-admin:8081"
API_GROUPS_OPTION = click.option(
    "--api-groups",
    type=click.Choice(API_GROUPS),
    default="tidal",
    show_default=True,
    help="Where tidal's kinds live: tidal's own groups (beside Knative or ACK), or Knative's "
    "and ACK's groups, so that kubectl takes their YAML unchanged (a cluster with neither).",
)


@click.group()
def kubernetes() -> None:
    """Run tidal on a Kubernetes cluster."""


@kubernetes.command("manifests")
@click.option("--namespace", default="tidal-system", show_default=True)
@click.option("--image", default=DEFAULT_IMAGE, show_default=True, help="tidal's own image.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    help="tidal.yaml (pools, autoscaler defaults) for the ConfigMap; default: an example.",
)
@API_GROUPS_OPTION
@click.pass_context
def manifests_command(
    ctx: click.Context, namespace: str, image: str, config_path: str | None, api_groups: str
) -> None:
    """Print the install: CRDs, namespace, RBAC, config, admin token Secret (a new random token
    unless --token/TIDAL_TOKEN is given), controller, gateways, Services."""
    config = DEFAULT_CONFIG
    if config_path is not None:
        try:
            config = yaml.safe_load(read_text(config_path)) or {}
            parse_config(config)
        except (InvalidSpec, yaml.YAMLError) as exc:
            raise click.ClickException(f"{config_path}: {exc}") from None
        except (ValueError, OSError) as exc:  # not UTF-8 (which names the file), or unreadable
            raise click.ClickException(str(exc)) from None
    token = ctx.find_root().params.get("token")
    docs = manifests(namespace, image, config, token, api_groups=api_groups)
    click.echo(render(docs), nl=False)


@kubernetes.command("controller")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="tidal.yaml")
@click.option("--data-dir", default="/var/lib/tidal", show_default=True)
@click.option("--lease-namespace", default="tidal-system", show_default=True)
@click.option(
    "--webhook-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="The admission webhook's certificate (with --webhook-key); none: no webhook.",
)
@click.option("--webhook-key", type=click.Path(exists=True, dir_okay=False))
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=GATEWAY_PORT, show_default=True, help="Gateway port.")
@click.option("--admin-port", type=int, default=ADMIN_PORT, show_default=True)
@click.option("--webhook-port", type=int, default=WEBHOOK_PORT, show_default=True)
@API_GROUPS_OPTION
@click.pass_context
def controller_command(
    ctx: click.Context,
    config_path: str | None,
    data_dir: str,
    lease_namespace: str,
    webhook_cert: str | None,
    webhook_key: str | None,
    host: str,
    port: int,
    admin_port: int,
    webhook_port: int,
    api_groups: str,
) -> None:
    """Run the controller, gateway, admin API and admission webhook in a pod
    (leader-elected)."""
    import asyncio
    import logging

    from tidal.kubernetes.connect import api_client
    from tidal.kubernetes.controller import ControllerOptions, KnativeInstalled, run_controller

    logging.basicConfig(level=logging.INFO)
    try:
        config = load_config(config_path)
    except InvalidSpec as exc:
        raise click.ClickException(f"config: {exc}") from None
    root = ctx.find_root().params
    kube = (root.get("kubeconfig"), root.get("context"))
    token = root.get("token") or (
        read_token_file(Path(root["token_file"])) if root.get("token_file") else None
    )
    if not token:
        raise click.ClickException(
            f"the admin API needs a token: set TIDAL_TOKEN (from the Secret {TOKEN_SECRET})"
        )
    if (webhook_cert is None) != (webhook_key is None):
        raise click.UsageError("--webhook-cert and --webhook-key go together")
    identity = os.environ.get("POD_NAME") or socket.gethostname()
    options = ControllerOptions(
        config,
        Path(data_dir),
        identity,
        lease_namespace,
        token,
        host=host,
        port=port,
        admin_port=admin_port,
        webhook_tls=(Path(webhook_cert), Path(webhook_key))
        if webhook_cert and webhook_key
        else None,
        webhook_port=webhook_port,
        api_groups=api_groups,
    )
    try:
        asyncio.run(run_controller(options, api_client(*kube)))
    except KnativeInstalled as exc:
        raise click.ClickException(str(exc)) from None


class ClusterClient(Client):
    """The admin API of the tidal in a cluster, reached through the API server's service proxy
    with the kubeconfig's credentials (no port-forward, no exposed admin port). The admin token
    is read from the Secret with the same credentials unless given; it travels in X-Tidal-Token
    because the API server consumes the Authorization header itself."""

    def __init__(
        self,
        kubeconfig: str | None,
        context: str | None,
        namespace: str = "tidal-system",
        token: str | None = None,
    ) -> None:
        super().__init__(f"kubernetes:{namespace}/{ADMIN_SERVICE}", token)
        self.kubeconfig = kubeconfig
        self.context = context
        self.namespace = namespace
        self._api: ApiClient | None = None

    def _admin_token(self) -> str:
        if self.token is None:
            from kubernetes.client import CoreV1Api

            assert self._api is not None
            try:
                secret = CoreV1Api(self._api).read_namespaced_secret(TOKEN_SECRET, self.namespace)
            except (OSError, ApiException) as exc:
                raise ApiError(
                    f"cannot read the admin token (Secret {self.namespace}/{TOKEN_SECRET}): "
                    f"{getattr(exc, 'reason', exc)}; pass --token or TIDAL_TOKEN"
                ) from None
            self.token = base64.b64decode((secret.data or {}).get(TOKEN_KEY, "")).decode()
            if not self.token:
                raise ApiError(f"Secret {self.namespace}/{TOKEN_SECRET} holds no {TOKEN_KEY!r}")
        return self.token

    def call(self, method: str, path: str, body: Any = None, text: bool = False) -> Any:
        response = self._request(method, path, body, timeout=30)
        try:
            raw = response.read().decode(errors="replace")
        except OSError as exc:
            raise ApiError(f"cannot reach tidal in the cluster ({exc})") from None
        return raw if text else json.loads(raw)

    def stream(self, path: str) -> Iterator[bytes]:
        """The body of a GET as it arrives (`tidal logs -f`), through the same proxy; no read
        timeout, since a quiet replica may write nothing for hours."""
        response = self._request("GET", path, None, timeout=(10, None))
        try:
            yield from response.response.stream(None)
        finally:
            response.response.close()  # read to the end, or left early (Ctrl-C)

    def _request(
        self, method: str, path: str, body: Any, timeout: float | tuple[float, None]
    ) -> RESTResponse:
        """The admin API's answer, its status checked (its message raised as ApiError); the
        body not read yet."""
        if self._api is None:
            from kubernetes.config.config_exception import ConfigException

            from tidal.kubernetes.connect import api_client

            try:
                self._api = api_client(self.kubeconfig, self.context)
            except ConfigException as exc:  # no kubeconfig, or no such context: say so
                raise ApiError(f"cannot use the kubeconfig: {exc}") from None
        route, _, query = path.partition("?")
        serialized = self._api.param_serialize(
            method,
            f"/api/v1/namespaces/{self.namespace}/services/{ADMIN_SERVICE}/proxy{route}",
            query_params=urllib.parse.parse_qsl(query),
            header_params={
                "Content-Type": "application/json",
                "Accept": "application/json",
                TOKEN_HEADER: self._admin_token(),
            },
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(*serialized, _request_timeout=timeout)
        except (OSError, ApiException) as exc:
            raise ApiError(f"cannot reach tidal in the cluster ({exc})") from None
        if response.status >= 400:
            raw = response.read().decode(errors="replace")
            try:
                message = json.loads(raw).get("message", raw)
            except ValueError:
                message = raw
            raise ApiError(message)
        return response
