"""An HTTP/2 stream proxied to a replica that serves HTTP/1.1 (docs/architecture.md#http2-and-grpc).

Browsers and curl choose HTTP/2 by ALPN on the gateway's TLS listener for every service, so a
stream for a revision whose port is not `h2c` is sent to its replica as an HTTP/1.1 request on a
keep-alive connection from an `IdlePool` (one request at a time per connection, as the HTTP/1.1
proxy sends them), and the response comes back as HTTP/2 frames: the status and headers without
HTTP/1.1's connection-specific ones, the body as DATA. A request without a body that finds its
pooled connection closed by the replica is resent once on a fresh one.
Both directions keep flow control: request data is acknowledged to the client once written to
a socket that is not backed up, and the replica's socket stops being read while more than
`_MAX_QUEUED` bytes wait for the client's window.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httptools

from tidal.gateway.headers import HOP_BY_HOP, listed
from tidal.gateway.pool import IdlePool

if TYPE_CHECKING:
    from tidal.gateway.h2proxy import _Headers, _Stream

_MAX_QUEUED = 1 << 20  # response bytes waiting for the client's window before reading pauses
# Request headers that are HTTP/2's own or are about the client's connection, not the request.
_NOT_FORWARDED = frozenset((b"te", b"connection", b"keep-alive", b"transfer-encoding", b"expect"))


class Http1Upstream(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection to a replica, carrying one HTTP/2 stream's request at a
    time. Offers the upstream side of `_Stream` (`send_data`, `send_headers`, `reset`, `flush`,
    `streams`) as `H2Upstream` does, with the stream as id 0."""

    def __init__(self, pool: IdlePool[Http1Upstream], key: tuple[str, int]) -> None:
        self.key = key
        self.idle = False  # in the pool
        self.reused = False  # carried a request before
        self.transport: asyncio.Transport
        self.stream: _Stream | None = None
        self.streams: dict[int, _Stream] = {}
        self._pool = pool
        self._write_paused = False
        self._reading = True
        self._exchange = 0  # counts requests, so that a late report of an earlier one is ignored
        # per request:
        self._chunked = False  # the request body is sent chunked (its length is unknown)
        self._request_ended = False
        self._replayable = False  # no body: may be resent if the pooled connection was closed
        self._unacknowledged = 0  # request bytes written while the socket was backed up
        self._queued = 0  # response bytes waiting for the client's window
        self._parser = httptools.HttpResponseParser(self)
        self._headers: _Headers = []
        self._head_only = False
        self._got_bytes = False
        self._done = True  # no request in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def open(self, stream: _Stream) -> None:
        """Send the request head, and the body that came meanwhile."""
        self.stream, self.streams = stream, {0: stream}
        stream.upstream, stream.upstream_id = self, 0
        pending, stream.pending = stream.pending or [], None
        fields = dict(stream.headers)
        method = fields.get(b":method", b"GET")
        no_body = pending == [(b"", True)]
        self._exchange += 1
        self._chunked = not no_body and b"content-length" not in fields
        self._request_ended = self._replayable = no_body
        self._unacknowledged = self._queued = 0
        self._parser = httptools.HttpResponseParser(self)
        self._headers = []
        self._head_only = method == b"HEAD"
        self._got_bytes = self._done = False
        lines = [
            b"%s %s HTTP/1.1\r\nHost: %s\r\n"
            % (method, fields.get(b":path", b"/"), fields.get(b":authority") or fields[b"host"])
        ]
        lines += [
            b"%s: %s\r\n" % (name, value)
            for name, value in stream.headers
            if name[:1] != b":" and name not in _NOT_FORWARDED and name != b"host"
        ]
        if self._chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        lines.append(b"\r\n")
        self.transport.write(b"".join(lines))
        for data, end in [] if no_body else pending:
            if isinstance(data, list):  # trailers: HTTP/1.1 replicas seldom take them
                self._end_body()
            else:
                self.send_data(0, data, end, self._acknowledger())

    def _acknowledger(self) -> Callable[[int], None]:
        assert self.stream is not None
        client, client_id = self.stream.client, self.stream.client_id
        return lambda n: client.acknowledge(client_id, n)

    # the upstream side of a stream, as h2proxy calls it

    def send_data(self, _: int, data: bytes, end: bool, on_sent: Callable[[int], None]) -> None:
        transport = self.transport
        if transport.is_closing() or self._request_ended:
            return
        if data:
            transport.write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)
            if self._write_paused:
                self._unacknowledged += len(data)
            else:
                on_sent(len(data))
        if end:
            self._end_body()

    def send_headers(self, _: int, headers: _Headers, end_stream: bool = False) -> None:
        self._end_body()  # request trailers end the body; HTTP/1.1 gets none of them

    def _end_body(self) -> None:
        if self._chunked and not self.transport.is_closing():
            self.transport.write(b"0\r\n\r\n")
            self._chunked = False
        self._request_ended = True

    def reset(self, _: int) -> None:
        self.transport.abort()

    def flush(self) -> None:
        """Writes go out as they are made."""

    # asyncio.Protocol

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._unacknowledged:
            self._acknowledger()(self._unacknowledged)
            self._unacknowledged = 0

    def data_received(self, data: bytes) -> None:
        stream = self.stream
        if self._done or stream is None:  # bytes no request asked for: not to be trusted again
            self.transport.close()
            return
        self._got_bytes = True
        if stream.lease.idle_s:  # type: ignore[union-attr]
            stream.last_byte = time.monotonic()
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._give_up(502, "invalid upstream response")

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.forget(self)
        stream = self.stream
        if self._done or stream is None or stream.done:
            return
        if self.reused and self._replayable and not self._got_bytes:
            self._done = True  # closed by the replica while it was idle in the pool
            stream.client.replay(stream)
        elif exc is None and stream.responded and not self._headers_said_length():
            self._complete()  # a body that ends when the replica closes
        else:
            self._give_up(502, "upstream connection error")

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.stream.responded:
            self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            self._headers = []  # 100 Continue and the like: HTTP/2 has no need of them here
            return
        stream = self.stream
        assert stream is not None
        stream.status = status
        stream.responded = True
        named = frozenset().union(*(listed(v) for n, v in self._headers if n == b"connection"))
        head = [(b":status", str(status).encode())]
        head += [
            (name, value)
            for name, value in self._headers
            if name not in HOP_BY_HOP and name not in named and name[:6] != b"proxy-"
        ]
        head.append((b"x-tidal-revision", stream.lease.revision.encode("latin-1", "replace")))  # type: ignore[union-attr]
        bodiless = self._head_only or status in (204, 304)
        stream.client.send_headers(stream.client_id, head, end_stream=bodiless)
        stream.client.flush()
        if bodiless:
            self._done = True
            stream.finish(status)
            self._release()

    def on_body(self, body: bytes) -> None:
        stream = self.stream
        if self._done or stream is None:
            return
        self._queued += len(body)
        exchange = self._exchange
        stream.client.send_data(stream.client_id, body, False, lambda n: self._sent(exchange, n))
        stream.client.flush()
        if self._queued > _MAX_QUEUED and self._reading:
            self._reading = False
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.stream is not None and self.stream.responded and not self._done:
            self._complete()

    # helpers

    def _sent(self, exchange: int, size: int) -> None:
        if exchange != self._exchange:
            return  # the client took the last bytes of an earlier response
        self._queued -= size
        if not self._reading and self._queued <= _MAX_QUEUED // 2:
            self._reading = True
            self.transport.resume_reading()

    def _headers_said_length(self) -> bool:
        return any(name in (b"content-length", b"transfer-encoding") for name, _ in self._headers)

    def _complete(self) -> None:
        self._done = True
        stream = self.stream
        assert stream is not None
        stream.client.send_data(stream.client_id, b"", True, lambda n: None)
        stream.client.flush()
        stream.finish(stream.status)
        self._release()

    def _release(self) -> None:
        """The response is over: back to the pool if the connection can carry another request
        (the request was sent whole, the replica keeps the connection alive), else closed."""
        self.stream, self.streams = None, {}
        transport = self.transport
        if (
            self._request_ended
            and self._parser.should_keep_alive()
            and not self._write_paused
            and not transport.get_write_buffer_size()
            and not transport.is_closing()
        ):
            if not self._reading:
                self._reading = True
                transport.resume_reading()
            self.reused = True
            self._pool.give(self)
        else:
            transport.close()

    def _give_up(self, status: int, reason: str) -> None:
        self._done = True
        self.transport.abort()
        assert self.stream is not None
        self.stream.client.fail(self.stream, status, reason)
