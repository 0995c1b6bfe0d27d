"""The controller's routing feed: a gateway gets what changed since its version (removals
included), the whole state for another epoch, and a long poll that returns on the first change."""

from __future__ import annotations

import asyncio
import json
import time

from prometheus_client import REGISTRY

from tidal.gateway.activator import Endpoint, RevisionThrottler
from tidal.gateway.feed import RoutingFeed
from tidal.gateway.mirror import apply_snapshot, collect_stats
from tidal.gateway.routing import LATENCY_BUCKETS, TrafficRouter, add_reported_latency


def add_service(router: TrafficRouter, name: str, ready: bool = True) -> RevisionThrottler:
    key = f"default/{name}-00001"
    throttler = RevisionThrottler("default", name, f"{name}-00001", 0, 30.0, 100)
    router.throttlers[key] = throttler
    if ready:
        throttler.add_endpoint(Endpoint(f"{name}-a", "127.0.0.1", 9000))
    router.set_hosts(set(), {f"{name}.default.example.com": [(key, 100)]})
    return throttler


def wire(message: dict) -> dict:
    return json.loads(json.dumps(message))


def same_routing(a: TrafficRouter, b: TrafficRouter) -> bool:
    def view(r: TrafficRouter) -> tuple:
        return (
            r.hosts,
            {
                k: (
                    t.queue_depth,
                    t.activator_in_path,
                    t.failure,
                    [(e.replica_id, e.draining) for e in t.endpoints],
                )
                for k, t in r.throttlers.items()
            },
        )

    return view(a) == view(b)


async def test_deltas_carry_only_what_changed_and_keep_a_mirror_exact() -> None:
    source = TrafficRouter()
    feed = RoutingFeed(source)
    for i in range(50):
        add_service(source, f"svc{i}", ready=i < 3)
    first = wire(await feed.delta())
    assert first["full"] and len(first["revisions"]) == 50
    mirror = TrafficRouter()
    apply_snapshot(mirror, first, lambda key: None)
    assert same_routing(source, mirror)

    source.throttlers["default/svc7-00001"].add_endpoint(Endpoint("svc7-a", "127.0.0.1", 9007))
    source.throttlers["default/svc1-00001"].drain("svc1-a")
    source.throttlers["default/svc2-00001"].activator_in_path = False
    source.throttlers.pop("default/svc9-00001")
    source.set_hosts({"svc9.default.example.com"}, {})
    delta = wire(await feed.delta(first["epoch"], first["version"]))
    assert not delta["full"]
    assert set(delta["revisions"]) == {
        "default/svc7-00001",
        "default/svc1-00001",
        "default/svc2-00001",
        "default/svc9-00001",
    }
    assert delta["revisions"]["default/svc9-00001"] is None
    assert delta["hosts"] == {"svc9.default.example.com": None}
    apply_snapshot(mirror, delta, lambda key: None)
    assert same_routing(source, mirror)
    assert "svc9.default.example.com" not in mirror.hosts

    nothing = await feed.delta(delta["epoch"], delta["version"])
    assert nothing["revisions"] == {} and nothing["hosts"] == {}


async def test_another_epoch_gets_everything() -> None:
    source = TrafficRouter()
    add_service(source, "a")
    feed = RoutingFeed(source)  # made after the router had state: a first poll still sees it
    stale = TrafficRouter()
    add_service(stale, "gone")
    message = wire(await feed.delta("an-old-controller", 10**6))
    assert message["full"]
    apply_snapshot(stale, message, lambda key: None)
    assert same_routing(source, stale)


async def test_a_long_poll_returns_on_the_first_change() -> None:
    source = TrafficRouter()
    throttler = add_service(source, "cold", ready=False)
    feed = RoutingFeed(source)
    first = await feed.delta()
    started = time.monotonic()
    waiting = asyncio.ensure_future(feed.delta(first["epoch"], first["version"], wait_s=10))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    throttler.add_endpoint(Endpoint("cold-a", "127.0.0.1", 9000))
    delta = await asyncio.wait_for(waiting, 2)
    assert time.monotonic() - started < 1
    assert delta["revisions"]["default/cold-00001"]["endpoints"] == [
        ["cold-a", "127.0.0.1", 9000, False]
    ]
    idle = await feed.delta(delta["epoch"], delta["version"], wait_s=0.1)
    assert idle["revisions"] == {}


async def test_stats_skip_idle_revisions_and_carry_latency() -> None:
    router = TrafficRouter()
    router.answered = {}
    for i in range(20):
        add_service(router, f"s{i}")
    lease = await router.acquire("s3.default.example.com", "/")
    lease.release(200)
    stats = collect_stats(router, time.monotonic() - 1, time.monotonic())
    assert set(stats) == {"default/s3-00001"}
    assert stats["default/s3-00001"]["codes"] == {"200": 1}
    total, *counts = stats["default/s3-00001"]["latency"]["200"]
    assert sum(counts) == 1 and len(counts) == len(LATENCY_BUCKETS) + 1 and total >= 0


def test_reported_latency_shows_in_the_histogram() -> None:
    labels = ("default", "feedtest", "feedtest-00001", "200")
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    counts[0], counts[3] = 4, 1  # four under 5 ms, one in (25 ms, 50 ms]
    add_reported_latency(labels, 0.05, counts)
    sample = dict(zip(("namespace", "service", "revision", "code"), labels, strict=True))

    def value(name: str, **extra: str) -> float | None:
        return REGISTRY.get_sample_value(name, {**sample, **extra})

    assert value("tidal_request_duration_seconds_count") == 5
    assert value("tidal_request_duration_seconds_sum") == 0.05
    assert value("tidal_request_duration_seconds_bucket", le="0.005") == 4
    assert value("tidal_request_duration_seconds_bucket", le="0.05") == 5
