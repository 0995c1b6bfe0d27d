"""HTTP/2, as gRPC clients speak it, for revisions whose port is named `h2c`: HTTP/2 without
TLS to the replica (docs/architecture.md#http2-and-grpc).

A client connection that opens with the HTTP/2 preface (prior knowledge), or that chose `h2` by
ALPN on a TLS listener, is handed over from the HTTP/1.1 proxy (`tidal.gateway.proxy`) to an
`H2ClientConnection`. Each of its streams is one request: routed
by `:authority`, leased from the router like an HTTP/1.1 request (held while a replica starts,
counted toward `containerConcurrency`), and sent on a stream of an h2c connection to the leased
replica (`H2Pool` keeps those, many streams on each). Headers, data and trailers (gRPC's status)
pass through as they come, under HTTP/2 flow control end to end: data is acknowledged to its
sender only once the other side took it, so neither side can make the gateway buffer more than
one stream window. The h2 library (python-hyper) does the framing.

A stream is answered by the gateway itself (`:status` with `x-tidal-error`, which gRPC clients
map to a status) when it cannot be routed, its revision speaks HTTP/1.1, the replica fails, or
the revision's `timeoutSeconds` passes; a stream whose response has started is reset instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from tidal.gateway.h2_http1 import Http1Upstream
from tidal.gateway.hosts import request_host
from tidal.gateway.router import Lease, RouteError, lease_for

if TYPE_CHECKING:
    from tidal.gateway.proxy import GatewayServer

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_CONNECT_ATTEMPTS = 3
_MAX_STREAMS = 256  # concurrent streams a client may open on one connection
_WINDOW = 1 << 20  # receive window per stream and per connection, in bytes
_H2_ERRORS = (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError)
_Headers = list[tuple[bytes, bytes]]


class _H2Peer(asyncio.Protocol):
    """One side of the proxy: an h2 connection and its socket. Sends what the peer's flow
    control window allows and queues the rest per stream, in order, until a WINDOW_UPDATE;
    each piece of data that leaves is reported to its `on_sent`, so that the other side can
    acknowledge as much to its own sender."""

    def __init__(self, client_side: bool) -> None:
        # What goes out was checked as it came in (on the other side), or is the gateway's own:
        # checking it again would only cost time. (Normalizing stays: it keeps credentials out
        # of the HPACK tables that streams of different clients share upstream.)
        config = h2.config.H2Configuration(
            client_side=client_side, header_encoding=None, validate_outbound_headers=False
        )
        self.h2 = h2.connection.H2Connection(config)
        self.transport: asyncio.Transport | None = None
        self._flush_due = False
        self._queued: dict[int, deque[tuple[Any, bool, Callable[[int], None] | None]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.local_settings = h2.settings.Settings(
            client=self.h2.config.client_side,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: _MAX_STREAMS,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW,
            },
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(_WINDOW)
        self.write_out()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            log.debug("%s: HTTP/2 protocol error: %s", type(self).__name__, exc)
            self.write_out()  # h2 has queued the GOAWAY
            if self.transport is not None:
                self.transport.close()
            return
        for event in events:
            self._handle(event)
        self.flush()

    def _handle(self, event: h2.events.Event) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Write what h2 has queued, once per turn of the event loop: the frames of all the
        events handled in this turn leave in one write."""
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self.write_out)

    def write_out(self) -> None:
        self._flush_due = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_headers(self, stream_id: int, headers: _Headers, end_stream: bool = False) -> None:
        self._queued.setdefault(stream_id, deque()).append((headers, end_stream, None))
        self._drain(stream_id)

    def send_data(
        self, stream_id: int, data: bytes, end_stream: bool, on_sent: Callable[[int], None]
    ) -> None:
        self._queued.setdefault(stream_id, deque()).append((memoryview(data), end_stream, on_sent))
        self._drain(stream_id)

    def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        self._queued.pop(stream_id, None)
        with contextlib.suppress(*_H2_ERRORS):  # closed already
            self.h2.reset_stream(stream_id, code)
        self.flush()

    def _drain(self, stream_id: int) -> None:
        queue = self._queued.get(stream_id)
        try:
            while queue:
                payload, end, on_sent = queue[0]
                if isinstance(payload, list):  # headers, or trailers after the data
                    self.h2.send_headers(stream_id, payload, end_stream=end)
                    queue.popleft()
                    continue
                window = min(
                    self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
                )
                if payload and window <= 0:
                    return  # until the peer's WINDOW_UPDATE
                chunk, rest = payload[:window], payload[window:]
                self.h2.send_data(stream_id, chunk, end_stream=end and not rest)
                if on_sent is not None and chunk:
                    on_sent(len(chunk))
                if rest:
                    queue[0] = (rest, end, on_sent)
                else:
                    queue.popleft()
        except _H2_ERRORS:
            pass  # the stream was reset meanwhile: drop what it had queued
        self._queued.pop(stream_id, None)

    def backlog(self, stream_id: int) -> bool:
        """Whether data of `stream_id` waits for the peer's window."""
        return bool(self._queued.get(stream_id))

    def window_opened(self, stream_id: int) -> None:
        for queued in list(self._queued) if stream_id == 0 else [stream_id]:
            self._drain(queued)
        self.flush()

    def acknowledge(self, stream_id: int, size: int) -> None:
        """`size` bytes of `stream_id` were passed on: let the sender send as much more."""
        try:
            self.h2.acknowledge_received_data(size, stream_id)
        except _H2_ERRORS:
            return
        self.flush()


class _Stream:
    """One request: a client stream and the replica stream it is proxied to."""

    __slots__ = (
        "client",
        "client_id",
        "done",
        "headers",
        "host",
        "last_byte",
        "lease",
        "path",
        "pending",
        "replayed",
        "responded",
        "status",
        "task",
        "timer",
        "upstream",
        "upstream_id",
    )

    def __init__(self, client: H2ClientConnection, client_id: int) -> None:
        self.client = client
        self.client_id = client_id
        self.done = False
        self.headers: _Headers = []
        self.host = ""
        self.last_byte = 0.0  # time.monotonic() of the replica's last frame, for idleTimeout
        self.lease: Lease | None = None
        self.path = ""
        # Request data (or trailers) and whether it ends the request, held until the replica
        # stream is open.
        self.pending: list[tuple[bytes | _Headers, bool]] | None = []
        self.replayed = False  # resent once after a pooled HTTP/1.1 connection was found closed
        self.responded = False
        self.status = 0
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.upstream: H2Upstream | Http1Upstream | None = None
        self.upstream_id = 0

    def finish(self, status: int) -> None:
        """The stream is over: release its lease with `status` (once)."""
        if self.done:
            return
        self.done = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.timer is not None:
            self.timer.cancel()
        if self.upstream is not None:
            self.upstream.streams.pop(self.upstream_id, None)
        if self.lease is not None:
            self.lease.release(status)
        self.client.stream_over(self)


class H2ClientConnection(_H2Peer):
    """A client's h2c connection; answers each stream from the replica its router leases."""

    def __init__(
        self, server: GatewayServer, cluster_client: bool, peer: bytes, scheme: bytes
    ) -> None:
        super().__init__(client_side=False)
        self._server = server
        self._cluster_client = cluster_client
        self._peer = peer
        self._scheme = scheme  # of the client's connection: http, or https over TLS
        self.streams: dict[int, _Stream] = {}
        self.read_deadline = time.monotonic() + server.limits.idle_timeout_s
        self._draining = False

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request(event.stream_id, event.headers)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is None:  # answered already: take it off the window at once
                self.acknowledge(event.stream_id, event.flow_controlled_length)
            else:
                padding = event.flow_controlled_length - len(event.data)
                if padding:
                    self.acknowledge(event.stream_id, padding)
                self._forward_data(stream, event.data, False)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                self._forward_data(stream, b"", True)
        elif isinstance(event, h2.events.TrailersReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None and stream.pending is not None:
                stream.pending.append((event.headers, True))
            elif stream is not None and stream.upstream is not None:
                stream.upstream.send_headers(stream.upstream_id, event.headers, end_stream=True)
                stream.upstream.flush()
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:  # the client gave up on it
                if stream.upstream is not None:
                    stream.upstream.reset(stream.upstream_id)
                stream.finish(499)
        elif isinstance(event, h2.events.WindowUpdated):
            self.window_opened(event.stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._draining = True
            self._close_if_drained()

    def _request(self, stream_id: int, headers: _Headers) -> None:
        if self._draining:  # a client may retry a refused stream elsewhere, safely
            self.reset(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        stream = _Stream(self, stream_id)
        self.streams[stream_id] = stream
        self.read_deadline = 0.0
        fields = dict(headers)
        authority = fields.get(b":authority") or fields.get(b"host")
        if authority is None or b":path" not in fields:
            self.answer(stream, 400, "missing :authority or :path")
            return
        stream.host = request_host(authority)
        stream.path = fields[b":path"].partition(b"?")[0].decode("latin-1")
        forwarded = [(k, v) for k, v in headers if k != b"x-forwarded-for"]
        xff = fields.get(b"x-forwarded-for")
        forwarded.append(
            (b"x-forwarded-for", self._peer if xff is None else xff + b", " + self._peer)
        )
        if b"x-forwarded-host" not in fields:
            forwarded.append((b"x-forwarded-host", authority))
        if b"x-forwarded-proto" not in fields:
            forwarded.append((b"x-forwarded-proto", self._scheme))
        stream.headers = forwarded
        stream.task = asyncio.get_running_loop().create_task(self._forward(stream))

    async def _forward(self, stream: _Stream) -> None:
        """Lease a replica and open a stream to it: the only waits of a request."""
        router = self._server.router
        h2_pool, h1_pool = self._server.h2_pool, self._server.h2_http1_pool
        try:
            for _ in range(_CONNECT_ATTEMPTS):
                if stream.lease is None:
                    stream.lease = await lease_for(
                        router, stream.host, stream.path, self._cluster_client
                    )
                lease = stream.lease
                upstream: H2Upstream | Http1Upstream | None = None
                if not lease.h2c and not stream.replayed:  # HTTP/1.1 (tidal.gateway.h2_http1)
                    upstream = h1_pool.take(lease.host, lease.port)
                if upstream is None:
                    dial = (h2_pool.connection if lease.h2c else h1_pool.connect)(
                        lease.host, lease.port
                    )
                    try:
                        upstream = await asyncio.wait_for(dial, lease.deadline - time.monotonic())
                    except TimeoutError:
                        self.answer(stream, 504, "upstream request timeout")
                        return
                    except OSError:
                        stream.lease = None
                        router.retry(lease)
                        continue
                stream.last_byte = lease.started
                self._watch_deadline(stream)
                upstream.open(stream)
                return
            self.answer(stream, 502, "upstream connect error")
        except RouteError as exc:
            self.answer(stream, exc.status, exc.reason)
        except Exception:
            log.exception("proxying h2 %s %s failed", stream.host, stream.path)
            self.answer(stream, 500, "internal error")

    def replay(self, stream: _Stream) -> None:
        """A request without a body met a pooled HTTP/1.1 connection that the replica had
        closed while it was idle: send it once more, on a fresh connection."""
        if stream.timer is not None:
            stream.timer.cancel()
        stream.upstream, stream.pending, stream.replayed = None, [(b"", True)], True
        stream.task = asyncio.get_running_loop().create_task(self._forward(stream))

    def _forward_data(self, stream: _Stream, data: bytes, end: bool) -> None:
        if stream.pending is not None:
            stream.pending.append((data, end))
            return
        upstream = stream.upstream
        if upstream is None or stream.done:
            self.acknowledge(stream.client_id, len(data))
            return
        client_id = stream.client_id
        upstream.send_data(stream.upstream_id, data, end, lambda n: self.acknowledge(client_id, n))
        upstream.flush()

    def _watch_deadline(self, stream: _Stream) -> None:
        """Arm the stream's timer for its next timeout (docs/architecture.md#timeouts)."""
        lease: Lease = stream.lease  # type: ignore[assignment]
        at = lease.next_timeout(stream.responded, stream.last_byte)[0]
        delay = max(0.0, at - time.monotonic())
        stream.timer = asyncio.get_running_loop().call_later(delay, self._on_timer, stream)

    def _on_timer(self, stream: _Stream) -> None:
        stream.timer = None
        lease: Lease = stream.lease  # type: ignore[assignment]
        at, reason = lease.next_timeout(stream.responded, stream.last_byte)
        if at > time.monotonic():  # the response started, or bytes came, meanwhile
            self._watch_deadline(stream)
            return
        if stream.upstream is not None:
            stream.upstream.reset(stream.upstream_id)
        self.fail(stream, 504, reason)

    def answer(self, stream: _Stream, status: int, reason: str) -> None:
        """Answer the stream with an error of the gateway's own."""
        if stream.done:
            return
        body = (reason + "\n").encode()
        headers = [
            (b":status", str(status).encode()),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"x-tidal-error", " ".join(reason.split()).encode("ascii", "replace")),
        ]
        self.send_headers(stream.client_id, headers)
        self.send_data(stream.client_id, body, True, lambda n: None)
        self.flush()
        stream.finish(status)

    def fail(self, stream: _Stream, status: int, reason: str) -> None:
        """End the stream with an error: answered if no response head went out, else reset."""
        if stream.responded:
            self.reset(stream.client_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
            stream.finish(status)
        else:
            self.answer(stream, status, reason)

    def stream_over(self, stream: _Stream) -> None:
        self.streams.pop(stream.client_id, None)
        if not self.streams:
            self.read_deadline = time.monotonic() + self._server.limits.idle_timeout_s
            self._close_if_drained()

    def window_opened(self, stream_id: int) -> None:
        super().window_opened(stream_id)
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        """Draining: close once no stream is open and none has data still to send."""
        if self._draining and not self.streams and not self._queued:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._clients.discard(self)
        for stream in list(self.streams.values()):
            if stream.upstream is not None:
                stream.upstream.reset(stream.upstream_id)
            stream.finish(499)

    def _close(self) -> None:
        """GOAWAY, then close."""
        with contextlib.suppress(*_H2_ERRORS):
            self.h2.close_connection()
        self.write_out()
        if self.transport is not None:
            self.transport.close()

    # what GatewayServer asks of its connections

    def read_timed_out(self) -> None:
        """Idle for the idle timeout: say goodbye (GOAWAY) and close."""
        self.read_deadline = 0.0
        self._server.idle_timeouts += 1
        self._close()

    def drain(self) -> None:
        """Shutdown: let open streams finish, refusing new ones, then GOAWAY and close. (h2
        takes a GOAWAY as the end of the connection, so none is sent while streams run.)"""
        self._draining = True
        self._close_if_drained()


class H2Upstream(_H2Peer):
    """An h2c connection to one replica, carrying the streams of many client requests."""

    def __init__(self, pool: H2Pool, key: tuple[str, int]) -> None:
        super().__init__(client_side=True)
        self._pool = pool
        self.key = key
        self.streams: dict[int, _Stream] = {}
        self.usable = True

    def has_room(self) -> bool:
        limit = self.h2.remote_settings.max_concurrent_streams
        return self.usable and self.h2.open_outbound_streams < limit

    def open(self, stream: _Stream) -> None:
        """Send the request head, and the data that came meanwhile, on a new stream."""
        stream_id = self.h2.get_next_available_stream_id()
        stream.upstream, stream.upstream_id = self, stream_id
        self.streams[stream_id] = stream
        pending, stream.pending = stream.pending or [], None
        no_body = pending == [(b"", True)]
        self.send_headers(stream_id, stream.headers, end_stream=no_body)
        client, client_id = stream.client, stream.client_id
        for data, end in [] if no_body else pending:
            if isinstance(data, list):  # the request's trailers
                self.send_headers(stream_id, data, end_stream=True)
            else:
                self.send_data(stream_id, data, end, lambda n: client.acknowledge(client_id, n))
        self.flush()

    def _handle(self, event: h2.events.Event) -> None:
        stream_id = getattr(event, "stream_id", 0)
        stream = self.streams.get(stream_id)
        if stream is not None and stream.lease.idle_s:  # type: ignore[union-attr]
            stream.last_byte = time.monotonic()
        if isinstance(event, h2.events.WindowUpdated):
            self.window_opened(stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.usable = False  # GOAWAY: streams above its last id were never seen
            for sid, late in list(self.streams.items()):
                if sid > (event.last_stream_id or 0):
                    late.client.fail(late, 502, "upstream closed the connection")
        elif stream is None:
            if isinstance(event, h2.events.DataReceived):
                self.acknowledge(stream_id, event.flow_controlled_length)
        elif isinstance(event, h2.events.InformationalResponseReceived):
            stream.client.send_headers(stream.client_id, event.headers)
            stream.client.flush()
        elif isinstance(event, h2.events.ResponseReceived):
            self._respond(stream, event.headers, event.stream_ended is not None)
        elif isinstance(event, h2.events.DataReceived):
            padding = event.flow_controlled_length - len(event.data)
            if padding:
                self.acknowledge(stream_id, padding)
            stream.client.send_data(
                stream.client_id, event.data, False, lambda n: self.acknowledge(stream_id, n)
            )
            stream.client.flush()
        elif isinstance(event, h2.events.TrailersReceived):  # gRPC's status, after the data
            stream.client.send_headers(stream.client_id, event.headers, end_stream=True)
            stream.client.flush()
            stream.finish(stream.status)
        elif isinstance(event, h2.events.StreamEnded):
            if not stream.done:
                stream.client.send_data(stream.client_id, b"", True, lambda n: None)
                stream.client.flush()
                stream.finish(stream.status)
        elif isinstance(event, h2.events.StreamReset):
            stream.client.fail(stream, 502, "upstream reset the stream")

    def _respond(self, stream: _Stream, headers: _Headers, ended: bool) -> None:
        """The response head; `ended`: it is the whole response (gRPC's trailers-only answer
        of an error), which must reach the client as one HEADERS frame that ends the stream."""
        status = dict(headers).get(b":status", b"502")
        stream.status = int(status) if status.isdigit() else 502
        stream.responded = True
        lease: Lease = stream.lease  # type: ignore[assignment]
        revision = lease.revision.encode("latin-1", "replace")
        head = [*headers, (b"x-tidal-revision", revision)]
        stream.client.send_headers(stream.client_id, head, end_stream=ended)
        stream.client.flush()
        if ended:
            stream.finish(stream.status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self._pool.forget(self)
        for stream in list(self.streams.values()):
            stream.client.fail(stream, 502, "upstream connection error")


class H2Pool:
    """h2c connections to replicas by (host, port); a new one is dialled when none has room."""

    def __init__(self) -> None:
        self._conns: dict[tuple[str, int], list[H2Upstream]] = {}
        self._dialling: dict[tuple[str, int], asyncio.Future[H2Upstream]] = {}

    async def connection(self, host: str, port: int) -> H2Upstream:
        key = (host, port)
        for conn in self._conns.get(key, []):
            if conn.has_room():
                return conn
        dialling = self._dialling.get(key)
        if dialling is None:  # requests arriving together share one dial
            dialling = asyncio.ensure_future(self._dial(key))
            self._dialling[key] = dialling
            dialling.add_done_callback(lambda _: self._dialling.pop(key, None))
        return await asyncio.shield(dialling)

    async def _dial(self, key: tuple[str, int]) -> H2Upstream:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: H2Upstream(self, key), *key)
        self._conns.setdefault(key, []).append(conn)
        return conn

    def forget(self, conn: H2Upstream) -> None:
        conns = self._conns.get(conn.key, [])
        if conn in conns:
            conns.remove(conn)

    def close(self) -> None:
        for conns in self._conns.values():
            for conn in conns:
                if conn.transport is not None:
                    conn.transport.close()
        self._conns.clear()
