"""Host-based routing to revisions by traffic percentage, in front of the per-revision activator.

The controller publishes, per host, the revisions that serve it and their percentages (the main host
`<name>.<ns>.<domain>` splits by percent; a tag host sends 100% to its revision,
docs/architecture.md#revisions-traffic-and-rollout). Swapping a table is one assignment, so a
rollback takes effect for the next request.
"""

from __future__ import annotations

import bisect
import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram

from tidal.gateway.activator import Endpoint, RevisionThrottler
from tidal.gateway.router import Lease, RouteError

REQUESTS = Counter(
    "tidal_requests",
    "Requests answered, per revision and status code",
    ["namespace", "service", "revision", "code"],
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LATENCY = Histogram(
    "tidal_request_duration_seconds",
    "Time from request arrival to the end of the response",
    ["namespace", "service", "revision", "code"],
    buckets=LATENCY_BUCKETS,
)
# What a gateway process reports per (revision key, status code) and period: answers, the sum of
# their latencies, and how many fell in each LATENCY bucket (the last one: +Inf).
Answers = list[float]


def add_reported_latency(labels: tuple[str, ...], total_s: float, counts: list[int]) -> None:
    """Add another gateway process's latency histogram counts to this process's LATENCY, so
    /metrics (and what reads LATENCY here) counts every gateway. prometheus_client has no
    public call to add whole bucket counts; its child keeps per-bucket counters and a sum."""
    child = LATENCY.labels(*labels)
    buckets = child._buckets
    if len(counts) != len(buckets):
        raise ValueError(f"expected {len(buckets)} latency buckets, got {len(counts)}")
    child._sum.inc(float(total_s))
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(int(count))


@dataclass(frozen=True)
class HostRoute:
    """Revision keys (`namespace/revision`) serving one host and their cumulative percents."""

    revisions: tuple[str, ...]
    cumulative: tuple[int, ...]

    @classmethod
    def from_split(cls, split: list[tuple[str, int]]) -> HostRoute:
        revisions, cumulative, total = [], [], 0
        for key, percent in split:
            if percent > 0:
                total += percent
                revisions.append(key)
                cumulative.append(total)
        return cls(tuple(revisions), tuple(cumulative))

    def pick(self) -> str:
        if len(self.revisions) == 1:
            return self.revisions[0]
        point = random.random() * self.cumulative[-1]
        return self.revisions[bisect.bisect_right(self.cumulative, point)]


@dataclass(eq=False)
class ActivatorLease(Lease):
    throttler: RevisionThrottler | None = None
    endpoint: Endpoint | None = None
    granted: float = 0.0  # time.monotonic() when the replica slot was granted


class Throttlers(dict[str, RevisionThrottler]):
    """The router's revisions by key; adding or removing one (or a change to one) is reported
    to `on_change("revision", key)` once someone listens (tidal.gateway.feed)."""

    def __init__(self) -> None:
        super().__init__()
        self.on_change: Callable[[str, str], None] | None = None

    def listen(self, on_change: Callable[[str, str], None]) -> None:
        self.on_change = on_change
        for key, throttler in self.items():
            throttler.on_change = functools.partial(on_change, "revision", key)

    def __setitem__(self, key: str, throttler: RevisionThrottler) -> None:
        super().__setitem__(key, throttler)
        if self.on_change is not None:
            throttler.on_change = functools.partial(self.on_change, "revision", key)
            self.on_change("revision", key)

    def __delitem__(self, key: str) -> None:
        self.pop(key)

    def pop(self, key: str, *default: Any) -> Any:
        throttler = super().pop(key, *default)
        if self.on_change is not None and isinstance(throttler, RevisionThrottler):
            throttler.on_change = None
            self.on_change("revision", key)
        return throttler


class TrafficRouter:
    """The gateway's Router: host → revision → activator → replica."""

    def __init__(self, on_unreachable: Callable[[str, str], None] = lambda rev, rid: None) -> None:
        self.hosts: dict[str, HostRoute] = {}
        self.throttlers = Throttlers()
        self.on_unreachable = on_unreachable
        self._metrics: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        # Answers per (revision key, status) since the last report: [count, latency sum, count
        # per LATENCY bucket...], kept only by a gateway process of its own (tidal.gateway.mirror
        # sets it), whose metrics the controller shows.
        self.answered: dict[tuple[str, int], Answers] | None = None
        self.feed: object | None = None  # the controller's RoutingFeed, once a gateway asked

    def set_hosts(self, owner_hosts: set[str], table: dict[str, list[tuple[str, int]]]) -> None:
        """Replace the routes for one service: drop its `owner_hosts`, install `table`."""
        before = self.hosts
        hosts = {h: r for h, r in before.items() if h not in owner_hosts}
        for host, split in table.items():
            route = HostRoute.from_split(split)
            if route.revisions:
                hosts[host] = route
        self.hosts = hosts
        on_change = self.throttlers.on_change
        if on_change is not None:
            for host in owner_hosts | table.keys():
                if before.get(host) != hosts.get(host):
                    on_change("host", host)

    async def acquire(self, host: str, path: str) -> Lease:
        route = self.hosts.get(host)
        if route is None:
            raise RouteError(404, f"no service answers host {host!r}")
        throttler = self.throttlers.get(route.pick())
        if throttler is None:
            raise RouteError(503, f"revision for host {host!r} is not running")
        started = time.monotonic()
        deadline = started + throttler.timeout_s
        try:
            endpoint = await throttler.acquire(started + throttler.wait_s)
        except RouteError as exc:
            self._observe(throttler, exc.status, time.monotonic() - started)
            raise
        lease = ActivatorLease(
            endpoint.host,
            endpoint.port,
            throttler.revision,
            throttler.namespace,
            deadline,
            endpoint.replica_id,
            started,
            self._released,
            throttler=throttler,
            endpoint=endpoint,
            granted=time.monotonic(),
            response_start_s=throttler.response_start_s,
            idle_s=throttler.idle_s,
            h2c=throttler.h2c,
        )
        return lease

    def retry(self, lease: Lease) -> None:
        assert isinstance(lease, ActivatorLease) and lease.throttler and lease.endpoint
        lease.endpoint.draining = True
        lease._released = True
        lease.throttler.release(lease.endpoint)
        self.on_unreachable(_key(lease.throttler), lease.endpoint.replica_id)

    def _released(self, lease: Lease, status: int) -> None:
        assert isinstance(lease, ActivatorLease) and lease.throttler and lease.endpoint
        lease.throttler.release(lease.endpoint)
        now = time.monotonic()
        self._observe(lease.throttler, status, now - lease.started)
        if status != 101:  # how long a tunnel stayed open is no response time
            lease.throttler.stats.answered(now - lease.started, now - lease.granted)

    def _observe(self, throttler: RevisionThrottler, status: int, seconds: float) -> None:
        key = (_key(throttler), status)
        children = self._metrics.get(key)
        if children is None:
            labels = (throttler.namespace, throttler.service, throttler.revision, str(status))
            children = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
            self._metrics[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if self.answered is not None:
            answers = self.answered.get(key)
            if answers is None:
                answers = self.answered[key] = [0.0] * (len(LATENCY_BUCKETS) + 3)
            answers[0] += 1
            answers[1] += seconds
            answers[2 + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1


def _key(throttler: RevisionThrottler) -> str:
    return f"{throttler.namespace}/{throttler.revision}"
