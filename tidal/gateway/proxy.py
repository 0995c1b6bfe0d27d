"""The gateway's HTTP/1.1 reverse proxy (asyncio protocols + httptools, meant to run on uvloop).

A `_ClientConnection` parses requests off one client socket and answers them in order. For each,
it asks the `Router` for a `Lease`, takes a keep-alive `_UpstreamConnection` to the leased replica
from the `IdlePool` (or dials one), and streams the request to it; the upstream connection streams
the response back. Both directions stream under transport flow control, so no body is held whole.

Only the lease and the dial are awaited (in one task per request); everything after is protocol
callbacks, which keeps the per-request cost low.

An upgrade request (`Connection: Upgrade`, e.g. a WebSocket handshake) is leased and sent like any
other; if the replica answers 101, both connections become a byte tunnel that holds the lease,
and so counts as one request in flight, until either side closes or the revision's timeout
passes (as in Knative, where `timeoutSeconds` bounds a WebSocket's life;
docs/architecture.md#streams-and-websockets).

Limits (`GatewayLimits`, docs/reliability.md): a request head must be complete within the header
read timeout of its first byte (or of the connection's opening), an idle keep-alive connection
is closed after the idle timeout, and connections over the listener's or the process's cap get a
503. Each connection holds one read deadline that a once-a-second sweep checks, so a request pays
no timer operation for it. `drain` stops accepting and lets in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import socket
import ssl
import time
from collections import deque

import httptools

from tidal.api.config import GatewayLimits
from tidal.gateway.h2_http1 import Http1Upstream
from tidal.gateway.h2proxy import PREFACE, H2ClientConnection, H2Pool, H2Upstream
from tidal.gateway.headers import HOP_BY_HOP, listed, status_phrase
from tidal.gateway.hosts import request_host
from tidal.gateway.http1_h2 import H2Bridge
from tidal.gateway.limits import ConnectionBudget, capped
from tidal.gateway.pool import IdlePool
from tidal.gateway.router import Lease, RouteError, Router, lease_for

log = logging.getLogger(__name__)

_CONNECT_ATTEMPTS = 3
_MAX_HEAD = 64 * 1024  # bytes a request head may take
_LINGER_S = 2.0  # reading and dropping after an answer to a request not read whole
_ABSOLUTE_TARGET = re.compile(rb"(?i)https?://([^/?#]*)([^#]*)")


def _drop_listed(headers: list[bytes], connection: bytes) -> None:
    """Remove the headers a `Connection` header names (RFC 9110 7.6.1); `headers` holds
    name, ": ", value, CRLF quadruples."""
    names = listed(connection)
    if names:
        headers[:] = [
            part
            for i in range(0, len(headers), 4)
            if headers[i].lower() not in names
            for part in headers[i : i + 4]
        ]


def _origin_form(method: bytes, target: bytes) -> tuple[bytes | None, bytes]:
    """For a target that is not a path: the authority an absolute-form target names (None for
    the asterisk form) and the target in origin form, which is what the replica is sent
    (RFC 9112 3.2.2: the target's authority, not the Host header, names the host). Raises
    ValueError naming what is wrong with any other target."""
    if target == b"*" and method == b"OPTIONS":
        return None, target
    absolute = _ABSOLUTE_TARGET.fullmatch(target)
    if absolute is None:
        raise ValueError(
            f"request target {target.decode('latin-1')[:100]!r} is neither a path nor an "
            "http(s) URL"
        )
    authority, rest = absolute.groups()
    if not authority or b"@" in authority:
        raise ValueError("the request target's URL has no host, or user information before it")
    return authority, rest if rest[:1] == b"/" else b"/" + rest


def in_networks(peer: str, limits: GatewayLimits) -> bool:
    """The client is in `limits.cluster_networks` (an IPv4 client of an IPv6 listener counts by
    its IPv4 address); a Unix socket or unparsable peer is not."""
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in limits.cluster_networks)


@functools.lru_cache(maxsize=1024)
def _revision_header(revision: str) -> bytes:
    return b"X-Tidal-Revision: " + revision.encode("latin-1", "replace") + b"\r\n"


def _error_response(status: int, reason: str, keep_alive: bool) -> bytes:
    """A response the proxy makes itself: `reason` as text body and in `X-Tidal-Error`."""
    body = (reason + "\n").encode()
    header = " ".join(reason.split()).encode("ascii", "replace")
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
        b"X-Tidal-Error: %s\r\n%s\r\n%s"
        % (
            status,
            status_phrase(status),
            len(body),
            header,
            b"" if keep_alive else b"Connection: close\r\n",
            body,
        )
    )


class _Exchange:
    """One request and its response on a client connection."""

    __slots__ = (
        "active",
        "body_seen",
        "chunked",
        "error",
        "head",
        "host",
        "http10",
        "keep_alive",
        "last_byte",
        "lease",
        "method",
        "path",
        "pending",
        "replayed",
        "request_done",
        "responded",
        "status",
        "task",
        "upgrade",
        "upstream",
    )

    def __init__(self) -> None:
        self.active = False  # its turn has come: leasing, streaming or answering
        self.body_seen = False
        self.chunked = False  # request body is chunked (and is re-chunked upstream)
        self.error: tuple[int, str] | None = None  # answer this instead of proxying
        self.head: bytes | None = None  # request head for the upstream, once parsed
        self.host = ""
        self.http10 = False
        self.keep_alive = False
        self.last_byte = 0.0  # time.monotonic() of the replica's last bytes (idle timeout)
        self.lease: Lease | None = None
        self.method = b""
        self.path = ""
        self.pending: list[bytes] | None = []  # body bytes held until the upstream is ready
        self.replayed = False
        self.request_done = False
        self.responded = False  # response head went to the client
        self.status = 0
        self.task: asyncio.Task[None] | None = None
        self.upgrade: bytes | None = None  # the protocols an upgrade request asks for
        self.upstream: _UpstreamConnection | H2Bridge | None = None


class _UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection to one replica; relays one response at a time to a client."""

    def __init__(self, pool: IdlePool[_UpstreamConnection], key: tuple[str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport
        self.idle = False  # in the pool
        self.reused = False  # served a response before
        self.write_full = False  # transport asked us to stop writing
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        # Lines that end in a bare LF are taken, as browsers and nginx take them from upstreams.
        self._parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        self._client: _ClientConnection | None = None
        self._ex: _Exchange | None = None
        self._out: list[bytes] = []  # bytes for the client, written once per read
        self._reading = True
        self._got_bytes = False
        self._done = False  # the response is complete
        # per response:
        self._reason = b""
        self._headers: list[bytes] = []
        self._connection: bytes | None = None
        self._length = False  # has Content-Length
        self._te = False  # has Transfer-Encoding
        self._chunk = False  # we re-chunk the body for the client
        self._eof_body = False  # body ends when the upstream closes
        self._keep_alive = False
        self._upgrade: bytes | None = None
        self._tunnel = False  # relayed a 101: bytes pass through as they are

    def attach(self, client: _ClientConnection, ex: _Exchange) -> None:
        self._client = client
        self._ex = ex
        self._done = False
        self._got_bytes = False

    def discard(self) -> None:
        """Drop the connection mid-exchange; it is not reused."""
        self._ex = self._client = None
        self.transport.abort()

    def end_tunnel(self) -> None:
        """The client left the tunnel: close once the bytes it sent last are written."""
        self._ex = self._client = None
        self.transport.close()

    def pause(self) -> None:
        if self._reading:
            self._reading = False
            self.transport.pause_reading()

    def resume(self) -> None:
        if not self._reading:
            self._reading = True
            self.transport.resume_reading()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        ex = self._ex
        if ex is None:  # unsolicited bytes: the connection is out of step
            self.transport.close()
            return
        self._got_bytes = True
        if ex.lease.idle_s:  # type: ignore[union-attr]
            ex.last_byte = time.monotonic()
        if self._tunnel:
            self._client.transport.write(data)  # type: ignore[union-attr]
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:  # after the 101 head: the new protocol
            rest = data[exc.args[0] :]
            if rest:
                self._out.append(rest)
        except httptools.HttpParserError:
            client: _ClientConnection = self._client  # type: ignore[assignment]
            self.discard()
            ex.upstream = None
            client._fail(ex, 502, "invalid upstream response")
            return
        if self._out:
            self._flush()
        if self._done and not self._tunnel:
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        ex, client = self._ex, self._client
        if ex is None or client is None:
            self._pool.forget(self)
            return
        if self._tunnel:
            self._ex = self._client = None
            ex.upstream = None
            client._complete(ex, 101, False)
            return
        if exc is None and self._eof_body and ex.responded:
            if self._chunk:
                self._out.append(b"0\r\n\r\n")
                self._flush()
            self._finish()
            return
        self._ex = self._client = None
        ex.upstream = None
        client._upstream_lost(ex, replayable=self.reused and not self._got_bytes)

    def pause_writing(self) -> None:
        self.write_full = True
        if self._client is not None:
            self._client._update_reading()

    def resume_writing(self) -> None:
        self.write_full = False
        if self._client is not None:
            self._client._update_reading()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._done:  # more than one response to one request
            self._keep_alive = False
            return
        self._reason = b""
        self._headers = []
        self._connection = self._upgrade = None
        self._length = self._te = False

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._done or self._ex.responded:  # type: ignore[union-attr]  # trailers are dropped
            return
        lname = name.lower()
        if lname in HOP_BY_HOP or lname[:6] == b"proxy-":
            if lname == b"connection":
                self._connection = value
            elif lname == b"transfer-encoding":
                self._te = True
            elif lname == b"upgrade":
                self._upgrade = value
            return
        if lname == b"content-length":
            self._length = True
        self._headers += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        if self._done:
            return
        ex: _Exchange = self._ex  # type: ignore[assignment]
        status = self._parser.get_status_code()
        headers = self._headers
        if self._connection is not None:
            _drop_listed(headers, self._connection)
        if status == 101:
            self._switch_protocols(ex, headers)
            return
        if status < 200:  # interim response (100 Continue, 103 Early Hints): relay it
            if not ex.http10:
                self._out.append(
                    b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, self._reason, b"".join(headers))
                )
            return
        ex.status = status
        ex.responded = True
        self._keep_alive = self._parser.should_keep_alive()
        self._chunk = self._eof_body = False
        if ex.method != b"HEAD" and status != 204 and status != 304:
            self._eof_body = not self._length and not self._te
            if not self._length:
                if ex.http10:  # cannot chunk for it: the body ends when we close
                    ex.keep_alive = False
                else:
                    self._chunk = True
                    headers.append(b"Transfer-Encoding: chunked\r\n")
        headers.append(_revision_header(ex.lease.revision))  # type: ignore[union-attr]
        if not ex.keep_alive:
            headers.append(b"Connection: close\r\n")
        elif ex.http10:
            headers.append(b"Connection: keep-alive\r\n")
        self._out.append(b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, self._reason, b"".join(headers)))
        if ex.method == b"HEAD":  # httptools cannot be told to skip the body a HEAD announces
            self._done = True
            self._keep_alive = False

    def on_body(self, body: bytes) -> None:
        if self._done:
            return
        if self._chunk:
            self._out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self._out.append(body)

    def on_message_complete(self) -> None:
        if self._done or not self._ex.responded:  # type: ignore[union-attr]  # end of a 1xx
            return
        if self._chunk:
            self._out.append(b"0\r\n\r\n")
        self._done = True

    # helpers

    def _switch_protocols(self, ex: _Exchange, headers: list[bytes]) -> None:
        """Relay a 101 and become a tunnel; a 101 to a request that asked for no upgrade, or
        without the protocol it switches to, is invalid (httptools then fails the parse)."""
        if ex.upgrade is None or self._upgrade is None:
            raise ValueError("101 Switching Protocols to a request that cannot switch")
        ex.status = 101
        ex.responded = True
        self._tunnel = self._done = True
        headers += (b"Connection: Upgrade\r\nUpgrade: ", self._upgrade, b"\r\n")
        headers.append(_revision_header(ex.lease.revision))  # type: ignore[union-attr]
        self._out.append(b"HTTP/1.1 101 %s\r\n%s\r\n" % (self._reason, b"".join(headers)))

    def _flush(self) -> None:
        out = self._out
        self._client.transport.write(b"".join(out) if len(out) > 1 else out[0])  # type: ignore[union-attr]
        out.clear()

    def _finish(self) -> None:
        ex: _Exchange = self._ex  # type: ignore[assignment]
        client: _ClientConnection = self._client  # type: ignore[assignment]
        self._ex = self._client = None
        ex.upstream = None
        if (
            self._keep_alive
            and ex.request_done
            and ex.upgrade is None  # else the replica may have had bytes of another protocol
            and not self.transport.get_write_buffer_size()
        ):
            self.resume()
            self.reused = True
            self._pool.give(self)
        else:
            self.transport.close()
        client._complete(ex, ex.status, ex.keep_alive and ex.request_done)


class _ClientConnection(asyncio.Protocol):
    """One client socket: parses requests and answers them in order."""

    def __init__(self, server: GatewayServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        # Counted from here, not connection_made, so that a burst of accepts sees the cap.
        server._clients.add(self)
        # time.monotonic() by which the client must send something (see the module doc), 0: none
        self.read_deadline = time.monotonic() + server.limits.header_read_timeout_s
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport
        self._peer = b""
        self._scheme = b"http"  # https on a TLS listener, for X-Forwarded-Proto
        self._cluster_client = False  # may call cluster-local hosts (tidal.gateway.hosts)
        self._queue: deque[_Exchange] = deque()  # [0] is answered first
        self._ex: _Exchange | None = None  # request being parsed
        self._reading = True
        self._write_paused = False
        self._broken = False  # unparseable input: read no more
        self._lingering = False  # answered and half-closed; reading only to drop
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # time.monotonic() when it fires
        # per request head:
        self._url = b""
        self._headers: list[bytes] = []
        self._host: bytes | None = None
        self._xff: bytes | None = None
        self._has_xfh = False
        self._has_xfp = False
        self._connection: bytes | None = None
        self._upgrade: bytes | None = None
        # An upgrade request was parsed: what the client sends after its head is for the replica.
        self._tunnel: _Exchange | None = None
        # The first bytes, while they may still be HTTP/2's preface (None: decided).
        self._opening: bytes | None = b""
        self._head_bytes = 0  # bytes received while the head is incomplete
        self._head_size = 0  # bytes of request line and headers, as parsed

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._peer = peer[0].encode() if peer else b""
        self._cluster_client = in_networks(peer[0] if peer else "", self._server.limits)
        tls = transport.get_extra_info("ssl_object")
        if tls is not None:
            self._scheme = b"https"
            if tls.selected_alpn_protocol() == "h2":  # HTTP/2 chosen in the TLS handshake
                self._become_h2(b"")

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._forward_body(self._tunnel, data)
            self._update_reading()
            return
        if self._broken:
            return
        if self._opening is not None:
            data = self._opening + data
            if len(data) < len(PREFACE) and PREFACE.startswith(data):
                self._opening = data  # the rest of the preface, or something else, is to come
                return
            self._opening = None
            if data.startswith(PREFACE):
                self._become_h2(data)
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            ex = self._queue[-1]
            if ex.upgrade is None:  # CONNECT, or refused: the exchange carries its error
                self._broken = True
            else:  # what follows the head is the new protocol's, for the replica as it is
                self._tunnel = ex
                rest = data[exc.args[0] :]
                if rest:
                    self._forward_body(ex, rest)
        except httptools.HttpParserError as exc:
            self._bad_request(400, f"malformed request: {exc}")
        else:
            ex = self._ex
            if ex is not None and ex.head is None:
                self._head_bytes += len(data)
                if self._head_bytes > _MAX_HEAD:
                    self._bad_request(431, "request head too large")
        self._pump()

    def _become_h2(self, data: bytes) -> None:
        """The client speaks HTTP/2 with prior knowledge (h2c): hand the connection over."""
        self._broken = True
        server = self._server
        conn = H2ClientConnection(server, self._cluster_client, self._peer, self._scheme)
        server._clients.discard(self)
        server._clients.add(conn)
        self.transport.set_protocol(conn)
        conn.connection_made(self.transport)
        conn.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._clients.discard(self)
        self._broken = True
        if self._timer is not None:
            self._timer.cancel()
        if self._queue and self._queue[0].active:
            ex = self._queue[0]
            if ex.task is not None:
                ex.task.cancel()
            if ex.status == 101 and ex.upstream is not None:  # the normal end of a tunnel
                ex.upstream.end_tunnel()
                ex.upstream = None
                self._complete(ex, 101, False)
            else:
                self._complete(ex, 499, False)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._queue and self._queue[0].upstream is not None:
            self._queue[0].upstream.pause()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._queue and self._queue[0].upstream is not None:
            self._queue[0].upstream.resume()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._ex = ex = _Exchange()
        if not self._queue:  # else it is read once the ones before it are answered
            self.read_deadline = time.monotonic() + self._server.limits.header_read_timeout_s
        self._queue.append(ex)
        self._url = b""
        self._headers = []
        self._host = self._xff = self._connection = self._upgrade = None
        self._has_xfh = self._has_xfp = False
        self._head_bytes = self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        ex: _Exchange = self._ex  # type: ignore[assignment]
        if ex.head is not None:  # trailers are dropped
            return
        self._head_size += len(name) + len(value) + 4
        lname = name.lower()
        if lname in HOP_BY_HOP or lname[:6] == b"proxy-":
            if lname == b"connection":
                self._connection = value
            elif lname == b"transfer-encoding":
                ex.chunked = True
            elif lname == b"upgrade":
                self._upgrade = value
            return
        if lname == b"host":  # sent first, from on_headers_complete
            if self._host is not None:  # RFC 9112 3.2: more than one Host is a 400
                ex.error = (400, "more than one Host header")
            self._host = value
            return
        if lname == b"x-forwarded-for":
            self._xff = value
            return
        if lname == b"x-forwarded-host":
            self._has_xfh = True
        elif lname == b"x-forwarded-proto":
            self._has_xfp = True
        self._headers += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        ex: _Exchange = self._ex  # type: ignore[assignment]
        self.read_deadline = 0.0
        parser = self._parser
        ex.method = parser.get_method()
        ex.http10 = parser.get_http_version() == "1.0"
        ex.keep_alive = parser.should_keep_alive() and not self._server.draining
        host = self._host
        url = self._url
        if ex.error is not None or self._head_size > _MAX_HEAD:
            ex.error = ex.error or (431, "request head too large")
        elif ex.method == b"CONNECT":
            ex.error = (501, "CONNECT not supported: the gateway is not a forward proxy")
        elif parser.should_upgrade() and ex.http10:
            ex.error = (400, "Upgrade needs HTTP/1.1")
        elif host is None:  # RFC 9112 3.2: even with an absolute target
            ex.error = (400, "missing Host header")
        elif url[:1] == b"/":  # origin form: nearly every request
            ex.host = request_host(host)
        else:
            try:
                authority, url = _origin_form(ex.method, url)
            except ValueError as exc:
                ex.error = (400, str(exc))
            else:
                host = authority or host
                ex.host = request_host(host)
        if ex.error is not None:
            ex.keep_alive = False
            ex.head = b""  # complete, and never sent
            return
        ex.path = url.partition(b"?")[0].decode("latin-1")
        headers = self._headers
        if self._connection is not None:
            _drop_listed(headers, self._connection)
        if parser.should_upgrade():
            ex.upgrade = self._upgrade
            ex.keep_alive = False  # the connection ends with the tunnel, or after a refusal
            headers += (b"Connection: Upgrade\r\nUpgrade: ", self._upgrade, b"\r\n")
        xff = self._peer if self._xff is None else self._xff + b", " + self._peer
        headers += (b"X-Forwarded-For: ", xff, b"\r\n")
        if not self._has_xfh:
            headers += (b"X-Forwarded-Host: ", host, b"\r\n")
        if not self._has_xfp:
            headers += (b"X-Forwarded-Proto: ", self._scheme, b"\r\n")
        if ex.chunked:
            headers.append(b"Transfer-Encoding: chunked\r\n")
        ex.head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
            ex.method,
            url,
            host,
            b"".join(headers),
        )

    def on_body(self, body: bytes) -> None:
        ex: _Exchange = self._ex  # type: ignore[assignment]
        ex.body_seen = True
        self._forward_body(ex, b"%x\r\n%s\r\n" % (len(body), body) if ex.chunked else body)

    def on_message_complete(self) -> None:
        ex: _Exchange = self._ex  # type: ignore[assignment]
        self._ex = None
        ex.request_done = True
        if ex.chunked:
            self._forward_body(ex, b"0\r\n\r\n")

    # the exchange

    def _forward_body(self, ex: _Exchange, data: bytes) -> None:
        if ex.pending is not None:
            ex.pending.append(data)
        elif ex.upstream is not None:
            ex.upstream.transport.write(data)
        # else the exchange has ended and the connection is closing: drop it

    def _pump(self) -> None:
        """Start the first exchange in line once its head is parsed; adjust reading."""
        if self._queue:
            ex = self._queue[0]
            if not ex.active and ex.head is not None:
                ex.active = True
                if ex.error is not None:
                    self._fail(ex, *ex.error)
                else:
                    ex.task = self._loop.create_task(self._forward(ex))
        self._update_reading()

    def _update_reading(self) -> None:
        """Read from the client unless we hold bytes we cannot pass on yet (body before the
        upstream is ready, a pipelined request) or the upstream's write buffer is full."""
        transport = self.transport
        if transport.is_closing() or self._lingering:
            return
        queue = self._queue
        ex = queue[0] if queue else None
        hold = (
            self._broken
            or len(queue) > 1
            or (
                ex is not None
                and (bool(ex.pending) or (ex.upstream is not None and ex.upstream.write_full))
            )
        )
        if hold == self._reading:
            self._reading = not hold
            if hold:
                transport.pause_reading()
            else:
                transport.resume_reading()

    async def _forward(self, ex: _Exchange) -> None:
        """Lease a replica and get a connection to it: the only waits of an exchange."""
        router = self._server.router
        pool = self._server._pool
        try:
            for _ in range(_CONNECT_ATTEMPTS):
                if ex.lease is None:
                    ex.lease = await lease_for(router, ex.host, ex.path, self._cluster_client)
                lease = ex.lease
                if lease.h2c and ex.upgrade is not None:
                    self._fail(
                        ex,
                        505,
                        f"revision {lease.revision} serves HTTP/2 (h2c): an HTTP/1.1 upgrade "
                        f"({ex.upgrade.decode('latin-1')}) cannot reach it",
                    )
                    return
                conn = None if ex.replayed or lease.h2c else pool.take(lease.host, lease.port)
                if conn is None:
                    timeout = lease.deadline - time.monotonic()
                    dial = (self._server.h2_pool.connection if lease.h2c else pool.connect)(
                        lease.host, lease.port
                    )
                    try:
                        conn = await asyncio.wait_for(dial, timeout)
                    except TimeoutError:
                        self._fail(ex, 504, "upstream request timeout")
                        return
                    except OSError:
                        ex.lease = None
                        router.retry(lease)
                        continue
                self._send(ex, conn)
                return
            self._fail(ex, 502, "upstream connect error")
        except RouteError as e:
            self._fail(ex, e.status, e.reason)
        except Exception:
            log.exception("proxying %s %s failed", ex.host, ex.path)
            self._fail(ex, 500, "internal error")

    def _send(self, ex: _Exchange, conn: _UpstreamConnection | H2Upstream) -> None:
        lease: Lease = ex.lease  # type: ignore[assignment]
        ex.last_byte = lease.started
        self._watch_deadline(lease.next_timeout(False, ex.last_byte)[0])
        pending = ex.pending or []
        ex.pending = None
        if isinstance(conn, H2Upstream):  # an h2c revision (tidal.gateway.http1_h2)
            ex.upstream = bridge = H2Bridge(self, ex, conn)
            bridge.start(pending)
        else:
            ex.upstream = conn
            conn.attach(self, ex)
            conn.transport.write(b"".join((ex.head, *pending)) if pending else ex.head)  # type: ignore[arg-type]
        if self._write_paused:
            ex.upstream.pause()
        self._update_reading()

    def _watch_deadline(self, deadline: float) -> None:
        """Have the connection's timer fire by `deadline`. One timer serves all requests on the
        connection and is re-armed lazily, so most requests cost no timer operation."""
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_later(deadline - time.monotonic(), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        ex = self._queue[0] if self._queue else None
        if ex is None or ex.upstream is None:  # no request in flight to a replica
            return
        lease: Lease = ex.lease  # type: ignore[assignment]
        deadline, reason = lease.next_timeout(ex.responded, ex.last_byte)
        if deadline <= time.monotonic():
            self._fail(ex, 504, reason)
        else:
            self._watch_deadline(deadline)

    def _upstream_lost(self, ex: _Exchange, replayable: bool) -> None:
        """The upstream closed or failed before the response was complete."""
        if replayable and not ex.replayed and ex.request_done and not ex.body_seen:
            # A pooled connection the replica closed while idle: resend once on a fresh one.
            ex.replayed = True
            ex.pending = []
            ex.task = self._loop.create_task(self._forward(ex))
        else:
            self._fail(ex, 502, "upstream connection error")

    def _bad_request(self, status: int, reason: str) -> None:
        """The client sent something we cannot parse: answer `status` in turn, then close."""
        self._broken = True
        ex = self._ex
        if ex is not None and ex.head is not None:  # broken body: the exchange cannot finish
            ex.keep_alive = False
            if ex.active:
                if ex.task is not None:
                    ex.task.cancel()
                self._fail(ex, status, reason)
                return
        else:
            if ex is not None:
                self._queue.pop()
            ex = _Exchange()
            ex.head = b""
            self._queue.append(ex)
        ex.error = (status, reason)

    def _fail(self, ex: _Exchange, status: int, reason: str) -> None:
        """End `ex` with an error: answer it if no response head went out yet, else cut the
        connection."""
        if ex.responded:
            self.transport.abort()
            keep_alive = False
        else:
            keep_alive = ex.keep_alive and ex.request_done
            self.transport.write(_error_response(status, reason, keep_alive))
        self._complete(ex, status, keep_alive)

    def _complete(self, ex: _Exchange, status: int, keep_alive: bool) -> None:
        """Account for the end of `ex` (the first in line) and move on to the next request."""
        if ex.upstream is not None:
            ex.upstream.discard()
            ex.upstream = None
        if ex.lease is not None:
            ex.lease.release(status)
        ex.pending = None
        self._queue.popleft()
        if keep_alive:
            queue = self._queue
            if not queue:
                if self._server.draining:
                    self._broken = True
                    self.transport.close()
                    return
                self.read_deadline = time.monotonic() + self._server.limits.idle_timeout_s
            elif queue[0].head is None:  # the next request's head is still arriving
                self.read_deadline = time.monotonic() + self._server.limits.header_read_timeout_s
            self._pump()
        elif not ex.request_done:
            self._linger()
        else:
            self._broken = True
            self.transport.close()

    def _linger(self) -> None:
        """Close after answering a request we did not read whole: stop writing, read and drop
        what the client still sends for a moment, then close. Closing at once with unread bytes
        would reset the connection, and the client could lose the answer."""
        self._broken = self._lingering = True
        self.read_deadline = 0.0
        transport = self.transport
        if transport.is_closing() or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._reading = True
        transport.resume_reading()
        self._loop.call_later(_LINGER_S, transport.close)

    def read_timed_out(self) -> None:
        """The read deadline passed: a head still arriving gets a 408, an idle connection is
        closed without a word."""
        self.read_deadline = 0.0
        self._broken = True
        if self._queue and not self._queue[0].active:
            self.transport.write(_error_response(408, "request header timeout", False))
            self._server.header_timeouts += 1
            self._linger()
        else:
            self._server.idle_timeouts += 1
            self.transport.close()

    def drain(self) -> None:
        """Shutdown: close the connection if idle (or half-way through a request head), else
        after the responses it owes."""
        if not self._queue or self._queue[0].head is None:
            self._broken = True
            self.transport.close()
            return
        for ex in self._queue:
            ex.keep_alive = False


class GatewayServer:
    """The gateway's HTTP listener: proxies each request to the replica its router leases."""

    def __init__(
        self,
        router: Router,
        limits: GatewayLimits | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.router = router
        self.limits = limits or GatewayLimits()
        self.budget = budget
        self.port = 0
        self.draining = False
        self.header_timeouts = 0  # connections closed with a 408
        self.idle_timeouts = 0
        self._server: asyncio.Server | None = None
        self._clients: set[_ClientConnection | H2ClientConnection] = set()
        self._pool = IdlePool(_UpstreamConnection)
        self.h2_pool = H2Pool()
        self.h2_http1_pool = IdlePool(Http1Upstream)
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def open_connections(self) -> int:
        return len(self._clients)

    def _open_count(self) -> int:
        return len(self._clients)

    async def start(
        self,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        sock: socket.socket | None = None,
    ) -> None:
        """Listen on host:port, or on `sock`, a listening socket made elsewhere (one that
        several gateway processes share). With `tls`, which is then made to offer HTTP/2 and
        HTTP/1.1 by ALPN, as gRPC clients over TLS expect."""
        loop = asyncio.get_running_loop()
        if tls is not None:
            tls.set_alpn_protocols(["h2", "http/1.1"])
        factory = capped(
            lambda: _ClientConnection(self),
            self._open_count,
            self.limits.max_connections,
            self.budget,
        )
        if sock is not None:
            self._server = await loop.create_server(factory, sock=sock, backlog=1024, ssl=tls)
        else:
            self._server = await loop.create_server(
                factory, host, port, reuse_address=True, backlog=1024, ssl=tls
            )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.budget is not None:
            self.budget.register(self._open_count)
        self._sweeper = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Close connections whose read deadline passed (checked a few times per shortest
        timeout, at most once a second)."""
        limits = self.limits
        period = min(1.0, limits.header_read_timeout_s / 4, limits.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for client in [c for c in self._clients if 0.0 < c.read_deadline <= now]:
                try:
                    client.read_timed_out()
                except Exception:  # e.g. accepted but never connected: forget it
                    log.exception("closing a timed-out connection failed")
                    self._clients.discard(client)

    async def drain(self, timeout: float) -> int:
        """Stop accepting, close idle connections and let the others finish the requests they
        have sent (each closes after its last response), for up to `timeout` seconds; then cut
        what is left. Returns how many connections were cut."""
        if self._server is None:
            return 0
        self.draining = True
        self._server.close()
        for client in list(self._clients):
            client.drain()
        deadline = time.monotonic() + timeout
        while self._clients and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        cut = len(self._clients)
        await self.close()
        return cut

    async def close(self) -> None:
        """Stop listening, cut open client connections (their leases end as 499) and drop the
        idle upstream connections."""
        if self._server is None:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.budget is not None:
            self.budget.unregister(self._open_count)
        self._server.close()
        for client in list(self._clients):
            client.transport.abort()
        self._pool.close()
        self.h2_pool.close()
        self.h2_http1_pool.close()
        await self._server.wait_closed()
        self._server = None
