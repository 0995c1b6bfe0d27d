"""kill -9 of a replica under load: only requests already at that replica may fail; every request
sent after the kill is answered 200 by the other replica or the replacement."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp

from tests.integration.harness import (
    FAST_AUTOSCALER,
    Platform,
    hello_service,
    host,
    wait_until,
)

CLIENTS = 8
REQUEST_MS = 50


def test_kill_9_replica_under_load(tmp_path) -> None:
    platform = Platform(tmp_path, {"autoscaler": FAST_AUTOSCALER}).start()
    try:
        annotations = {"autoscaling.knative.dev/min-scale": "2"}
        platform.apply(hello_service("sturdy", annotations=annotations))
        platform.wait_ready("sturdy")
        wait_until(lambda: platform.ready_replicas("sturdy") == 2, 30, "two ready replicas")
        victim = platform.replicas("sturdy")[0]["pid"]
        results, killed_at = asyncio.run(load_and_kill(platform, victim))
    finally:
        platform.stop()
    failed = [(sent, status) for sent, _, status in results if status != 200]
    after = [status for sent, _, status in results if sent > killed_at]
    print(
        f"\n{len(results)} requests, {len(failed)} failed (all sent before the kill), "
        f"{len(after)} sent after the kill all {sorted(set(after))}"
    )
    assert all(sent < killed_at for sent, _ in failed)
    assert len(failed) <= CLIENTS
    assert len(after) > 50 and set(after) == {200}


async def load_and_kill(
    platform: Platform, victim: int
) -> tuple[list[tuple[float, float, int]], float]:
    results: list[tuple[float, float, int]] = []
    stop_at = time.monotonic() + 5.0
    kill_at = time.monotonic() + 1.5
    killed_at = float("inf")

    async def client(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop_at:
            sent = time.monotonic()
            try:
                async with session.get(
                    f"{platform.gateway}/?sleep={REQUEST_MS}", headers={"Host": host("sturdy")}
                ) as response:
                    await response.read()
                    status = response.status
            except aiohttp.ClientError:
                status = 0
            results.append((sent, time.monotonic(), status))

    async def killer() -> None:
        nonlocal killed_at
        await asyncio.sleep(kill_at - time.monotonic())
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.gather(killer(), *(client(session) for _ in range(CLIENTS)))
    return results, killed_at
