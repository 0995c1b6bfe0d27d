"""The `grpc` probe action: the standard gRPC health check, sent by hand over h2c to a real
grpcio server whose health service answers what each test sets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from tidal.runtime.base import ProbeSpec
from tidal.runtime.probe import probe_failure

SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"


class HealthServer:
    """A gRPC server with grpc.health.v1.Health/Check answering `statuses[service]`, or
    NOT_FOUND for a service it does not know; without `health`, no health service at all."""

    def __init__(self, health: bool = True) -> None:
        self.statuses: dict[str, bytes] = {"": SERVING}
        self.asked: list[bytes] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        if health:
            check = grpc.unary_unary_rpc_method_handler(self.check)
            self.server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": check}),)
            )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def check(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.asked.append(request)
        service = decode_request(request)
        if service not in self.statuses:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service}")
        return self.statuses[service]


def decode_request(request: bytes) -> str:
    """HealthCheckRequest.service: field 1, a length-delimited string (or none at all)."""
    if not request:
        return ""
    assert request[0] == 0x0A
    length, shift, at = 0, 0, 1
    while True:
        byte = request[at]
        length |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return request[at : at + length].decode()


@pytest.fixture
def health() -> Iterator[HealthServer]:
    server = HealthServer()
    yield server
    server.server.stop(0)


async def check(port: int, service: str = "") -> str | None:
    return await probe_failure(ProbeSpec(kind="grpc", path=service), "127.0.0.1", port, 5)


async def test_serving_passes_and_anything_else_says_what(health: HealthServer) -> None:
    assert await check(health.port) is None
    assert health.asked == [b""]  # HealthCheckRequest with no service: the whole server
    health.statuses[""] = NOT_SERVING
    assert await check(health.port) == "gRPC health check: the server is NOT_SERVING"
    health.statuses[""] = b""  # status 0, the proto default
    assert await check(health.port) == "gRPC health check: the server is UNKNOWN"


async def test_a_named_service_is_asked_for(health: HealthServer) -> None:
    name = "tidal.example." + "Model" * 30  # a name longer than 127 bytes: a 2-byte length
    health.statuses[name] = SERVING
    assert await check(health.port, name) is None
    assert health.asked[-1] == b"\x0a" + bytes([len(name) & 0x7F | 0x80, len(name) >> 7]) + (
        name.encode()
    )
    assert await check(health.port, "other") == "gRPC health check: status 5 unknown service other"


async def test_a_server_without_the_health_service_fails_with_its_status() -> None:
    server = HealthServer(health=False)
    try:
        assert await check(server.port) == "gRPC health check: status 12 Method not found!"
    finally:
        server.server.stop(0)


async def test_no_server_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert await check(port) == "connection refused"
