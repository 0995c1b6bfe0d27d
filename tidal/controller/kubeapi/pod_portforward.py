"""`kubectl port-forward pod/NAME LOCAL:PORT` into a replica on one machine
(docs/kubectl.md#port-forward): the kubelet's port-forward protocol over SPDY/3.1, tunnelled
through a WebSocket as kubectl 1.31 and newer do it.

For each connection kubectl accepts locally it opens two streams with the same `requestID`
header and a `port`: an error stream and a data stream. Once both are open, the data stream
carries the connection's bytes both ways to the replica's PORT, and a failure is written on the
error stream in the kubelet's words. The replica's serving port (`ports[0].containerPort`, 8080
by default) is the address the gateway sends its requests to; another port is reached in the
replica's own network (a container's, shared with its sidecars) where it has one. Forwarding
ends with the replica, as it ends with its pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tidal.controller.kubeapi import spdy
from tidal.controller.kubeapi.pod_api import (
    accept_websocket,
    refuse_spdy,
    replica_ended,
    started,
    workload_of,
)
from tidal.controller.kubeapi.status import ApiError, not_found
from tidal.controller.platform import Platform
from tidal.controller.workload import RevisionWorkload
from tidal.runtime.base import PortUnavailable, Replica, ReplicaState

log = logging.getLogger("tidal.kubeapi")
KUBECTL = "1.31"  # the first kubectl to speak port-forward over WebSocket
STREAM_WAIT_S = 30.0  # the kubelet's: a request's second stream must be open by then
MAX_QUEUED = 16  # frames for one connection not yet written to the replica: then kubectl waits


@dataclass
class _Request:
    """One forwarded connection: its two streams, and the bytes kubectl sent for the replica
    (None: its end of the connection is closed)."""

    request_id: str
    port: int
    error_stream: int = 0
    data_stream: int = 0
    inbound: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED))
    task: asyncio.Task[None] | None = None
    expiry: asyncio.TimerHandle | None = None  # until its second stream is open
    ended: bool = False  # both streams ended from this side


async def pod_portforward(
    platform: Platform, request: web.Request, closing: asyncio.Event
) -> web.StreamResponse:
    """GET (WebSocket) or POST (SPDY, refused) .../pods/NAME/portforward."""
    name = request.match_info["name"]
    workload = workload_of(platform, request.match_info["ns"], name)
    if workload is None:
        raise not_found("pods", name)
    replica = started(workload, name, workload.spec.container_name)
    if replica.state in (ReplicaState.STOPPED, ReplicaState.FAILED):
        raise ApiError(400, f"unable to forward port because pod {name} is not running")
    refuse_spdy(request, "port-forward", KUBECTL)
    ws = await accept_websocket(request, spdy.PROTOCOL, "port-forward", KUBECTL)
    session = _Forwarding(platform, workload, replica, ws)
    ended = asyncio.ensure_future(replica_ended(replica, closing))
    served = asyncio.ensure_future(session.serve())
    try:
        await asyncio.wait((ended, served), return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended.cancel()
        served.cancel()
        await session.close()
    return ws


class _Forwarding:
    """One kubectl port-forward: the SPDY connection in a WebSocket, and its requests."""

    def __init__(
        self,
        platform: Platform,
        workload: RevisionWorkload,
        replica: Replica,
        ws: web.WebSocketResponse,
    ) -> None:
        self._platform, self._workload, self._replica, self._ws = platform, workload, replica, ws
        self._frames = spdy.FrameReader()
        self._headers = spdy.HeaderCompressor()
        # Frames go out one at a time, in order: header blocks share one compression context.
        self._sending = asyncio.Lock()
        self._requests: dict[str, _Request] = {}
        self._streams: dict[int, _Request] = {}  # both streams of each open request

    async def serve(self) -> None:
        """Reads kubectl's frames until it goes (or breaks the protocol)."""
        async for message in self._ws:
            if message.type != WSMsgType.BINARY:
                continue
            try:
                frames = self._frames.feed(message.data)
            except spdy.SpdyError as exc:
                log.warning("port-forward to %s: %s", self._replica.replica_id, exc)
                return
            for frame in frames:
                if isinstance(frame, spdy.GoAway):
                    return
                await self._receive(frame)

    async def _receive(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.SynStream):
            await self._open(frame)
        elif isinstance(frame, spdy.Data):
            request = self._streams.get(frame.stream_id)
            if request is not None and frame.stream_id == request.data_stream:
                if frame.data:
                    await request.inbound.put(frame.data)
                if frame.fin:
                    await request.inbound.put(None)
        elif isinstance(frame, spdy.RstStream):
            # kubectl dropped the connection: so does the replica's end, and kubectl hears the
            # end of the error stream, which it waits for.
            request = self._streams.get(frame.stream_id)
            if request is not None:
                if request.task is not None:
                    request.task.cancel()
                if not request.ended and request.error_stream:
                    await self._send(spdy.data(request.error_stream, b"", fin=True))
                request.ended = True
                self._forget(request)
        elif isinstance(frame, spdy.Ping):
            await self._send(spdy.ping(frame.ping_id))

    async def _open(self, frame: spdy.SynStream) -> None:
        """Accepts a stream and pairs it with its request's other one; refuses a stream whose
        headers are not the protocol's."""
        headers, stream_id = frame.headers, frame.stream_id
        kind, request_id = headers.get("streamtype"), headers.get("requestid")
        port = int(headers["port"]) if headers.get("port", "").isdigit() else 0
        if kind not in ("error", "data") or not request_id or not 0 < port < 65536:
            await self._send(spdy.rst_stream(stream_id, spdy.PROTOCOL_ERROR))
            return
        request = self._requests.get(request_id)
        if request is None:
            request = self._requests[request_id] = _Request(request_id, port)
            loop = asyncio.get_running_loop()
            request.expiry = loop.call_later(STREAM_WAIT_S, self._expire, request)
        if getattr(request, f"{kind}_stream") or request.port != port:
            await self._send(spdy.rst_stream(stream_id, spdy.PROTOCOL_ERROR))
            return
        setattr(request, f"{kind}_stream", stream_id)
        self._streams[stream_id] = request
        await self._send_reply(stream_id)
        if request.error_stream and request.data_stream:
            assert request.expiry is not None
            request.expiry.cancel()
            request.task = asyncio.ensure_future(self._forward(request))

    def _expire(self, request: _Request) -> None:
        if request.task is None:
            message = f"timed out waiting for streams of request {request.request_id}"
            request.task = asyncio.ensure_future(self._fail(request, message))

    async def _forward(self, request: _Request) -> None:
        """The connection's bytes both ways until the replica's end closes (or kubectl drops
        it); then both streams end."""
        writer: asyncio.StreamWriter | None = None
        upload: asyncio.Task[None] | None = None
        try:
            try:
                reader, writer = await self._connect(request.port)
            except (PortUnavailable, OSError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                await self._fail(request, self._failure(request.port, why))
                return
            upload = asyncio.ensure_future(_upload(request.inbound, writer))
            with contextlib.suppress(ConnectionError, OSError):
                while chunk := await reader.read(spdy.CHUNK):
                    await self._send(spdy.data(request.data_stream, chunk))
            await self._end(request)
        finally:
            if upload is not None:
                upload.cancel()
            if writer is not None:
                writer.close()
            self._forget(request)

    async def _connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        replica = self._replica
        if port == self._workload.spec.container.port:
            return await asyncio.open_connection(replica.host, replica.port)
        sock = await self._platform.runtime.connect_inside(replica, port)
        return await asyncio.open_connection(sock=sock)

    def _failure(self, port: int, why: str) -> str:
        return (
            f"error forwarding port {port} to pod {self._replica.replica_id}: failed to connect "
            f"to localhost:{port} inside the pod: {why}"
        )

    async def _fail(self, request: _Request, message: str) -> None:
        if request.error_stream:
            await self._send(spdy.data(request.error_stream, message.encode()))
        await self._end(request)
        self._forget(request)

    async def _end(self, request: _Request) -> None:
        """The end of both streams, from this side."""
        if not request.ended:
            request.ended = True
            for stream_id in (request.data_stream, request.error_stream):
                if stream_id:
                    await self._send(spdy.data(stream_id, b"", fin=True))

    def _forget(self, request: _Request) -> None:
        """No more frames for it; what kubectl sent for it and nobody will write is dropped
        (which frees serve() if it waits to queue more)."""
        if request.expiry is not None:
            request.expiry.cancel()
        self._requests.pop(request.request_id, None)
        for stream_id in (request.data_stream, request.error_stream):
            self._streams.pop(stream_id, None)
        while not request.inbound.empty():
            request.inbound.get_nowait()

    async def _send_reply(self, stream_id: int) -> None:
        async with self._sending:
            with contextlib.suppress(ConnectionError):  # kubectl went: serve() ends
                await self._ws.send_bytes(spdy.syn_reply(self._headers, stream_id))

    async def _send(self, frame: bytes) -> None:
        async with self._sending:
            with contextlib.suppress(ConnectionError):
                await self._ws.send_bytes(frame)

    async def close(self) -> None:
        """Drops every connection still open and the WebSocket."""
        requests = list(self._requests.values())
        for request in requests:
            self._forget(request)
        tasks = [r.task for r in requests if r.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(ConnectionError):
            await self._ws.close()


async def _upload(inbound: asyncio.Queue[bytes | None], writer: asyncio.StreamWriter) -> None:
    """kubectl's bytes to the replica; its half of the connection closed after the last."""
    with contextlib.suppress(ConnectionError, OSError):
        while (chunk := await inbound.get()) is not None:
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
