"""The gateway proxy over real sockets on 127.0.0.1: aiohttp or raw asyncio servers as replicas,
aiohttp or raw sockets as clients, and a router double that records every lease.

Each scenario runs on the stdlib loop (pytest-asyncio) and again on uvloop, which production uses
(`test_on_uvloop`)."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import ipaddress
import json
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import uvloop
from aiohttp import web

from tidal.api.config import GatewayLimits
from tidal.gateway.proxy import GatewayServer
from tidal.gateway.router import Lease, RouteError
from tidal.security.localca import ensure_local_tls
from tidal.security.tls import client_context, server_context

REVISION = "hello-00001"
MB = 1024 * 1024


class CountingLease(Lease):
    """Records every call of `release`, so a test can see it was called exactly once."""

    def release(self, status: int) -> None:
        self.__dict__.setdefault("calls", []).append(status)
        super().release(status)

    @property
    def calls(self) -> list[int]:
        return self.__dict__.get("calls", [])


class FakeRouter:
    """Maps hosts to replicas, first one not marked suspect; records leases and retries."""

    def __init__(self) -> None:
        self.routes: dict[str, list[tuple[str, int]]] = {}
        self.errors: dict[str, RouteError] = {}
        self.timeout = 10.0
        self.response_start = 0.0  # the revision's responseStartTimeoutSeconds (0: none)
        self.idle = 0.0  # and its idleTimeoutSeconds
        self.leases: list[CountingLease] = []
        self.retried: list[CountingLease] = []
        self.suspect: set[tuple[str, int]] = set()

    async def acquire(self, host: str, path: str) -> Lease:
        if host in self.errors:
            raise self.errors[host]
        replicas = [r for r in self.routes.get(host, []) if r not in self.suspect]
        if not replicas:
            raise RouteError(404, f"no route for host {host}")
        lease = CountingLease(
            host=replicas[0][0],
            port=replicas[0][1],
            revision=REVISION,
            namespace="default",
            deadline=time.monotonic() + self.timeout,
            response_start_s=self.response_start,
            idle_s=self.idle,
        )
        self.leases.append(lease)
        return lease

    def retry(self, lease: Lease) -> None:
        self.suspect.add((lease.host, lease.port))
        self.retried.append(lease)  # type: ignore[arg-type]
        lease._released = True  # released without counting a response

    def statuses(self) -> list[list[int]]:
        return [lease.calls for lease in self.leases if lease not in self.retried]


class Replica:
    """An aiohttp replica that counts its connections and offers a few behaviours."""

    def __init__(self) -> None:
        self.peers: set[tuple[str, int]] = set()
        self.body_started = asyncio.Event()  # first request-body bytes arrived
        self.client_got_first = asyncio.Event()  # set by a test once it read the first chunk
        self.hold = asyncio.Event()  # /hold waits for this
        self.sent_mb = 0  # /big progress
        app = web.Application()
        app.router.add_route("*", "/echo", self.echo)
        app.router.add_post("/digest", self.digest)
        app.router.add_get("/stream", self.stream)
        app.router.add_get("/hold", self.hold_handler)
        app.router.add_get("/empty", self.empty)
        app.router.add_get("/big", self.big)
        app.router.add_post("/stall", self.stall)
        app.router.add_get("/ws", self.websocket)
        app.router.add_get("/drip", self.drip)
        self.runner = web.AppRunner(app)
        self.port = 0

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def _seen(self, request: web.Request) -> None:
        self.peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]

    async def echo(self, request: web.Request) -> web.Response:
        self._seen(request)
        body = await request.read()
        info = {"method": request.method, "path": request.path_qs, "body": body.decode()}
        info["headers"] = {k.lower(): v for k, v in request.headers.items()}
        return web.json_response(info, headers={"X-Upstream": "yes"})

    async def digest(self, request: web.Request) -> web.Response:
        self._seen(request)
        sha, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            self.body_started.set()
            sha.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha": sha.hexdigest()})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """20 chunks of 1 MB; the rest only once the client has the first (chunked encoding)."""
        self._seen(request)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(_chunk(0))
        await self.client_got_first.wait()
        for i in range(1, 20):
            await response.write(_chunk(i))
        await response.write_eof()
        return response

    async def hold_handler(self, request: web.Request) -> web.StreamResponse:
        """Answers its head (and a first chunk if ?partial) and waits for `hold` before the rest."""
        self._seen(request)
        if "partial" in request.query:
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b"first")
            await self.hold.wait()
            await response.write_eof()
            return response
        await self.hold.wait()
        return web.Response(text="late")

    async def big(self, request: web.Request) -> web.StreamResponse:
        """64 MB as fast as the connection takes it."""
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(64):
            await response.write(_chunk(i % 20))
            self.sent_mb += 1
        await response.write_eof()
        return response

    async def stall(self, request: web.Request) -> web.Response:
        """Reads the first bytes of the body, then nothing until `hold` is set."""
        size = len(await request.content.readany())
        await self.hold.wait()
        async for chunk in request.content.iter_any():
            size += len(chunk)
        return web.Response(text=str(size))

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """Echoes each message with the headers it was asked with; "bye" makes it close."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.data == "bye":
                await ws.close(code=4000, message=b"asked to")
            elif message.type == aiohttp.WSMsgType.TEXT:
                await ws.send_json({"echo": message.data, "path": request.path_qs})
            else:
                await ws.send_bytes(message.data)
        return ws

    async def drip(self, request: web.Request) -> web.StreamResponse:
        """`?n=` bytes, one every `?every=` seconds, the first at once."""
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(int(request.query["n"])):
            if i:
                await asyncio.sleep(float(request.query["every"]))
            await response.write(b".")
        await response.write_eof()
        return response

    async def empty(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(status=204)


def _chunk(i: int) -> bytes:
    return bytes([65 + i]) * MB


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def replica() -> AsyncIterator[Replica]:
    r = Replica()
    await r.start()
    yield r
    r.hold.set()
    r.client_got_first.set()
    await r.runner.cleanup()


@pytest.fixture
async def router(replica: Replica) -> FakeRouter:
    r = FakeRouter()
    r.routes["app.example.com"] = [("127.0.0.1", replica.port)]
    return r


@pytest.fixture
async def gateway(router: FakeRouter) -> AsyncIterator[GatewayServer]:
    gw = GatewayServer(router)
    await gw.start("127.0.0.1", 0)
    yield gw
    await gw.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def url(gw: GatewayServer, path: str) -> str:
    return f"http://127.0.0.1:{gw.port}{path}"


HOST = {"Host": "app.example.com"}


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def raw_exchange(
    gw: GatewayServer, data: bytes, then: Callable[[asyncio.StreamReader], Awaitable[bytes]]
) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(data)
    try:
        return await asyncio.wait_for(then(reader), 5)
    finally:
        writer.close()


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    return await reader.read()


async def test_cluster_local_hosts_answer_only_clients_of_the_cluster_networks(
    router: FakeRouter, session: aiohttp.ClientSession, replica: Replica
) -> None:
    """A private service must not be reachable by sending its cluster-local name from outside:
    here the cluster is 10.0.0.0/8, so this loopback client is outside."""
    router.routes["app.default.svc.cluster.local"] = [("127.0.0.1", replica.port)]
    router.routes["app.default"] = [("127.0.0.1", replica.port)]
    outside = GatewayLimits(cluster_networks=(ipaddress.ip_network("10.0.0.0/8"),))
    for limits, allowed in ((outside, False), (GatewayLimits(), True)):
        gateway = GatewayServer(router, limits)
        await gateway.start("127.0.0.1", 0)
        try:
            for host in ("app.default.svc.cluster.local", "APP.default.", "app.default"):
                async with session.get(url(gateway, "/echo"), headers={"Host": host}) as resp:
                    if allowed:
                        assert resp.status == 200, host
                    else:
                        assert resp.status == 404, host
                        assert "no service answers host" in await resp.text()
            async with session.get(url(gateway, "/echo"), headers=HOST) as resp:
                assert resp.status == 200, "external hosts answer everyone"
        finally:
            await gateway.close()


async def test_get_and_post_pass_through(gateway, session, router) -> None:
    async with session.get(url(gateway, "/echo?q=1"), headers=HOST) as resp:
        assert resp.status == 200
        assert resp.headers["X-Tidal-Revision"] == REVISION
        assert resp.headers["X-Upstream"] == "yes"
        info = await resp.json()
    assert (info["method"], info["path"]) == ("GET", "/echo?q=1")
    async with session.post(url(gateway, "/echo"), headers=HOST, data=b"hello body") as resp:
        assert (await resp.json())["body"] == "hello body"
    assert router.statuses() == [[200], [200]]


async def test_forwarded_and_hop_by_hop_headers(gateway, session) -> None:
    headers = {
        "Host": "App.Example.com:8080",
        "X-Forwarded-For": "10.1.2.3",
        "Connection": "keep-alive, X-Drop-Me",
        "X-Drop-Me": "secret",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic eA==",
        "X-Keep-Me": "1",
    }
    async with session.get(url(gateway, "/echo"), headers=headers) as resp:
        seen = (await resp.json())["headers"]
    assert seen["x-forwarded-for"] == "10.1.2.3, 127.0.0.1"
    assert seen["x-forwarded-host"] == "App.Example.com:8080"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-keep-me"] == "1"
    for dropped in ("x-drop-me", "keep-alive", "te", "proxy-authorization"):
        assert dropped not in seen


async def test_over_tls_the_replica_is_told_https(router, session) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = ensure_local_tls(Path(tmp))
        gateway = GatewayServer(router)
        await gateway.start("127.0.0.1", 0, tls=server_context(files.cert, files.key))
        try:
            tls = client_context(str(files.ca_cert))
            address = f"https://localhost:{gateway.port}/echo"
            async with session.get(address, headers=HOST, ssl=tls) as resp:
                seen = (await resp.json())["headers"]
            assert seen["x-forwarded-proto"] == "https"
        finally:
            await gateway.close()


async def test_large_chunked_request_body_is_streamed(gateway, session, replica) -> None:
    sha = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for i in range(20):
            if i == 1:  # the replica must see bytes before the client sends the rest
                await asyncio.wait_for(replica.body_started.wait(), 5)
            sha.update(_chunk(i))
            yield _chunk(i)

    async with session.post(url(gateway, "/digest"), headers=HOST, data=body()) as resp:
        assert resp.status == 200
        assert await resp.json() == {"size": 20 * MB, "sha": sha.hexdigest()}


async def test_large_response_is_streamed(gateway, session, replica, router) -> None:
    got = hashlib.sha256()
    async with session.get(url(gateway, "/stream"), headers=HOST) as resp:
        first = await resp.content.readexactly(MB)
        assert first == _chunk(0)
        got.update(first)
        replica.client_got_first.set()  # only now does the replica send the other 19 MB
        async for data in resp.content.iter_any():
            got.update(data)
    assert got.hexdigest() == hashlib.sha256(b"".join(_chunk(i) for i in range(20))).hexdigest()
    assert router.statuses() == [[200]]


async def test_upstream_connections_are_reused(gateway, router, replica) -> None:
    async with aiohttp.ClientSession() as keep_alive:
        for _ in range(10):
            async with keep_alive.get(url(gateway, "/echo"), headers=HOST) as resp:
                await resp.read()
    connector = aiohttp.TCPConnector(force_close=True)  # a new client connection each time
    async with aiohttp.ClientSession(connector=connector) as closing:
        for _ in range(10):
            async with closing.get(url(gateway, "/echo"), headers=HOST) as resp:
                await resp.read()
    assert len(replica.peers) == 1
    assert router.statuses() == [[200]] * 20


async def test_route_error_answers_its_status_and_keeps_the_connection(gateway, router) -> None:
    router.errors["busy.example.com"] = RouteError(503, "revision hello-00001 failed")
    request = b"GET /echo HTTP/1.1\r\nHost: busy.example.com\r\n\r\n"
    request += b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"
    data = await raw_exchange(gateway, request, read_to_eof)
    first, second = data.split(b"HTTP/1.1 200", 1)
    assert first.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"X-Tidal-Error: revision hello-00001 failed\r\n" in first
    assert first.endswith(b"\r\n\r\nrevision hello-00001 failed\n")
    assert b"X-Tidal-Revision: hello-00001" in second


async def test_the_host_is_matched_without_case_port_or_trailing_dot(gateway, session) -> None:
    for host in ("APP.example.com", "app.example.com:8080", "app.example.com."):
        async with session.get(url(gateway, "/echo"), headers={"Host": host}) as resp:
            assert resp.status == 200, host


async def test_unknown_host_is_404(gateway, session) -> None:
    async with session.get(url(gateway, "/"), headers={"Host": "nope.example.com"}) as resp:
        assert resp.status == 404
        assert await resp.text() == "no route for host nope.example.com\n"
        assert resp.headers["X-Tidal-Error"] == "no route for host nope.example.com"


async def test_malformed_request_is_400_then_closed(gateway) -> None:
    data = await raw_exchange(
        gateway, b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", read_to_eof
    )
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in data
    assert b"malformed request: " in data


async def test_websocket_is_tunnelled_and_holds_its_lease(gateway, session, router) -> None:
    async with session.ws_connect(url(gateway, "/ws?room=1"), headers=HOST) as ws:
        assert ws._response.headers["X-Tidal-Revision"] == REVISION
        for i in range(3):
            await ws.send_str(f"hi {i}")
            assert await ws.receive_json() == {"echo": f"hi {i}", "path": "/ws?room=1"}
        await ws.send_bytes(MB * b"x")  # larger than any socket buffer: flow control both ways
        assert (await ws.receive_bytes()) == MB * b"x"
        assert router.statuses() == [[]]  # one request in flight for the whole session
    await eventually(lambda: router.statuses() == [[101]])


async def test_replica_closing_a_websocket_closes_it_for_the_client(gateway, session, router):
    async with session.ws_connect(url(gateway, "/ws"), headers=HOST) as ws:
        await ws.send_str("bye")
        message = await ws.receive()
        assert (message.type, message.data, message.extra) == (
            aiohttp.WSMsgType.CLOSE,
            4000,
            "asked to",
        )
    await eventually(lambda: router.statuses() == [[101]])


async def test_deadline_cuts_a_tunnel(gateway, session, router) -> None:
    router.timeout = 0.5
    async with session.ws_connect(url(gateway, "/ws"), headers=HOST) as ws:
        await ws.send_str("hi")
        assert (await ws.receive_json())["echo"] == "hi"
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert router.statuses() == [[504]]


async def test_any_upgrade_is_a_byte_tunnel_from_the_first_byte(gateway, router) -> None:
    """A replica speaking its own protocol after the 101; bytes the client sends with the head
    reach it, and what it sends with its 101 reaches the client."""

    async def upgrade_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"\r\nConnection: Upgrade\r\nUpgrade: echo/1\r\n" in head, head
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n")
        writer.write(b"Upgrade: echo/1\r\nX-Upstream: yes\r\n\r\nhello ")
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(upgrade_echo, "127.0.0.1", 0)
    router.routes["app.example.com"] = [("127.0.0.1", server.sockets[0].getsockname()[1])]
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(
            b"GET /chat HTTP/1.1\r\nHost: app.example.com\r\nConnection: keep-alive, Upgrade\r\n"
            b"Upgrade: echo/1\r\n\r\nearly bytes;"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"Connection: Upgrade\r\nUpgrade: echo/1\r\n" in head
        assert b"X-Upstream: yes\r\n" in head
        assert await asyncio.wait_for(reader.readexactly(18), 5) == b"hello early bytes;"
        writer.write(b"GET / HTTP/1.1\r\n\r\n")  # not parsed as HTTP any more
        assert await asyncio.wait_for(reader.readexactly(18), 5) == b"GET / HTTP/1.1\r\n\r\n"
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    await eventually(lambda: router.statuses() == [[101]])


async def test_a_request_whose_first_bytes_could_open_http2_is_http11(gateway) -> None:
    """ "P" could begin HTTP/2's preface ("PRI * HTTP/2.0..."): the gateway waits for more."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"P")
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.write(b"OST /echo HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 2\r\n\r\nhi")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_upgrade_the_replica_declines_is_answered_and_closed(gateway, router) -> None:
    request = (
        b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\n\r\n"
    )
    data = await raw_exchange(gateway, request, read_to_eof)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in data
    seen = json.loads(data.partition(b"\r\n\r\n")[2])
    assert (seen["headers"]["connection"], seen["headers"]["upgrade"]) == ("Upgrade", "websocket")
    assert router.statuses() == [[200]]


async def test_http10_upgrade_is_400(gateway, router) -> None:
    request = (
        b"GET /ws HTTP/1.0\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n"
    )
    data = await raw_exchange(gateway, request, read_to_eof)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Upgrade needs HTTP/1.1" in data
    assert router.leases == []


async def test_101_to_a_request_that_asked_no_upgrade_is_502(gateway, session, router) -> None:
    async def switches_anyway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n")
        writer.write(b"Upgrade: websocket\r\n\r\n")
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(switches_anyway, "127.0.0.1", 0)
    router.routes["app.example.com"] = [("127.0.0.1", server.sockets[0].getsockname()[1])]
    async with server, session.get(url(gateway, "/"), headers=HOST) as resp:
        assert (resp.status, await resp.text()) == (502, "invalid upstream response\n")
    assert router.statuses() == [[502]]


async def test_absolute_form_target_is_routed_by_its_authority(gateway, router) -> None:
    # RFC 9112 3.2.2: the target's authority names the host, not the Host header; the replica
    # gets the origin form and a Host header that agrees with it.
    request = (
        b"GET HTTP://App.Example.com:8080/echo?a=1 HTTP/1.1\r\nHost: nope.example.com\r\n"
        b"Connection: close\r\n\r\n"
    )
    data = await raw_exchange(gateway, request, read_to_eof)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
    seen = json.loads(data.partition(b"\r\n\r\n")[2])
    assert seen["path"] == "/echo?a=1"
    assert seen["headers"]["host"] == "App.Example.com:8080"
    assert seen["headers"]["x-forwarded-host"] == "App.Example.com:8080"
    assert len(router.leases) == 1


async def refused(gateway, request: bytes, status_line: bytes, reason: bytes) -> None:
    """The gateway answers `request` itself with this status and reason, and closes."""
    data = await raw_exchange(gateway, request, read_to_eof)
    assert data.startswith(status_line), data
    assert reason in data and b"Connection: close" in data


async def test_other_request_targets_are_400(gateway, router) -> None:
    for target, reason in [
        (b"ftp://app.example.com/echo", b"is neither a path nor an http(s) URL"),
        (b"http://user@app.example.com/echo", b"user information"),
        (b"http:///echo", b"has no host"),
    ]:
        request = b"GET %s HTTP/1.1\r\nHost: app.example.com\r\n\r\n" % target
        await refused(gateway, request, b"HTTP/1.1 400 Bad Request\r\n", reason)
    # RFC 9112 3.2: a Host header is needed even with an absolute target
    request = b"GET http://app.example.com/echo HTTP/1.1\r\n\r\n"
    await refused(gateway, request, b"HTTP/1.1 400 Bad Request\r\n", b"missing Host header")
    assert router.leases == []


async def test_connect_is_501_with_why(gateway, router) -> None:
    request = b"CONNECT app.example.com:443 HTTP/1.1\r\nHost: app.example.com:443\r\n\r\n"
    await refused(gateway, request, b"HTTP/1.1 501 Not Implemented\r\n", b"not a forward proxy")
    assert router.leases == []


async def test_asterisk_options_is_forwarded(gateway, router) -> None:
    request = b"OPTIONS * HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"
    data = await raw_exchange(gateway, request, read_to_eof)
    assert data.startswith(b"HTTP/1.1 "), data  # the replica answers, whatever it says
    assert len(router.leases) == 1


async def test_deadline_before_response_is_504(gateway, session, router) -> None:
    router.timeout = 0.3
    async with session.get(url(gateway, "/hold"), headers=HOST) as resp:
        assert resp.status == 504
        assert await resp.text() == "upstream request timeout\n"
    assert router.statuses() == [[504]]


async def test_deadline_while_streaming_closes_the_client(gateway, session, router) -> None:
    router.timeout = 0.5
    async with session.get(url(gateway, "/hold?partial=1"), headers=HOST) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert router.statuses() == [[504]]


async def test_response_start_timeout_is_504_while_no_answer_started(gateway, session, router):
    router.response_start = 0.3
    async with session.get(url(gateway, "/hold"), headers=HOST) as resp:
        assert resp.status == 504
        assert resp.headers["X-Tidal-Error"] == (
            "no response within responseStartTimeoutSeconds (0.3s)"
        )
    assert router.statuses() == [[504]]


async def test_response_start_timeout_lets_a_started_response_run(gateway, session, replica):
    gateway.router.response_start = 0.3
    async with session.get(url(gateway, "/hold?partial=1"), headers=HOST) as resp:
        assert resp.status == 200
        assert await resp.content.readexactly(5) == b"first"
        await asyncio.sleep(0.6)
        replica.hold.set()
        assert await resp.read() == b""
    assert gateway.router.statuses() == [[200]]


async def test_idle_timeout_cuts_a_response_the_replica_went_quiet_in(gateway, session, router):
    router.idle = 0.5
    async with session.get(url(gateway, "/hold?partial=1"), headers=HOST) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert router.statuses() == [[504]]


async def test_idle_timeout_counts_from_each_byte(gateway, session, router) -> None:
    router.idle = 0.5
    async with session.get(url(gateway, "/drip?n=8&every=0.2"), headers=HOST) as resp:
        assert await resp.read() == b"." * 8  # 1.4 s in all, never 0.5 s without a byte
    assert router.statuses() == [[200]]


async def test_idle_timeout_closes_a_silent_websocket(gateway, session, router) -> None:
    router.idle = 0.5
    async with session.ws_connect(url(gateway, "/ws"), headers=HOST) as ws:
        for _ in range(4):  # busy for longer than the idle timeout: kept open
            await ws.send_str("hi")
            assert (await ws.receive_json())["echo"] == "hi"
            await asyncio.sleep(0.2)
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert router.statuses() == [[504]]


async def test_refused_replica_is_retried_on_another(gateway, session, router, replica) -> None:
    dead = ("127.0.0.1", _refused_port())
    router.routes["app.example.com"] = [dead, ("127.0.0.1", replica.port)]
    async with session.get(url(gateway, "/echo"), headers=HOST) as resp:
        assert resp.status == 200
    assert [(lease.host, lease.port) for lease in router.retried] == [dead]
    assert router.retried[0].calls == []  # the router released it; the proxy did not
    assert router.statuses() == [[200]]


async def test_all_replicas_refusing_is_502(gateway, session, router) -> None:
    router.routes["app.example.com"] = [("127.0.0.1", _refused_port()) for _ in range(3)]
    async with session.get(url(gateway, "/echo"), headers=HOST) as resp:
        assert resp.status == 502
        assert await resp.text() == "upstream connect error\n"
    assert len(router.retried) == 3


async def test_client_disconnect_releases_499_and_drops_upstream(gateway, router, replica) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /hold HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
    await eventually(lambda: len(replica.peers) == 1)
    writer.close()
    await eventually(lambda: router.statuses() == [[499]])
    replica.hold.set()
    async with aiohttp.ClientSession() as s, s.get(url(gateway, "/echo"), headers=HOST) as resp:
        assert resp.status == 200
    assert len(replica.peers) == 2  # the abandoned upstream connection was not pooled


async def test_head_and_204_have_no_body(gateway, router) -> None:
    request = b"HEAD /echo HTTP/1.1\r\nHost: app.example.com\r\n\r\n"
    request += b"GET /empty HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"
    data = await raw_exchange(gateway, request, read_to_eof)
    head, empty = data.split(b"HTTP/1.1 204", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"Content-Length: " in head
    assert empty.endswith(b"\r\n\r\n") and b"Transfer-Encoding" not in empty
    assert router.statuses() == [[200], [204]]


async def test_expect_100_continue_passes_through(gateway) -> None:
    async def exchange(reader: asyncio.StreamReader) -> bytes:
        interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(b"hello")
        return await reader.read()

    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        b"POST /echo HTTP/1.1\r\nHost: app.example.com\r\nExpect: 100-continue\r\n"
        b"Content-Length: 5\r\nConnection: close\r\n\r\n"
    )
    data = await asyncio.wait_for(exchange(reader), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["body"] == "hello"


async def test_http10_client_gets_a_close_delimited_body(gateway, replica) -> None:
    replica.client_got_first.set()
    data = await raw_exchange(
        gateway, b"GET /stream HTTP/1.0\r\nHost: app.example.com\r\n\r\n", read_to_eof
    )
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"Connection: close" in head and b"Transfer-Encoding" not in head
    assert body == b"".join(_chunk(i) for i in range(20))


async def test_pipelined_requests_are_answered_in_order(gateway, router) -> None:
    request = b"".join(
        b"POST /echo HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 2\r\n\r\n%02d" % i
        for i in range(5)
    )
    request += b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"
    data = await raw_exchange(gateway, request, read_to_eof)
    bodies = [
        json.loads(part.split(b"\r\n\r\n", 1)[1])["body"] for part in data.split(b"HTTP/1.1 ")[1:]
    ]
    assert bodies == ["00", "01", "02", "03", "04", ""]
    assert router.statuses() == [[200]] * 6


async def test_upstream_failing_mid_response_is_502(gateway, session, router) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(broken, "127.0.0.1", 0)
    router.routes["app.example.com"] = [("127.0.0.1", server.sockets[0].getsockname()[1])]
    async with server, session.get(url(gateway, "/"), headers=HOST) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    await eventually(lambda: router.statuses() == [[502]])


async def test_upstream_head_with_bare_lf_line_ends_is_relayed(gateway, session, router) -> None:
    """A replica whose response lines end in a bare LF (some hand-written servers): relayed
    with CRLF, as browsers and nginx accept it, not a 502."""

    async def lf_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 5\n\nhello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(lf_only, "127.0.0.1", 0)
    router.routes["app.example.com"] = [("127.0.0.1", server.sockets[0].getsockname()[1])]
    async with server, session.get(url(gateway, "/"), headers=HOST) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain"
        assert await resp.read() == b"hello"
    await eventually(lambda: router.statuses() == [[200]])


async def test_stale_pooled_connection_is_replayed_on_a_fresh_one(gateway, session, router) -> None:
    """A replica that closes a kept-alive connection when the next request arrives on it."""
    connections = 0

    async def one_response_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    server = await asyncio.start_server(one_response_per_connection, "127.0.0.1", 0)
    router.routes["app.example.com"] = [("127.0.0.1", server.sockets[0].getsockname()[1])]
    async with server:
        for _ in range(3):
            async with session.get(url(gateway, "/"), headers=HOST) as resp:
                assert (resp.status, await resp.text()) == (200, "ok")
    assert connections == 3
    assert router.statuses() == [[200]] * 3


async def test_oversized_request_head_is_431(gateway) -> None:
    request = b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Big: " + b"x" * 100_000
    data = await raw_exchange(gateway, request, read_to_eof)
    assert data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_slow_client_stalls_the_replica(gateway, replica) -> None:
    """Response flow control: a client that stops reading stops the replica's writes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /big HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
    await reader.readexactly(MB)
    await asyncio.sleep(0.5)
    assert replica.sent_mb < 48  # kernel buffers take some; a proxy buffering all takes 64
    writer.close()


async def test_stalled_replica_stalls_the_client(gateway, replica) -> None:
    """Request flow control: a replica that stops reading stops the client's writes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        b"POST /stall HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: %d\r\n\r\n" % (64 * MB)
    )
    sent = 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1):
            while sent < 64 * MB:
                writer.write(_chunk(0))
                await writer.drain()
                sent += MB
    assert sent < 48 * MB
    replica.hold.set()
    while sent < 64 * MB:
        writer.write(_chunk(0))
        await writer.drain()
        sent += MB
    response = await asyncio.wait_for(reader.readuntil(b"%d" % (64 * MB)), 5)
    assert response.startswith(b"HTTP/1.1 200 OK")
    writer.close()


SCENARIOS = [f for name, f in list(globals().items()) if name.startswith("test_")]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_on_uvloop(scenario: Callable[..., Awaitable[None]]) -> None:
    async def run() -> None:
        replica = Replica()
        await replica.start()
        router = FakeRouter()
        router.routes["app.example.com"] = [("127.0.0.1", replica.port)]
        gateway = GatewayServer(router)
        await gateway.start("127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as session:
                fixtures = {"replica": replica, "router": router, "gateway": gateway}
                fixtures["session"] = session
                await scenario(**{p: fixtures[p] for p in inspect.signature(scenario).parameters})
        finally:
            await gateway.close()
            replica.hold.set()
            replica.client_got_first.set()
            await replica.runner.cleanup()

    uvloop.run(run())
