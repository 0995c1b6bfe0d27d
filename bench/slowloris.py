"""Slowloris against `tidal up` with its default limits, as the attack was first reported:

    python bench/slowloris.py [--sockets 200] [--every 5] [--duration 30]

N sockets on the gateway (and N/4 on the admin API) each send the start of a request head and
then one byte every `--every` seconds for `--duration` seconds, while one client sends ordinary
requests back to back. Prints when the attackers' sockets were closed (median, max, how many were
still open at the end) and the ordinary requests' count, statuses and median latency.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.harness import Platform, hello_service, host  # noqa: E402


async def attacker(port: int, every: float, until: float) -> float | None:
    """Seconds until the server closed the socket, or None if it was open at `until`."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: slow.default.example.com\r\nX-Slow: ")
    try:
        while time.monotonic() < until:
            writer.write(b"a")
            try:
                await asyncio.wait_for(reader.read(), min(every, until - time.monotonic()))
            except TimeoutError:
                continue
            except ConnectionError:
                pass
            return time.monotonic() - started
        return None
    finally:
        writer.close()


async def ordinary(gateway: str, host_header: str, until: float) -> tuple[list[int], list[float]]:
    statuses, latencies = [], []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while time.monotonic() < until:
            sent = time.monotonic()
            try:
                async with session.get(gateway + "/", headers={"Host": host_header}) as response:
                    await response.read()
                    statuses.append(response.status)
            except (aiohttp.ClientError, TimeoutError):
                statuses.append(0)
            latencies.append(time.monotonic() - sent)
    return statuses, latencies


def report(name: str, closed: list[float | None]) -> None:
    times = sorted(t for t in closed if t is not None)
    still = closed.count(None)
    if times:
        print(
            f"{name}: {len(times)} closed after median {statistics.median(times):.1f}s, "
            f"max {times[-1]:.1f}s; {still} still open at the end"
        )
    else:
        print(f"{name}: none closed; {still} still open at the end")


async def attack(platform: Platform, sockets: int, every: float, duration: float) -> None:
    until = time.monotonic() + duration
    gateway = [attacker(platform.port, every, until) for _ in range(sockets)]
    admin = [attacker(platform.admin_port, every, until) for _ in range(max(1, sockets // 4))]
    results = await asyncio.gather(
        asyncio.gather(*gateway),
        asyncio.gather(*admin),
        ordinary(platform.gateway, host("slow"), until),
    )
    report(f"gateway ({sockets} sockets)", results[0])
    report(f"admin ({len(admin)} sockets)", results[1])
    statuses, latencies = results[2]
    print(
        f"ordinary requests meanwhile: {len(statuses)}, statuses {sorted(set(statuses))}, "
        f"median latency {1000 * statistics.median(latencies):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(Path(tmp), {}).start()  # the default limits
        try:
            annotations = {"autoscaling.knative.dev/min-scale": "1"}
            platform.apply(hello_service("slow", annotations=annotations))
            platform.wait_ready("slow")
            asyncio.run(attack(platform, args.sockets, args.every, args.duration))
        finally:
            platform.stop()


if __name__ == "__main__":
    main()
