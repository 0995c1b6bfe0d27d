"""An HTTP/2 stream proxied to a replica that serves HTTP/1.1 (docs/architecture.md#http2-and-grpc).

Browsers and curl choose HTTP/2 by ALPN on the gateway's TLS listener for every service, so a
stream for a revision whose port is not `h2c` is sent to its replica as one HTTP/1.1 request on
a connection of its own (closed after the response), and the response comes back as HTTP/2
frames: the status and headers without HTTP/1.1's connection-specific ones, the body as DATA.
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

if TYPE_CHECKING:
    from tidal.gateway.h2proxy import _Headers, _Stream

_MAX_QUEUED = 1 << 20  # response bytes waiting for the client's window before reading pauses
# Request headers that are HTTP/2's own or are about the client's connection, not the request.
_NOT_FORWARDED = frozenset((b"te", b"connection", b"keep-alive", b"transfer-encoding", b"expect"))


class Http1Upstream(asyncio.Protocol):
    """One HTTP/2 stream's request to an HTTP/1.1 replica, on a connection of its own. Offers
    the upstream side of `_Stream` (`send_data`, `send_headers`, `reset`, `flush`, `streams`)
    as `H2Upstream` does, with the one stream as id 0."""

    def __init__(self, stream: _Stream) -> None:
        self.stream = stream
        self.streams = {0: stream}
        self.transport: asyncio.Transport | None = None
        self._chunked = False  # the request body is sent chunked (its length is unknown)
        self._write_paused = False
        self._unacknowledged = 0  # request bytes written while the socket was backed up
        self._queued = 0  # response bytes waiting for the client's window
        self._reading = True
        self._parser = httptools.HttpResponseParser(self)
        self._headers: _Headers = []
        self._head_only = False
        self._done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def open(self, stream: _Stream) -> None:
        """Send the request head, and the body that came meanwhile."""
        stream.upstream, stream.upstream_id = self, 0
        pending, stream.pending = stream.pending or [], None
        fields = dict(stream.headers)
        method = fields.get(b":method", b"GET")
        self._head_only = method == b"HEAD"
        no_body = pending == [(b"", True)]
        self._chunked = not no_body and b"content-length" not in fields
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
        lines.append(b"Connection: close\r\n\r\n")
        self.transport.write(b"".join(lines))  # type: ignore[union-attr]
        for data, end in [] if no_body else pending:
            if isinstance(data, list):  # trailers: HTTP/1.1 replicas seldom take them
                self._end_body()
            else:
                self.send_data(0, data, end, self._acknowledger())

    def _acknowledger(self) -> Callable[[int], None]:
        client, client_id = self.stream.client, self.stream.client_id
        return lambda n: client.acknowledge(client_id, n)

    # the upstream side of a stream, as h2proxy calls it

    def send_data(self, _: int, data: bytes, end: bool, on_sent: Callable[[int], None]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
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
        if self._chunked and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"0\r\n\r\n")
            self._chunked = False

    def reset(self, _: int) -> None:
        if self.transport is not None:
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
        if self.stream.lease.idle_s:  # type: ignore[union-attr]
            self.stream.last_byte = time.monotonic()
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._give_up(502, "invalid upstream response")

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done or self.stream.done:
            return
        if exc is None and self.stream.responded and not self._headers_said_length():
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
            if self.transport is not None:
                self.transport.close()

    def on_body(self, body: bytes) -> None:
        if self._done:
            return
        self._queued += len(body)
        self.stream.client.send_data(self.stream.client_id, body, False, self._sent)
        self.stream.client.flush()
        if self._queued > _MAX_QUEUED and self._reading and self.transport is not None:
            self._reading = False
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.stream.responded and not self._done:
            self._complete()

    # helpers

    def _sent(self, size: int) -> None:
        self._queued -= size
        if not self._reading and self._queued <= _MAX_QUEUED // 2 and self.transport is not None:
            self._reading = True
            self.transport.resume_reading()

    def _headers_said_length(self) -> bool:
        return any(name in (b"content-length", b"transfer-encoding") for name, _ in self._headers)

    def _complete(self) -> None:
        self._done = True
        stream = self.stream
        stream.client.send_data(stream.client_id, b"", True, lambda n: None)
        stream.client.flush()
        stream.finish(stream.status)
        if self.transport is not None:
            self.transport.close()

    def _give_up(self, status: int, reason: str) -> None:
        self._done = True
        if self.transport is not None:
            self.transport.abort()
        self.stream.client.fail(self.stream, status, reason)
