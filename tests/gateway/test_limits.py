"""The gateway's limits and drain over real sockets: header-read and idle timeouts, connection
caps, bad HTTP (including request smuggling attempts), and shutdown with requests in flight.

Timeouts are set short (fractions of a second) so that each case takes about a second; the
defaults and the figures with many sockets are in docs/reliability.md and tests/reliability.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import uvloop

from tests.gateway.test_proxy import FakeRouter, Replica
from tidal.api.config import GatewayLimits
from tidal.gateway.limits import ConnectionBudget
from tidal.gateway.proxy import GatewayServer
from tidal.gateway.shutdown import drain

HOST = b"app.example.com"
GET = b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\n\r\n"
FAST = GatewayLimits(header_read_timeout_s=0.5, idle_timeout_s=0.8, drain_timeout_s=5.0)


@pytest.fixture
async def replica() -> AsyncIterator[Replica]:
    r = Replica()
    await r.start()
    yield r
    r.hold.set()
    await r.runner.cleanup()


@pytest.fixture
def router(replica: Replica) -> FakeRouter:
    r = FakeRouter()
    r.routes[HOST.decode()] = [("127.0.0.1", replica.port)]
    return r


async def start_gateway(
    router: FakeRouter, limits: GatewayLimits = FAST, budget: ConnectionBudget | None = None
) -> GatewayServer:
    gateway = GatewayServer(router, limits, budget)
    await gateway.start("127.0.0.1", 0)
    return gateway


@pytest.fixture
async def gateway(router: FakeRouter) -> AsyncIterator[GatewayServer]:
    gw = await start_gateway(router)
    yield gw
    await gw.close()


async def connect(gw: GatewayServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gw.port)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    """One response with a Content-Length body: (status, headers, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return int(lines[0].split()[1]), headers, body


async def closed_within(reader: asyncio.StreamReader, timeout: float) -> tuple[bytes, float]:
    """Everything the gateway sends until it closes, and how long that took."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), timeout)
    return data, time.monotonic() - started


async def test_half_sent_head_gets_408_at_the_header_timeout(gateway) -> None:
    reader, writer = await connect(gateway)
    writer.write(b"GET /echo HTTP/1.1\r\nHo")
    data, took = await closed_within(reader, 3)
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert 0.4 < took < 1.5
    assert gateway.header_timeouts == 1


async def test_dribbling_a_head_does_not_extend_the_timeout(gateway) -> None:
    """Slowloris: one header byte at a time keeps the socket busy but not alive."""
    reader, writer = await connect(gateway)
    writer.write(b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\n")
    started = time.monotonic()
    answer = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
    while not answer.done() and time.monotonic() - started < 3:
        writer.write(b"X")
        await asyncio.sleep(0.05)
    assert (await answer).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 1.5
    writer.close()


async def test_silent_connection_is_closed_without_an_answer(gateway) -> None:
    reader, _ = await connect(gateway)
    data, took = await closed_within(reader, 3)
    assert data == b""
    assert 0.4 < took < 1.5


async def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(gateway) -> None:
    reader, writer = await connect(gateway)
    writer.write(GET)
    status, headers, _ = await read_response(reader)
    assert status == 200 and b"connection" not in headers
    data, took = await closed_within(reader, 3)
    assert data == b""
    assert 0.7 < took < 1.8
    assert gateway.idle_timeouts == 1


async def test_keep_alive_requests_within_the_idle_timeout_are_served(gateway) -> None:
    reader, writer = await connect(gateway)
    for _ in range(4):
        writer.write(GET)
        assert (await read_response(reader))[0] == 200
        await asyncio.sleep(0.3)  # each gap under the idle timeout, together well over it
    writer.close()


async def test_a_slow_response_is_not_cut_by_the_client_timeouts(gateway, replica) -> None:
    reader, writer = await connect(gateway)
    writer.write(b"GET /hold HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
    await asyncio.sleep(1.5)  # past both the header and the idle timeout
    replica.hold.set()
    status, _, body = await read_response(reader)
    assert (status, body) == (200, b"late")
    writer.close()


async def test_connections_over_the_listener_cap_get_503(router) -> None:
    gateway = await start_gateway(router, GatewayLimits(max_connections=5))
    try:
        held = [await connect(gateway) for _ in range(5)]
        reader, _ = await connect(gateway)
        data, _ = await closed_within(reader, 3)
        assert data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"too many connections" in data
        held.pop()[1].close()
        await asyncio.sleep(0.1)
        reader, writer = await connect(gateway)  # room again
        writer.write(GET)
        assert (await read_response(reader))[0] == 200
        for _, w in held:
            w.close()
    finally:
        await gateway.close()


async def test_the_total_cap_counts_every_listener(router) -> None:
    budget = ConnectionBudget(3)
    first = await start_gateway(router, budget=budget)
    second = await start_gateway(router, budget=budget)
    try:
        held = [await connect(first), await connect(first), await connect(second)]
        for gw in (first, second):
            reader, _ = await connect(gw)
            data, _ = await closed_within(reader, 3)
            assert data.startswith(b"HTTP/1.1 503 ")
        assert budget.refused == 2
        for _, w in held:
            w.close()
    finally:
        await first.close()
        await second.close()


BAD_REQUESTS = {
    "malformed request line": (b"GARBAGE\r\n\r\n", 400),
    "unknown HTTP version": (b"GET / HTTP/9.9\r\nHost: app.example.com\r\n\r\n", 400),
    "space in the target": (b"GET /a b HTTP/1.1\r\nHost: app.example.com\r\n\r\n", 400),
    "bare LF line ends": (b"GET /echo HTTP/1.1\nHost: app.example.com\n\n", 400),
    "Content-Length and Transfer-Encoding": (
        b"POST /echo HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
        400,
    ),
    "two different Content-Lengths": (
        b"POST /echo HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\n"
        b"Content-Length: 6\r\n\r\nhello!",
        400,
    ),
    "two equal Content-Lengths": (
        b"POST /echo HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\n"
        b"Content-Length: 5\r\n\r\nhello",
        400,
    ),
    "negative Content-Length": (
        b"POST /echo HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: -1\r\n\r\n",
        400,
    ),
    "obs-fold header line": (
        b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\nX-A: a\r\n b\r\n\r\n",
        400,
    ),
    "space before the colon": (
        b"POST /echo HTTP/1.1\r\nHost: app.example.com\r\nContent-Length : 5\r\n\r\nhello",
        400,
    ),
    "Transfer-Encoding not chunked last": (
        b"POST /echo HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked, identity"
        b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "obfuscated Transfer-Encoding": (
        b"POST /echo HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: xchunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "chunk size overflow": (
        b"POST /echo HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"FFFFFFFFFFFFFFFFFF\r\n",
        400,
    ),
    "NUL in a header value": (
        b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\nX: a\x00b\r\n\r\n",
        400,
    ),
    "two Host headers": (
        b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\nHost: other.example.com\r\n\r\n",
        400,
    ),
    "a 100 KB header in one write": (
        b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        431,
    ),
    "20000 headers": (
        b"GET /echo HTTP/1.1\r\nHost: app.example.com\r\n" + b"X-A: b\r\n" * 20_000 + b"\r\n",
        431,
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
async def test_bad_http_is_refused_and_nothing_reaches_the_replica(gateway, router, case) -> None:
    data, status = BAD_REQUESTS[case]
    reader, writer = await connect(gateway)
    writer.write(data)
    answer, _ = await closed_within(reader, 5)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1  # nothing smuggled behind it
    assert router.leases == []  # never proxied
    reader, writer = await connect(gateway)  # and the gateway still serves
    writer.write(GET)
    assert (await read_response(reader))[0] == 200
    writer.close()


async def test_drain_finishes_in_flight_requests_and_closes_idle_connections(
    gateway, replica
) -> None:
    busy = []
    for _ in range(5):
        reader, writer = await connect(gateway)
        writer.write(b"GET /hold HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        busy.append((reader, writer))
    idle_reader, idle_writer = await connect(gateway)
    idle_writer.write(GET)
    assert (await read_response(idle_reader))[0] == 200
    while gateway.open_connections < 6 or replica.hold.is_set():
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the five requests are at the replica
    draining = asyncio.ensure_future(gateway.drain(5.0))
    data, _ = await closed_within(idle_reader, 2)
    assert data == b""  # the idle keep-alive connection goes at once
    with pytest.raises(OSError):
        await connect(gateway)  # no longer accepting
    replica.hold.set()
    for reader, _ in busy:
        status, headers, body = await read_response(reader)
        assert (status, body, headers[b"connection"]) == (200, b"late", b"close")
    assert await asyncio.wait_for(draining, 3) == 0


async def test_drain_cuts_what_is_left_at_its_timeout(gateway, router) -> None:
    reader, writer = await connect(gateway)
    writer.write(b"GET /hold HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
    while not router.leases:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    assert await gateway.drain(0.3) == 1
    assert time.monotonic() - started < 1.0
    assert await asyncio.wait_for(reader.read(), 2) == b""
    assert router.statuses() == [[499]]


def test_timeouts_on_uvloop(tmp_path) -> None:
    """The sweep and the drain on the loop production runs."""

    async def scenario() -> None:
        replica = Replica()
        await replica.start()
        router = FakeRouter()
        router.routes[HOST.decode()] = [("127.0.0.1", replica.port)]
        gateway = await start_gateway(router)
        try:
            await test_half_sent_head_gets_408_at_the_header_timeout(gateway)
            await test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(gateway)
            await test_drain_finishes_in_flight_requests_and_closes_idle_connections(
                gateway, replica
            )
        finally:
            await gateway.close()
            replica.hold.set()
            await replica.runner.cleanup()

    uvloop.run(scenario())


async def test_a_second_signal_cuts_the_drain_short(gateway, router) -> None:
    reader, writer = await connect(gateway)
    writer.write(b"GET /hold HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
    while not router.leases:
        await asyncio.sleep(0.01)
    cut_short = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, cut_short.set)
    started = time.monotonic()
    await drain(gateway, 30.0, cut_short)
    assert time.monotonic() - started < 1.0
    assert await asyncio.wait_for(reader.read(), 2) == b""
