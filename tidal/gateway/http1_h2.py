"""An HTTP/1.1 request proxied to a replica that serves HTTP/2 without TLS (a revision whose
port is named `h2c`; docs/architecture.md#http2-and-grpc), as Knative's proxies send every
request to such a container over h2c whatever the client spoke.

The request goes out as one stream on the replica's pooled h2c connection (`H2Upstream`, shared
with HTTP/2 clients): its head as HTTP/2 headers (the Host as `:authority`), its body as DATA,
ended where its Content-Length or last chunk says. The response comes back as HTTP/1.1: chunked
unless it has a Content-Length (close-delimited for an HTTP/1.0 client), its trailers (gRPC's
status) as the chunked body's trailer section. Both directions keep flow control: the client's
request data is read no faster than the replica's window takes it, and the replica's data is
acknowledged only once written to a client socket that is not backed up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from tidal.gateway.h2proxy import H2Upstream, _Headers, _Stream
from tidal.gateway.headers import status_phrase

if TYPE_CHECKING:
    from tidal.gateway.proxy import _ClientConnection, _Exchange

# Request headers that are HTTP/1.1's own; HTTP/2 carries their meaning in its framing.
_NOT_FORWARDED = frozenset((b"host", b"transfer-encoding", b"content-length"))


class H2Bridge:
    """One HTTP/1.1 exchange on an h2c stream. To the HTTP/1.1 client connection it is the
    exchange's upstream (`transport.write`, `write_full`, `pause`, `resume`, `discard`); to the
    `H2Upstream` it is the stream's client (`send_headers`, `send_data`, `flush`, `fail`,
    `stream_over`, `acknowledge`)."""

    def __init__(self, client: _ClientConnection, ex: _Exchange, upstream: H2Upstream) -> None:
        self.client = client
        self.ex = ex
        self.upstream = upstream
        self.transport = self  # the client writes request body bytes to `upstream.transport`
        self.write_full = False
        self._paused = False  # the client's socket is backed up: acknowledge nothing
        self._held: list[tuple[Callable[[int], None], int]] = []
        self._chunked = False  # the response goes to the client chunked
        method, target, host, headers = _request_head(ex.head or b"")
        length = dict(headers).get(b"content-length", b"")
        self._remaining = int(length) if length.isdigit() else 0  # request body still to come
        self.stream = stream = _Stream(self, 1)  # type: ignore[arg-type]
        stream.lease = ex.lease
        stream.headers = [
            (b":method", method),
            (b":scheme", b"http"),
            (b":authority", host),
            (b":path", target),
            *((name, value) for name, value in headers if name not in _NOT_FORWARDED),
            (b"te", b"trailers"),  # the gateway relays trailers (gRPC needs it said)
        ]

    def start(self, pending: list[bytes]) -> None:
        """Open the stream with the request body bytes that came before it."""
        for data in pending:
            self.write(data)
        if not self.ex.chunked and self._remaining == 0 and not pending:
            self.stream.pending = [(b"", True)]  # no body: the head ends the stream
        self.upstream.open(self.stream)
        self.upstream.flush()

    # -- the request body, from the HTTP/1.1 client --------------------------------------------

    def write(self, data: bytes) -> None:
        if self.ex.chunked:  # one chunk per call, as the client frames them: size CRLF data CRLF
            size, _, rest = data.partition(b"\r\n")
            body, end = rest[:-2], size == b"0"
        else:
            body = data
            self._remaining -= len(data)
            end = self._remaining <= 0
        stream = self.stream
        if stream.pending is not None:  # not open yet
            stream.pending.append((body, end))
            return
        if stream.done:
            return
        self.upstream.send_data(stream.upstream_id, body, end, self._request_sent)
        self.upstream.flush()
        self.write_full = self.upstream.backlog(stream.upstream_id)

    def acknowledge(self, _: int, size: int) -> None:
        """Request data that waited for the stream to open has left."""
        self._request_sent(size)

    def _request_sent(self, _: int) -> None:
        if self.write_full and not self.upstream.backlog(self.stream.upstream_id):
            self.write_full = False
            self.client._update_reading()

    # -- the response, from the replica ---------------------------------------------------------

    def send_headers(self, _: int, headers: _Headers, end_stream: bool = False) -> None:
        ex = self.ex
        self._heard()
        if ex.responded:  # the trailers, after the data
            if self._chunked:
                self._write(b"0\r\n%s\r\n" % _header_lines(headers))
            return
        status_text = dict(headers).get(b":status", b"502")
        status = int(status_text) if status_text.isdigit() else 502
        lines = _header_lines(headers)
        if status < 200:  # interim (100 Continue, 103 Early Hints)
            if not ex.http10:
                self._write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, status_phrase(status), lines))
            return
        ex.status, ex.responded = status, True
        bodiless = ex.method == b"HEAD" or status in (204, 304)
        if not bodiless and b"content-length" not in dict(headers):
            if ex.http10:  # cannot chunk for it: the body ends when the connection does
                ex.keep_alive = False
            else:
                self._chunked = True
                lines += b"Transfer-Encoding: chunked\r\n"
        if not ex.keep_alive:
            lines += b"Connection: close\r\n"
        elif ex.http10:
            lines += b"Connection: keep-alive\r\n"
        self._write(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, status_phrase(status), lines))
        if end_stream and self._chunked:
            self._write(b"0\r\n\r\n")

    def send_data(
        self, _: int, data: bytes, end_stream: bool, on_sent: Callable[[int], None]
    ) -> None:
        self._heard()
        if data:
            self._write(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else bytes(data))
            if self._paused:
                self._held.append((on_sent, len(data)))
            else:
                on_sent(len(data))
        if end_stream and self._chunked:
            self._write(b"0\r\n\r\n")

    def flush(self) -> None:
        """Writes go out as they come; nothing is batched here."""

    def fail(self, _: _Stream, status: int, reason: str) -> None:
        self.client._fail(self.ex, status, reason)

    def stream_over(self, _: _Stream) -> None:
        """The response is complete (the lease was released with its status)."""
        ex = self.ex
        ex.upstream = None
        self.client._complete(ex, ex.status, ex.keep_alive and ex.request_done)

    # -- what the client connection asks of an upstream -----------------------------------------

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        held, self._held = self._held, []
        for on_sent, size in held:
            on_sent(size)
        self.upstream.flush()

    def discard(self) -> None:
        """The exchange ended another way (a timeout, a failure, the client went): cancel
        the stream at the replica."""
        stream = self.stream
        if stream.done:
            return
        stream.done = True
        if stream.pending is None:
            self.upstream.streams.pop(stream.upstream_id, None)
            self.upstream.reset(stream.upstream_id)

    def _write(self, data: bytes) -> None:
        transport = self.client.transport
        if not transport.is_closing():
            transport.write(data)

    def _heard(self) -> None:
        if self.ex.lease is not None and self.ex.lease.idle_s:
            self.ex.last_byte = time.monotonic()


def _request_head(head: bytes) -> tuple[bytes, bytes, bytes, _Headers]:
    """Method, target, Host and the other headers (names lower-cased) of the HTTP/1.1 head the
    client connection built for the replica."""
    first, *lines = head.split(b"\r\n")
    method, target, _ = first.split(b" ", 2)
    headers: _Headers = []
    host = b""
    for line in lines:
        if not line:
            continue
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"host":
            host = value
        headers.append((name, value))
    return method, target, host, headers


def _header_lines(headers: _Headers) -> bytes:
    return b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers if not k.startswith(b":"))
