"""The controller at 1,000 services: apply, GC, one scaling tick, restart — in process.

    PYTHONPATH=$PWD python3 bench/controller_scale.py [--services 1000] [--batches 10] [--busy 10]

A real Platform, SQLite store and admin API (aiohttp's test server) on a temporary data dir,
with a runtime that spawns nothing: replicas of the `busy-*` services become ready at once,
every other service is idle at zero (initial-scale 0). Measured:
1. apply N services in B batches through the admin API (POST /apis/tidal.dev/v1/apply);
2. one garbage-collection pass (median of 5);
3. one scaling-loop decision tick over every revision, placement included (median of 20);
4. restart: a fresh Platform on the same data dir until `start()` returns (the admin API
   listens before it, and answers once the loop is free again).
Bars (issue #12): apply ≤ 30 s in total, tick ≤ 50 ms median, restart ≤ 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tidal.api.config import load_config  # noqa: E402
from tidal.controller.admin import AdminSecurity, build_app, own_origins  # noqa: E402
from tidal.controller.platform import Platform  # noqa: E402
from tidal.runtime.base import Replica, ReplicaListener, ReplicaSpec, ReplicaState  # noqa: E402

TOKEN = "bench-token"
APPLY_BAR_S, TICK_BAR_S, RESTART_BAR_S = 30.0, 0.050, 5.0


class InstantRuntime:
    """Replicas that are ready as soon as they start; nothing is spawned."""

    requires_command = True

    async def start(self, spec: ReplicaSpec, on_change: ReplicaListener) -> Replica:
        now = time.monotonic()
        replica = Replica(spec=spec, port=1, started_at=now)

        def ready() -> None:
            replica.state, replica.ready_at, replica.ever_ready = ReplicaState.READY, now, True
            on_change(replica)

        asyncio.get_running_loop().call_soon(ready)
        return replica

    async def stop(self, replica: Replica, grace_s: float) -> None:
        replica.state = ReplicaState.STOPPED

    def log_tail(self, replica_spec: ReplicaSpec, lines: int) -> list[str]:
        return []

    async def close(self) -> None:
        return None


def service(name: str, busy: bool) -> dict[str, Any]:
    scale = {"autoscaling.knative.dev/min-scale": "1"} if busy else {}
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {"autoscaling.knative.dev/initial-scale": "0", **scale}
                },
                "spec": {"containers": [{"command": ["python", "app.py"]}]},
            }
        },
    }


def timed(action: Any, runs: int) -> float:
    """Median seconds of `runs` calls."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


async def run(args: argparse.Namespace, data_dir: Path) -> list[tuple[str, float, float]]:
    config = load_config(None)
    config = replace(
        config, autoscaler=config.autoscaler.model_copy(update={"allow_zero_initial_scale": True})
    )
    platform = Platform(config, data_dir, InstantRuntime())
    await platform.start()
    security = AdminSecurity(TOKEN, own_origins("http", "127.0.0.1", 8081))
    client = TestClient(TestServer(build_app(platform, {}, security)))
    await client.start_server()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    per_batch = args.services // args.batches
    batch_times = []
    for batch in range(args.batches):
        docs = [
            service(f"busy-{n}" if n < args.busy else f"svc-{n}", n < args.busy)
            for n in range(batch * per_batch, (batch + 1) * per_batch)
        ]
        began = time.perf_counter()
        response = await client.post(
            "/apis/tidal.dev/v1/apply", json={"items": docs}, headers=headers
        )
        await response.read()
        batch_times.append(time.perf_counter() - began)
        assert response.status == 200, await response.text()
    await asyncio.sleep(0.2)  # the busy replicas start and become ready
    revisions = len(platform.store.list("Revision"))
    gc_s = timed(platform.collect_garbage, 5)
    # Two minutes of idle decision ticks: the idle services settle at zero, as they would
    # after their stable window and scale-to-zero grace period.
    clock = iter(range(0, 10**6, 2))
    for _ in range(90):
        platform.scaling.step(time.monotonic() + next(clock), True)
    tick_s = timed(lambda: platform.scaling.step(time.monotonic() + next(clock), True), 20)
    ready = sum(1 for r in platform.replicas() if r.get("state") == "Ready")
    idle = sum(1 for h in platform.revisions.values() if h.idle)
    print(f"{revisions} revisions, {idle} idle at zero, {ready} ready replicas (busy services)")
    await client.close()
    await platform.stop()

    began, cpu = time.perf_counter(), time.process_time()
    restarted = Platform(config, data_dir, InstantRuntime())
    await restarted.start()
    restart_s, restart_cpu = time.perf_counter() - began, time.process_time() - cpu
    print(f"restart: {restart_cpu:.2f} s of CPU in {restart_s:.2f} s (the rest: a busy machine)")
    await asyncio.sleep(0.2)
    ready_after = sum(1 for r in restarted.replicas() if r.get("state") == "Ready")
    print(f"after restart: {ready_after} ready replicas")
    await restarted.stop()
    print(
        "apply per batch (s): "
        + " ".join(f"{t:.2f}" for t in batch_times)
        + f"  (first {batch_times[0]:.2f}, last {batch_times[-1]:.2f}, "
        f"ratio last/first {batch_times[-1] / batch_times[0]:.1f})"
    )
    return [
        (
            f"apply {args.services} services in {args.batches} batches",
            sum(batch_times),
            APPLY_BAR_S,
        ),
        ("GC pass (median of 5)", gc_s, float("inf")),
        ("scaling decision tick (median of 20)", tick_s, TICK_BAR_S),
        ("restart until start() returns", restart_s, RESTART_BAR_S),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--busy", type=int, default=10, help="services kept at one ready replica")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(run(args, Path(tmp)))
    for label, seconds, bar in rows:
        verdict = "" if bar == float("inf") else ("  PASS" if seconds <= bar else "  FAIL")
        shown = "" if bar == float("inf") else f" (bar ≤ {bar * 1000:g} ms)"
        print(f"{label:45s} {seconds * 1000:10.1f} ms{shown}{verdict}")


if __name__ == "__main__":
    main()
