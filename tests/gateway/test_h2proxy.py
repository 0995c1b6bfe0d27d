"""HTTP/2 (h2c) through the gateway over real sockets on 127.0.0.1: a grpcio server as the
replica, grpcio and the h2 library as clients, and a router double that records every lease.

Each scenario runs on the stdlib loop (pytest-asyncio) and again on uvloop (`test_on_uvloop`).
gRPC calls block, so they run in a thread while the gateway runs on the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
import uvloop
from aiohttp import web

from tidal.gateway.h2proxy import PREFACE
from tidal.gateway.proxy import GatewayServer
from tidal.gateway.router import Lease, RouteError
from tidal.security.localca import ensure_local_tls
from tidal.security.tls import server_context

REVISION = "model-00001"
HOST = "model.default.example.com"
MB = 1024 * 1024


class Router:
    """Leases the one replica for HOST; records each lease's release statuses."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.port = model.port
        self.h2c = True
        self.timeout = 10.0
        self.response_start = 0.0  # the revision's responseStartTimeoutSeconds (0: none)
        self.idle = 0.0  # and its idleTimeoutSeconds
        self.released: list[int] = []
        self.leased = 0

    async def acquire(self, host: str, path: str) -> Lease:
        if host != HOST:
            raise RouteError(404, f"no service answers host {host!r}")
        self.leased += 1
        lease = Lease(
            "127.0.0.1",
            self.port,
            REVISION,
            "default",
            time.monotonic() + self.timeout,
            h2c=self.h2c,
            response_start_s=self.response_start,
            idle_s=self.idle,
        )
        lease._on_release = lambda _, status: self.released.append(status)
        return lease

    def retry(self, lease: Lease) -> None:
        raise AssertionError("the replica refused a connection")


class Model:
    """A gRPC service with generic handlers on raw bytes (no generated code)."""

    def __init__(self) -> None:
        self.peers: set[str] = set()
        self.metadata: list[dict[str, str]] = []
        self.generate_ended = threading.Event()
        handlers = {
            "Predict": grpc.unary_unary_rpc_method_handler(self.predict),
            "Generate": grpc.unary_stream_rpc_method_handler(self.generate),
            "Upload": grpc.stream_unary_rpc_method_handler(self.upload),
            "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
            "Missing": grpc.unary_unary_rpc_method_handler(self.missing),
            "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
            "Pause": grpc.unary_stream_rpc_method_handler(self.pause),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("tidal.test.Model", handlers),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def predict(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.peers.add(context.peer())
        self.metadata.append(dict(context.invocation_metadata()))
        return b"prediction for " + request

    def generate(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """int(request) chunks of 100 kB; `generate_ended` is set when the call ends."""
        context.add_callback(self.generate_ended.set)
        for i in range(int(request)):
            yield bytes([65 + i % 26]) * 100_000
            time.sleep(0.001)

    def upload(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return str(sum(len(r) for r in requests)).encode()

    def chat(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            yield request.upper()

    def missing(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.NOT_FOUND, "no model named " + request.decode())
        raise AssertionError("abort raises")

    def slow(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(float(request))
        return b"late"

    def pause(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Three messages, float(request) seconds apart."""
        for i in range(3):
            if i:
                time.sleep(float(request))
            yield b"message %d" % i


@pytest.fixture
def model() -> Iterator[Model]:
    m = Model()
    yield m
    m.server.stop(0)


@pytest.fixture
def router(model: Model) -> Router:
    return Router(model)


@pytest.fixture
async def gateway(router: Router) -> AsyncIterator[GatewayServer]:
    gw = GatewayServer(router)
    await gw.start("127.0.0.1", 0)
    yield gw
    await gw.close()


def channel(gw: GatewayServer, authority: str = HOST) -> grpc.Channel:
    return grpc.insecure_channel(
        f"127.0.0.1:{gw.port}", options=[("grpc.default_authority", authority)]
    )


def call(gw: GatewayServer, method: str, kind: str = "unary_unary", authority: str = HOST):
    return getattr(channel(gw, authority), kind)(f"/tidal.test.Model/{method}")


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_unary_call_reaches_the_replica_with_forwarding_headers(gateway, router, model):
    def predict() -> tuple[bytes, dict[str, str]]:
        response, rpc = call(gateway, "Predict").with_call(b"[1, 2]", timeout=10)
        return response, dict(rpc.initial_metadata())

    response, metadata = await asyncio.to_thread(predict)
    assert response == b"prediction for [1, 2]"
    assert metadata["x-tidal-revision"] == REVISION
    seen = model.metadata[0]
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    await eventually(lambda: router.released == [200])


async def test_streams_in_both_directions_pass_under_flow_control(gateway, router):
    def stream_both_ways() -> tuple[int, bytes, list[bytes]]:
        generated = sum(
            len(c) for c in call(gateway, "Generate", "unary_stream")(b"60", timeout=30)
        )
        uploaded = call(gateway, "Upload", "stream_unary")(iter([b"u" * MB] * 8), timeout=30)
        chat = list(call(gateway, "Chat", "stream_stream")(iter([b"hi", b"there"]), timeout=30))
        return generated, uploaded, chat

    generated, uploaded, chat = await asyncio.to_thread(stream_both_ways)
    assert generated == 6_000_000  # far more than one stream window (1 MiB)
    assert uploaded == str(8 * MB).encode()
    assert chat == [b"HI", b"THERE"]
    await eventually(lambda: router.released == [200, 200, 200])


async def test_a_grpc_error_reaches_the_client_with_its_status(gateway, router) -> None:
    def missing() -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            call(gateway, "Missing")(b"resnet", timeout=10)
        return caught.value

    error = await asyncio.to_thread(missing)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "no model named resnet")
    await eventually(lambda: router.released == [200])  # HTTP 200; the status is in trailers


async def test_many_concurrent_calls_share_one_connection_to_the_replica(gateway, router, model):
    def fifty_at_once() -> list[bytes]:
        predict = call(gateway, "Predict")
        calls = [predict.future(str(i).encode(), timeout=30) for i in range(50)]
        return [c.result() for c in calls]

    responses = await asyncio.to_thread(fifty_at_once)
    assert sorted(responses) == sorted(b"prediction for %d" % i for i in range(50))
    assert len(model.peers) == 1
    await eventually(lambda: router.released == [200] * 50)


async def test_a_cancelled_call_is_reset_at_the_replica(gateway, router, model) -> None:
    def cancel_midway() -> None:
        stream = call(gateway, "Generate", "unary_stream")(b"100000", timeout=30)
        next(stream)
        stream.cancel()

    await asyncio.to_thread(cancel_midway)
    await eventually(lambda: router.released == [499])
    # 10 GB were asked for: the call ended early because the gateway reset it.
    assert await asyncio.to_thread(model.generate_ended.wait, 10)


async def test_the_revision_timeout_ends_a_call(gateway, router) -> None:
    router.timeout = 0.5

    def slow() -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            call(gateway, "Slow")(b"3", timeout=10)
        return caught.value

    error = await asyncio.to_thread(slow)
    assert error.code() == grpc.StatusCode.UNAVAILABLE  # gRPC's reading of HTTP 504
    assert router.released == [504]


async def test_the_response_start_timeout_ends_a_call_not_yet_answered(gateway, router):
    router.response_start = 0.3

    def slow() -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            call(gateway, "Slow")(b"3", timeout=10)
        return caught.value

    assert (await asyncio.to_thread(slow)).code() == grpc.StatusCode.UNAVAILABLE
    assert router.released == [504]


async def test_the_idle_timeout_counts_from_the_replicas_last_message(gateway, router):
    router.idle = 0.5

    def pauses(seconds: bytes) -> list[bytes]:
        got: list[bytes] = []
        try:
            got.extend(call(gateway, "Pause", "unary_stream")(seconds, timeout=10))
        except grpc.RpcError as error:
            got.append(error.code().name.encode())
        return got

    assert await asyncio.to_thread(pauses, b"0.2") == [b"message 0", b"message 1", b"message 2"]
    assert await asyncio.to_thread(pauses, b"2") == [b"message 0", b"INTERNAL"]  # reset mid-way
    await eventually(lambda: router.released == [200, 504])


async def test_an_unknown_host_is_404(gateway, router) -> None:
    def unknown() -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            call(gateway, "Predict", authority="nope.example.com")(b"", timeout=10)
        return caught.value

    error = await asyncio.to_thread(unknown)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED  # gRPC's reading of HTTP 404
    assert router.leased == 0


def h2_request(
    port: int,
    headers: list[tuple[str, str]],
    body: bytes = b"",
    split_preface: bool = False,
    tls: ssl.SSLContext | None = None,
) -> tuple[dict[bytes, bytes], bytes]:
    """One request with the h2 library over a socket (over TLS with ALPN h2 when `tls` is
    given), its body sent as the gateway's flow control window allows; the response's headers
    and body."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(header_encoding=None))
    conn.initiate_connection()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname="localhost")
        assert sock.selected_alpn_protocol() == "h2"
    opening = conn.data_to_send()
    assert opening.startswith(PREFACE)
    if split_preface:  # the preface in two reads: the gateway must wait for all of it
        sock.sendall(opening[:5])
        time.sleep(0.1)
        opening = opening[5:]
    conn.send_headers(1, headers, end_stream=not body)
    sock.sendall(opening + conn.data_to_send())
    response: dict[bytes, bytes] = {}
    data = b""
    try:
        while True:
            while body and conn.local_flow_control_window(1) > 0:
                size = min(conn.local_flow_control_window(1), conn.max_outbound_frame_size)
                chunk, body = body[:size], body[size:]
                conn.send_data(1, chunk, end_stream=not body)
            sock.sendall(conn.data_to_send())
            received = sock.recv(65536)
            assert received, "connection closed before the response ended"
            for event in conn.receive_data(received):
                if isinstance(event, h2.events.ResponseReceived):
                    response = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    return response, data
    finally:
        sock.close()


def request_headers(authority: str = HOST) -> list[tuple[str, str]]:
    return [(":method", "GET"), (":scheme", "http"), (":authority", authority), (":path", "/")]


@contextlib.asynccontextmanager
async def http1_replica(router: Router) -> AsyncIterator[None]:
    """An aiohttp replica (HTTP/1.1 only) that the router leases instead of the gRPC one."""

    async def hello(request: web.Request) -> web.Response:
        seen = {k.lower(): v for k, v in request.headers.items()}
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")[1]  # the gateway's connection
        return web.json_response({"method": request.method, "headers": seen, "peer": peer})

    async def digest(request: web.Request) -> web.Response:
        sha, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            sha.update(chunk)
            size += len(chunk)
        return web.Response(text=f"{size} {sha.hexdigest()}")

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(5):
            await response.write(bytes([65 + i]) * MB)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_post("/digest", digest)
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    router.h2c, router.port = False, runner.addresses[0][1]
    try:
        yield
    finally:
        await runner.cleanup()


async def test_http2_to_a_revision_that_serves_http1_is_translated(gateway, router) -> None:
    async with http1_replica(router):
        headers, body = await asyncio.to_thread(
            h2_request, gateway.port, request_headers(), split_preface=True
        )
        assert headers[b":status"] == b"200"
        assert headers[b"x-tidal-revision"] == REVISION.encode()
        first = json.loads(body)
        seen = first["headers"]
        assert (seen["host"], seen["x-forwarded-proto"]) == (HOST, "http")
        assert "connection" not in seen  # HTTP/1.1's default: keep-alive

        upload = bytes(range(256)) * (12 * 1024)  # 3 MiB: three times the stream window
        post = request_headers()
        post[0], post[3] = (":method", "POST"), (":path", "/digest")
        headers, body = await asyncio.to_thread(h2_request, gateway.port, post, upload)
        assert body.decode() == f"{len(upload)} {hashlib.sha256(upload).hexdigest()}"

        get_stream = request_headers()
        get_stream[3] = (":path", "/stream")
        headers, body = await asyncio.to_thread(h2_request, gateway.port, get_stream)
        assert body == b"".join(bytes([65 + i]) * MB for i in range(5))

        head = request_headers()
        head[0] = (":method", "HEAD")
        headers, body = await asyncio.to_thread(h2_request, gateway.port, head)
        assert (headers[b":status"], body) == (b"200", b"")

        # Every request went on the one connection to the replica, kept alive in between.
        _, body = await asyncio.to_thread(h2_request, gateway.port, request_headers())
        assert json.loads(body)["peer"] == first["peer"]
    await eventually(lambda: router.released == [200] * 5)


async def test_a_request_meeting_a_closed_pooled_connection_is_resent(gateway, router) -> None:
    """A replica may close a keep-alive connection just as the gateway sends on it; a request
    without a body is then resent once on a fresh connection, and the client never knows."""
    connections = 0

    async def replica(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        await reader.readuntil(b"\r\n\r\n")  # the next request: closed unanswered
        writer.close()

    server = await asyncio.start_server(replica, "127.0.0.1", 0)
    router.h2c, router.port = False, server.sockets[0].getsockname()[1]
    try:
        for _ in range(3):
            headers, body = await asyncio.to_thread(h2_request, gateway.port, request_headers())
            assert (headers[b":status"], body) == (b"200", b"ok\n")
    finally:
        server.close()
    assert connections == 3  # the first, then one fresh connection for each resent request
    assert router.released == [200] * 3


async def test_browsers_choosing_http2_over_tls_reach_http1_revisions(router) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = ensure_local_tls(Path(tmp))
        gateway = GatewayServer(router)
        await gateway.start("127.0.0.1", 0, tls=server_context(files.cert, files.key))
        tls = ssl.create_default_context(cafile=str(files.ca_cert))
        tls.set_alpn_protocols(["h2", "http/1.1"])  # as a browser offers them
        try:
            async with http1_replica(router):
                headers, body = await asyncio.to_thread(
                    h2_request, gateway.port, request_headers(), tls=tls
                )
            assert headers[b":status"] == b"200"
            assert json.loads(body)["headers"]["x-forwarded-proto"] == "https"
        finally:
            await gateway.close()


def grpc_frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(4, "big") + message


async def http1_exchange(port: int, request: bytes) -> tuple[int, dict[bytes, bytes], bytes, dict]:
    """One HTTP/1.1 request on a fresh connection (it should say Connection: close): the
    response's status, headers, body (de-chunked) and chunked trailers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    raw = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {k.lower(): v for k, _, v in (line.partition(b": ") for line in lines)}
    if headers.get(b"transfer-encoding") != b"chunked":
        return int(status_line.split()[1]), headers, rest, {}
    body, trailers = b"", {}
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            for line in rest.split(b"\r\n"):
                if line:
                    name, _, value = line.partition(b": ")
                    trailers[name.lower()] = value
            return int(status_line.split()[1]), headers, body, trailers
        body, rest = body + rest[:size], rest[size + 2 :]


def grpc_over_http1(method: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST /tidal.test.Model/{method} HTTP/1.1", f"Host: {HOST}", "Connection: close"]
    head += ["Content-Type: application/grpc", *extra]
    if not any(h.startswith("Transfer-Encoding") for h in extra):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def test_http1_to_a_revision_that_serves_h2c_goes_as_http2(gateway, router, model) -> None:
    """As Knative sends every request to an h2c container over HTTP/2: the request as a stream
    on the replica's h2c connection, the response back as chunked HTTP/1.1 with its trailers
    (tidal.gateway.http1_h2)."""
    request = grpc_over_http1("Predict", grpc_frame(b"x"))
    status, headers, body, trailers = await http1_exchange(gateway.port, request)
    assert status == 200 and headers[b"x-tidal-revision"] == REVISION.encode()
    assert body == grpc_frame(b"prediction for x")
    assert trailers[b"grpc-status"] == b"0"
    assert model.metadata[-1]["x-forwarded-for"] == "127.0.0.1"

    # A streamed upload, chunked by the client, three times the stream window; then a
    # streamed answer of 5 MB: flow control both ways.
    upload = b"".join(grpc_frame(bytes(1000)) for _ in range(3 * 1024))
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (upload[:MB], upload[MB:]))
    request = grpc_over_http1("Upload", chunks + b"0\r\n\r\n", "Transfer-Encoding: chunked")
    _, _, body, trailers = await http1_exchange(gateway.port, request)
    assert body == grpc_frame(str(len(upload) - 5 * 3 * 1024).encode())
    request = grpc_over_http1("Generate", grpc_frame(b"50"))
    _, _, body, trailers = await http1_exchange(gateway.port, request)
    assert len(body) == 50 * (100_000 + 5) and trailers[b"grpc-status"] == b"0"

    # A gRPC error is a "trailers-only" answer, one HEADERS frame: its fields come in the head.
    # An HTTP/1.0 client gets a close-delimited body.
    request = grpc_over_http1("Missing", grpc_frame(b"big"))
    status, headers, body, _ = await http1_exchange(gateway.port, request)
    assert status == 200 and body == b""
    assert (headers[b"grpc-status"], headers[b"grpc-message"]) == (b"5", b"no model named big")
    old = grpc_over_http1("Predict", grpc_frame(b"y")).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    status, headers, body, _ = await http1_exchange(gateway.port, old)
    assert status == 200 and b"transfer-encoding" not in headers
    assert body == grpc_frame(b"prediction for y")
    await eventually(lambda: router.released == [200] * 5)


async def test_http1_keep_alive_and_pipelined_requests_to_h2c_are_answered_in_order(
    gateway, router
) -> None:
    one, two = (grpc_over_http1("Predict", grpc_frame(name)) for name in (b"a", b"b"))
    keep = one.replace(b"Connection: close\r\n", b"")
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(keep)  # answered, the connection kept for the next two, sent at once
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close" not in head
    await asyncio.wait_for(reader.readuntil(b"0\r\ngrpc-status: 0\r\n"), 10)
    writer.write(keep + two)
    rest = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert rest.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert rest.index(b"prediction for a") < rest.index(b"prediction for b")
    await eventually(lambda: router.released == [200] * 3)


async def test_an_http1_request_to_h2c_ends_its_stream_on_timeout_and_hang_up(
    gateway, router, model
) -> None:
    router.timeout = 1.0
    request = grpc_over_http1("Slow", grpc_frame(b"3"))
    status, _, body, _ = await http1_exchange(gateway.port, request)
    assert status == 504 and b"timeout" in body
    router.timeout = 30.0
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(grpc_over_http1("Generate", grpc_frame(b"100000")))
    await reader.readexactly(100_000)  # streaming; then the client goes
    writer.close()
    await asyncio.to_thread(model.generate_ended.wait, 10)  # the replica's call was cancelled
    assert model.generate_ended.is_set()
    await eventually(lambda: router.released == [504, 499])


async def test_an_http1_upgrade_cannot_reach_an_h2c_revision(gateway, router) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        "\r\n".encode()
    )
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert data.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n")
    assert b"serves HTTP/2 (h2c): an HTTP/1.1 upgrade (websocket) cannot reach it" in data
    assert router.released == [505]


async def test_drain_lets_an_open_stream_finish(gateway, router) -> None:
    def generate() -> int:
        return sum(len(c) for c in call(gateway, "Generate", "unary_stream")(b"200", timeout=30))

    streaming = asyncio.ensure_future(asyncio.to_thread(generate))
    await eventually(lambda: router.leased == 1)
    cut = await gateway.drain(20)
    assert cut == 0
    assert await streaming == 20_000_000
    assert router.released == [200]


async def test_grpc_over_tls_chooses_http2_by_alpn(router) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = ensure_local_tls(Path(tmp))
        gateway = GatewayServer(router)
        await gateway.start("127.0.0.1", 0, tls=server_context(files.cert, files.key))
        try:

            def predict() -> tuple[bytes, dict[str, str]]:
                credentials = grpc.ssl_channel_credentials(files.ca_cert.read_bytes())
                options = [
                    ("grpc.default_authority", HOST),
                    ("grpc.ssl_target_name_override", "localhost"),  # what the cert names
                ]
                secure = grpc.secure_channel(f"127.0.0.1:{gateway.port}", credentials, options)
                predict = secure.unary_unary("/tidal.test.Model/Predict")
                response, rpc = predict.with_call(b"x", timeout=10)
                return response, dict(rpc.initial_metadata())

            response, metadata = await asyncio.to_thread(predict)
            assert response == b"prediction for x"
            assert metadata["x-tidal-revision"] == REVISION
            assert router.model.metadata[-1]["x-forwarded-proto"] == "https"
        finally:
            await gateway.close()


SCENARIOS = [f for name, f in list(globals().items()) if name.startswith("test_")]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_on_uvloop(scenario: Callable[..., Awaitable[None]]) -> None:
    async def run() -> None:
        model = Model()
        router = Router(model)
        gateway = GatewayServer(router)
        await gateway.start("127.0.0.1", 0)
        try:
            fixtures = {"model": model, "router": router, "gateway": gateway}
            await scenario(**{p: fixtures[p] for p in inspect.signature(scenario).parameters})
        finally:
            await gateway.close()
            model.server.stop(0)

    uvloop.run(run())
