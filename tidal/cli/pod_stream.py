"""What `tidal exec` and `tidal port-forward` share: the ready replica of a service they go
into, and a WebSocket to one of its pod's streaming endpoints on the admin API (the ones
kubectl uses, docs/kubectl.md)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import click

from tidal.cli.client import TIDAL, ApiError, Client
from tidal.security.tls import client_context


def ready_replica(client: Client, namespace: str, service: str, replica: str | None) -> str:
    """The name of `replica`, or of the service's first ready one; a ClickException saying
    why when there is none."""
    replicas = client.call("GET", f"{TIDAL}/namespaces/{namespace}/replicas")["items"]
    mine = [r for r in replicas if r["service"] == service]
    if replica is not None:
        mine = [r for r in mine if r["name"] == replica]
    ready = [r for r in mine if r["state"] == "Ready"]
    if not ready:
        which = f"replica {replica!r} of " if replica else ""
        raise click.ClickException(
            f"no ready {which}service {service!r} in {namespace} (`tidal get replicas`); a "
            "service at zero has none until a request comes"
        )
    return str(ready[0]["name"])


@contextlib.asynccontextmanager
async def pod_stream(
    client: Client, path: str, protocol: str, params: list[tuple[str, str]] | None = None
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A WebSocket to `path` speaking `protocol`, with the client's credentials."""
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    tls = client_context(client.ca_cert) if client.server.startswith("https:") else False
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(
                client.server + path,
                params=params or [],
                protocols=(protocol,),
                headers=headers,
                ssl=tls,
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise ApiError(f"refused: {exc.status} {exc.message}") from None
        except aiohttp.ClientError as exc:
            raise ApiError(f"cannot reach tidal at {client.server} ({exc})") from None
        async with ws:
            yield ws
