"""Replicas held ahead of demand yield to requests that wait for room, through the live
controller: the scaling loop hands the autoscaler's `ahead` to the workload, the placer to the
scheduler, and a warm replica's GPU goes to a revision whose requests need it
(tidal/scheduler/placement.py, docs/pools.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from tests.controller.fakes import decide, make_platform, runtime_of, service, settle
from tidal.api.config import parse_config
from tidal.autoscaler.kpa import Decision
from tidal.controller.platform import Platform

ONE_GPU = {"pools": [{"name": "gpu", "capacity": {"nvidia.com/gpu": ["0"]}}]}
WARM, BUSY = "default/warm-00001", "default/busy-00001"


def gpu_service(name: str) -> dict[str, Any]:
    doc = service(name)
    doc["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"nvidia.com/gpu": 1}
    }
    return doc


def holding(replicas: int, ahead: int) -> Decision:
    return Decision(replicas, replicas, 0.0, False, "True", "held", 0.0, 0.0, "Serve", ahead)


async def warm_on_the_only_gpu(tmp_path: Path) -> Platform:
    """A platform with one GPU and `warm`, whose autoscaler holds its one replica ahead of
    demand (the predictive autoscaler's decision while idle), after one decision tick."""
    platform = make_platform(tmp_path, parse_config(ONE_GPU))
    platform.apply([gpu_service("warm")])
    warm = platform.revisions[WARM]
    warm.autoscaler.tick = lambda now, ready, reachable=True: holding(1, 1)  # type: ignore[method-assign]
    await decide(platform)
    return platform


async def test_a_warm_replica_gives_its_gpu_to_a_revision_whose_requests_wait(
    tmp_path: Path,
) -> None:
    platform = await warm_on_the_only_gpu(tmp_path)
    try:
        warm = platform.revisions[WARM]
        (warm_replica,) = runtime_of(platform).running()
        runtime_of(platform).ready(warm_replica)
        assert warm.workload.ahead == 1
        labels = {"namespace": "default", "revision": "warm-00001"}
        assert REGISTRY.get_sample_value("tidal_ahead_replicas", labels) == 1

        platform.apply([gpu_service("busy")])  # initial scale 1: a replica its requests need
        await decide(platform)
        busy = platform.workloads[BUSY]
        assert warm_replica in runtime_of(platform).stopped
        assert [p.reason for p in warm.workload.pending] == [
            f"ahead of demand: yields to {BUSY}, whose requests wait for room"
        ]
        await decide(platform)  # the GPU is free once the warm replica has exited
        assert len(busy.replicas) + len(busy.provisioning) == 1
        assert not busy.pending
        assert warm_replica not in runtime_of(platform).running()
    finally:
        await platform.stop()


async def test_without_waiting_requests_a_replica_ahead_of_demand_is_placed(
    tmp_path: Path,
) -> None:
    platform = await warm_on_the_only_gpu(tmp_path)
    try:
        await settle()
        assert len(runtime_of(platform).running()) == 1
        assert not platform.revisions[WARM].workload.pending
    finally:
        await platform.stop()
