"""`tidal port-forward SERVICE [LOCAL:]PORT...`: local ports to a port of one of a service's
replicas, through the admin API's pod port-forward (the protocol `kubectl port-forward` speaks,
docs/kubectl.md#port-forward), for whoever uses the tidal CLI rather than kubectl.

Each local connection becomes a request of two streams, as kubectl makes them: an error stream
(which says why the replica's port could not be reached) and a data stream carrying the bytes.
A failed connection is reported and closed; the others go on. It runs until Ctrl-C, or until
the replica ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass, field

import aiohttp
import click

from tidal.cli.client import Client
from tidal.cli.pod_stream import pod_stream, ready_replica
from tidal.controller.kubeapi import spdy


@click.command("port-forward")
@click.argument("service")
@click.argument("ports", nargs=-1, required=True)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--replica", help="This replica (default: the service's first ready one).")
@click.option("--address", default="127.0.0.1", show_default=True, help="Listen here.")
@click.pass_obj
def port_forward_command(
    client: Client,
    service: str,
    ports: tuple[str, ...],
    namespace: str,
    replica: str | None,
    address: str,
) -> None:
    """Forward local ports to a replica of SERVICE: `tidal port-forward hello 9000:8080`
    (`8080` alone listens on 8080 too, `:8080` on any free port)."""
    pairs = [_ports(text) for text in ports]
    pod = ready_replica(client, namespace, service, replica)
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/portforward"
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(_forward(client, path, pairs, address)))


def _ports(text: str) -> tuple[int, int]:
    """(local, remote) from `[LOCAL:]REMOTE`; local 0 for any free port."""
    local, _, remote = text.rpartition(":") if ":" in text else (text, ":", text)
    try:
        pair = (int(local or 0), int(remote))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not [LOCAL:]PORT") from None
    if not (0 <= pair[0] < 65536 and 0 < pair[1] < 65536):
        raise click.BadParameter(f"{text!r}: ports are 1 to 65535")
    return pair


async def _forward(client: Client, path: str, pairs: list[tuple[int, int]], address: str) -> int:
    async with pod_stream(client, path, spdy.PROTOCOL) as ws:
        tunnel = _Tunnel(ws)
        servers = []
        for local, remote in pairs:

            async def accepted(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, remote: int = remote
            ) -> None:
                await tunnel.connection(remote, reader, writer)

            try:
                server = await asyncio.start_server(accepted, address, local)
            except OSError as exc:
                raise click.ClickException(f"cannot listen on {address}:{local}: {exc}") from None
            servers.append(server)
            port = server.sockets[0].getsockname()[1]
            click.echo(f"Forwarding from {address}:{port} -> {remote}")
        try:
            await tunnel.receive()
        finally:
            for server in servers:
                server.close()
    click.echo("error: lost connection to the replica", err=True)
    return 1


@dataclass
class _Connection:
    writer: asyncio.StreamWriter
    data_stream: int
    errors: bytearray = field(default_factory=bytearray)


class _Tunnel:
    """The client's end of the SPDY connection inside the WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._headers = spdy.HeaderCompressor()
        self._sending = asyncio.Lock()  # header blocks share one compression context, in order
        self._next_stream = 1  # a client's streams are odd
        self._next_request = 0
        self._streams: dict[int, _Connection] = {}  # both streams of each open connection

    async def connection(
        self, remote: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One local connection: its two streams opened, its bytes sent until it ends."""
        headers = {"port": str(remote), "requestid": str(self._next_request)}
        self._next_request += 1
        error_stream, data_stream = self._next_stream, self._next_stream + 2
        self._next_stream += 4
        connection = _Connection(writer, data_stream)
        self._streams[error_stream] = self._streams[data_stream] = connection
        async with self._sending:
            await self._ws.send_bytes(
                spdy.syn_stream(self._headers, error_stream, {**headers, "streamtype": "error"})
                + spdy.data(error_stream, b"", fin=True)  # nothing is written on it
                + spdy.syn_stream(self._headers, data_stream, {**headers, "streamtype": "data"})
            )
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(spdy.CHUNK):
                await self._ws.send_bytes(spdy.data(data_stream, chunk))
        with contextlib.suppress(ConnectionError):
            await self._ws.send_bytes(spdy.data(data_stream, b"", fin=True))

    async def receive(self) -> None:
        """The replica's bytes to their local connections, until the WebSocket ends."""
        frames = spdy.FrameReader()
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.BINARY:
                continue
            for frame in frames.feed(message.data):
                if isinstance(frame, spdy.Data):
                    await self._received(frame)
                elif isinstance(frame, spdy.RstStream):
                    connection = self._streams.pop(frame.stream_id, None)
                    if connection is not None:
                        connection.writer.close()

    async def _received(self, frame: spdy.Data) -> None:
        """A frame to its connection; a slow local reader holds the tunnel back, as the
        server holds kubectl back for a slow replica."""
        connection = self._streams.get(frame.stream_id)
        if connection is None:
            return
        writer = connection.writer
        if frame.stream_id == connection.data_stream:
            if writer.is_closing():
                return
            writer.write(frame.data)
            if frame.fin and writer.can_write_eof():
                writer.write_eof()
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return
        connection.errors += frame.data  # the error stream: its end closes the connection
        if frame.fin:
            if connection.errors:
                click.echo(connection.errors.decode(errors="replace"), err=True)
            writer.close()
            for stream_id in (frame.stream_id, connection.data_stream):
                self._streams.pop(stream_id, None)
