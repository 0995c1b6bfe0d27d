"""Response times as the gateway sees them: the whole time a request spent in the gateway and the
part on a replica, per revision, reported with the stats a second gateway sends the controller."""

from __future__ import annotations

import asyncio
import json

import pytest

from tidal.gateway.activator import Endpoint, RevisionThrottler
from tidal.gateway.mirror import collect_stats
from tidal.gateway.router import RouteError
from tidal.gateway.routing import TrafficRouter
from tidal.gateway.stats import LATENCY_SAMPLES, RevisionStats

HOST = "hello.default.example.com"


def router_with_one_slot() -> TrafficRouter:
    router = TrafficRouter()
    throttler = RevisionThrottler("default", "hello", "hello-00001", 1, 30.0, 10)
    throttler.add_endpoint(Endpoint("hello-00001-a", "127.0.0.1", 9001))
    router.throttlers["default/hello-00001"] = throttler
    router.set_hosts(set(), {HOST: [("default/hello-00001", 100)]})
    return router


async def test_queueing_counts_in_rt_not_in_service_time():
    router = router_with_one_slot()
    first = await router.acquire(HOST, "/")
    second = asyncio.ensure_future(router.acquire(HOST, "/"))
    await asyncio.sleep(0.1)  # the second waits for CC=1's only slot
    first.release(200)
    lease = await second
    await asyncio.sleep(0.05)
    lease.release(200)
    stats = json.loads(json.dumps(collect_stats(router, 0.0, 1.0)))["default/hello-00001"]
    # By time on the replica: the second request (held ~0.05 s), then the first (~0.1 s).
    (waited_rt, waited_service), (first_rt, first_service) = sorted(
        stats["latencies"], key=lambda sample: sample[1]
    )
    assert first_service >= 0.09 and abs(first_rt - first_service) < 0.02  # never waited
    assert waited_service >= 0.04 and waited_rt - waited_service > 0.05  # queued ~0.1 s
    assert collect_stats(router, 1.0, 2.0) == {}  # taken once


def test_a_busy_second_keeps_a_bounded_uniform_sample():
    stats = RevisionStats()
    for i in range(10 * LATENCY_SAMPLES):
        stats.answered(float(i), 0.0)
    taken = stats.take_latencies()
    assert len(taken) == LATENCY_SAMPLES
    assert max(rt for rt, _ in taken) > 5 * LATENCY_SAMPLES  # not only the first ones
    assert stats.take_latencies() == []


async def test_a_request_waits_for_a_slot_no_longer_than_its_shortest_timeout():
    """Knative counts the response-start and idle timeouts from a request's arrival, so a
    request still queued when either passes is answered 504 then, not at timeoutSeconds."""
    router = TrafficRouter()
    throttler = RevisionThrottler(
        "default", "hello", "hello-00001", 1, 30.0, 10, response_start_s=5.0, idle_s=0.2
    )
    router.throttlers["default/hello-00001"] = throttler
    router.set_hosts(set(), {HOST: [("default/hello-00001", 100)]})
    with pytest.raises(RouteError) as caught:
        await asyncio.wait_for(router.acquire(HOST, "/"), 2)  # no replica: waits
    assert caught.value.status == 504
    assert "had a free slot within 0.2s" in caught.value.reason
