"""Slowloris, connection floods and bad HTTP against a running `tidal up`: the attackers' sockets
are closed, everyone else is served, nothing crashes (docs/reliability.md).

The platform runs with a 2 s header-read timeout (default 10 s) so that the test is short.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import pytest

from tests.gateway.test_limits import BAD_REQUESTS
from tests.integration.harness import FAST_AUTOSCALER, HELLO_DIR, Platform, hello_service, host

HEADER_TIMEOUT_S = 2.0
SLOWLORIS_SOCKETS = 200
ADMIN_SOCKETS = 50
DRIBBLE_EVERY_S = 0.5


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    config = {
        "autoscaler": FAST_AUTOSCALER,
        "gateway": {
            "header-read-timeout": f"{HEADER_TIMEOUT_S}s",
            "idle-timeout": "5s",
            "admin-max-connections": 100,
        },
        "logs": {"max-size": "8Ki", "max-files": 2},
    }
    p = Platform(tmp_path_factory.mktemp("hostile"), config).start()
    p.apply(hello_service("victim", annotations={"autoscaling.knative.dev/min-scale": "1"}))
    p.wait_ready("victim")
    yield p
    p.stop()


async def slowloris(port: int, deadline: float) -> float | None:
    """Open a connection, send the start of a request head, then one more byte every
    DRIBBLE_EVERY_S; returns after how many seconds the server closed it (None if it was still
    open at `deadline`)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: victim.default.example.com\r\nX-Slow: ")
    try:
        while time.monotonic() < deadline:
            writer.write(b"a")
            try:
                await asyncio.wait_for(reader.read(), DRIBBLE_EVERY_S)
            except TimeoutError:
                continue
            except ConnectionError:
                pass
            return time.monotonic() - started  # the server closed it
        return None
    finally:
        writer.close()


async def legitimate(platform: Platform, until: float) -> list[int]:
    """Ordinary requests, one after another, while the attack runs."""
    statuses = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while time.monotonic() < until:
            headers = {"Host": host("victim")}
            async with session.get(platform.gateway + "/", headers=headers) as response:
                await response.read()
                statuses.append(response.status)
            async with session.get(platform.admin + "/healthz") as response:
                statuses.append(response.status)
            await asyncio.sleep(0.05)
    return statuses


def test_slowloris_sockets_are_closed_while_others_are_served(platform: Platform) -> None:
    async def attack() -> tuple[list[float | None], list[float | None], list[int]]:
        deadline = time.monotonic() + 4 * HEADER_TIMEOUT_S
        gateway = [slowloris(platform.port, deadline) for _ in range(SLOWLORIS_SOCKETS)]
        admin = [slowloris(platform.admin_port, deadline) for _ in range(ADMIN_SOCKETS)]
        served = legitimate(platform, time.monotonic() + 2 * HEADER_TIMEOUT_S)
        results = await asyncio.gather(asyncio.gather(*gateway), asyncio.gather(*admin), served)
        return results[0], results[1], results[2]

    gateway, admin, statuses = asyncio.run(attack())
    for name, closed in (("gateway", gateway), ("admin", admin)):
        assert None not in closed, f"{closed.count(None)} {name} slowloris sockets still open"
        times = sorted(t for t in closed if t is not None)
        print(
            f"\n{len(times)} {name} slowloris sockets closed after "
            f"median {statistics.median(times):.2f}s, max {times[-1]:.2f}s"
        )
        assert times[-1] < HEADER_TIMEOUT_S + 2.0
    print(f"{len(statuses)} ordinary requests meanwhile: {sorted(set(statuses))}")
    assert statuses and set(statuses) == {200}


def test_connection_flood_on_admin_does_not_touch_the_gateway(platform: Platform) -> None:
    async def flood() -> tuple[int, int, list[int]]:
        held = [await asyncio.open_connection("127.0.0.1", platform.admin_port) for _ in range(100)]
        reader, writer = await asyncio.open_connection("127.0.0.1", platform.admin_port)
        refused = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        statuses = await legitimate_gateway_only(platform, 10)
        for _, w in held:
            w.close()
        return len(held), refused.startswith(b"HTTP/1.1 503 "), statuses

    held, refused, statuses = asyncio.run(flood())
    assert held == 100 and refused
    assert statuses == [200] * 10


async def legitimate_gateway_only(platform: Platform, count: int) -> list[int]:
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(count):
            headers = {"Host": host("victim")}
            async with session.get(platform.gateway + "/", headers=headers) as response:
                statuses.append(response.status)
        return statuses


def test_bad_http_is_refused_and_the_platform_carries_on(platform: Platform) -> None:
    async def send(port: int, data: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        try:
            return await asyncio.wait_for(reader.read(), 10)
        except ConnectionError:
            return b""
        finally:
            writer.close()

    async def run() -> dict[str, tuple[bytes, bytes]]:
        answers = {}
        for case, (data, _) in BAD_REQUESTS.items():
            data = data.replace(b"app.example.com", host("victim").encode())
            answers[case] = (await send(platform.port, data), await send(platform.admin_port, data))
        return answers

    answers = asyncio.run(run())
    for case, (gateway_answer, admin_answer) in answers.items():
        status = BAD_REQUESTS[case][1]
        assert gateway_answer.startswith(b"HTTP/1.1 %d " % status), (case, gateway_answer[:120])
        assert gateway_answer.count(b"HTTP/1.1 ") == 1, case
        # aiohttp answers the admin API's: any 4xx, or a reset for a head over its limits.
        assert admin_answer[:10] in (b"HTTP/1.0 4", b"HTTP/1.1 4", b""), (case, admin_answer[:80])
        assert admin_answer.count(b"HTTP/1.1 2") == 0, case
    assert platform.process is not None and platform.process.poll() is None
    assert platform.request(host("victim"))[0] == 200
    assert platform.cli("get", "services").returncode == 0


def test_replica_logs_rotate_and_tidal_logs_reads_across(platform: Platform) -> None:
    """A replica that writes ~50 KB at start, with 8 KiB log files: two files are kept and
    `tidal logs` reads a tail longer than the live file, in order."""
    service = hello_service("chatty", annotations={"autoscaling.knative.dev/min-scale": "1"})
    container = service["spec"]["template"]["spec"]["containers"][0]
    chatter = "for i in range(3000): print('chatty line', i)"
    container["command"] = ["sh", "-c", f'python3 -c "{chatter}"; exec python3 app.py']
    container["workingDir"] = str(HELLO_DIR)
    platform.apply(service)
    platform.wait_ready("chatty")
    [replica] = platform.replicas("chatty")
    log_dir = platform.data_dir / "logs" / "default" / replica["revision"]
    files = sorted(p.name for p in log_dir.iterdir())
    assert files == [f"{replica['name']}.log", f"{replica['name']}.log.1"]
    assert all((log_dir / f).stat().st_size <= 8192 for f in files)
    live_lines = len((log_dir / files[0]).read_text().splitlines())
    out = platform.cli("logs", "chatty", "--tail", str(live_lines + 100)).stdout.splitlines()
    numbers = [int(line.split()[-1]) for line in out if line.startswith("chatty line")]
    assert len(numbers) >= live_lines + 90  # more than the live file holds
    assert numbers == list(range(numbers[0], 3000))  # whole lines, in order, none lost
