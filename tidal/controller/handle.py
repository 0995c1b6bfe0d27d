"""One object per revision: everything the controller holds for it, in one map.

A `RevisionHandle` carries the revision's decider spec, autoscaler, throttler, workload, its
plan entry (predictive revisions) and the scaling loop's per-revision state. `Revisions` keeps
the handles under a typed `RevisionKey`, with an index by service (so per-service work never
walks every revision) and the two tables other components read published from it in the same
step: the gateway router's throttlers and the forecaster's plan entries. Adding and removing a
revision is one call each.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, ValuesView
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tidal.autoscaler.kpa import DeciderSpec, Decision

if TYPE_CHECKING:
    from tidal.autoscaler.signals import Usage
    from tidal.controller.forecasting import Planned
    from tidal.controller.scaling import Autoscaler
    from tidal.controller.workload import RevisionWorkload
    from tidal.gateway.activator import RevisionThrottler
    from tidal.runtime.resources import ReplicaResources


class RevisionKey(str):
    """`namespace/name` of a revision. A str, so it is also the key the gateway's routing
    table and stats use on the wire; build it with `RevisionKey.of`."""

    __slots__ = ()

    @classmethod
    def of(cls, namespace: str, name: str) -> RevisionKey:
        return cls(f"{namespace}/{name}")

    @property
    def namespace(self) -> str:
        return self.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.split("/", 1)[1]


@dataclass
class RemoteStats:
    """Other gateway processes' stats for one revision since the scaling loop last recorded it.

    Each gateway reports once a second at its own phase, so one record window may hold none or
    two of a gateway's reports. Summing them would make the autoscaler's input jump between 0
    and twice the load; instead each gateway's concurrency is averaged over its reports in the
    window, and a gateway that reported in the previous window but not in this one counts with
    its last figure. Requests are counts and are summed."""

    concurrency: dict[str, list[float]] = field(default_factory=dict)  # gateway -> [sum, n]
    last: dict[str, float] = field(default_factory=dict)  # gateway -> previous window's figure
    requests: float = 0.0
    peak: float = 0.0
    latencies: list[tuple[float, float]] = field(default_factory=list)

    def add(
        self,
        gateway: str,
        concurrency: float,
        requests: float,
        peak: float,
        latencies: list[tuple[float, float]],
    ) -> None:
        total = self.concurrency.setdefault(gateway, [0.0, 0.0])
        total[0] += concurrency
        total[1] += 1
        self.requests += requests
        self.peak = max(self.peak, peak)
        self.latencies.extend(latencies)

    @property
    def pending(self) -> bool:
        return bool(self.concurrency or self.last or self.requests or self.latencies)

    def take(self) -> tuple[float, int, int, list[tuple[float, float]]]:
        """(concurrency, requests, peak, latencies) for this window; starts the next one."""
        current = {gateway: total / n for gateway, (total, n) in self.concurrency.items()}
        missed = sum(value for gateway, value in self.last.items() if gateway not in current)
        taken = (sum(current.values()) + missed, int(self.requests), int(self.peak), self.latencies)
        self.concurrency, self.last = {}, current
        self.requests, self.peak, self.latencies = 0.0, 0.0, []
        return taken


@dataclass(eq=False)
class RevisionHandle:
    """Everything tidal holds for one revision."""

    key: RevisionKey
    service: str
    generation: int
    decider: DeciderSpec
    throttler: RevisionThrottler
    workload: RevisionWorkload
    autoscaler: Autoscaler
    planned: Planned | None = None  # predictive revisions: the plan the forecaster keeps
    history_key: tuple[str, str, str] = ("", "", "")  # (namespace, service, revision)
    # -- the scaling loop's state (tidal.controller.scaling) --
    last_decision: Decision | None = None
    period_start: float = field(default_factory=time.monotonic)
    poked: bool = False  # an immediate stat was sent; the next report subtracts it
    remote: RemoteStats = field(default_factory=lambda: RemoteStats())  # other gateways
    # The last measured use of each replica (tidal.runtime.resources), by replica id.
    resources: dict[str, ReplicaResources] = field(default_factory=dict)
    usage: Usage | None = None  # their sum over ready replicas, for the autoscaler
    exported: set[str] = field(default_factory=set)  # replicas with tidal_replica_* gauges
    scaled: bool = True  # False: the loop leaves it alone (its scale is set by hand)
    idle: bool = False  # at zero and settled: decision ticks skip it until something happens
    settle_check_at: float = 0.0  # when to ask the autoscaler again whether it has settled
    _reachable: bool = True

    @property
    def reachable(self) -> bool:
        return self._reachable

    @reachable.setter
    def reachable(self, value: bool) -> None:
        if value != self._reachable:
            self._reachable = value
            self.idle = False  # min-scale applies again, or no longer: decide


class Revisions(Mapping[str, RevisionHandle]):
    """The one map of revision handles (see module doc)."""

    def __init__(
        self,
        throttlers: dict[str, RevisionThrottler],
        planned: dict[str, Planned],
    ) -> None:
        self._handles: dict[str, RevisionHandle] = {}
        self._by_service: dict[tuple[str, str], dict[str, RevisionHandle]] = {}
        self._throttlers = throttlers
        self._planned = planned

    def __getitem__(self, key: str) -> RevisionHandle:
        return self._handles[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    def values(self) -> ValuesView[RevisionHandle]:  # type: ignore[override]
        return self._handles.values()  # the dict's own view: the scaling loop walks it often

    def get(self, key: str, default: RevisionHandle | None = None) -> RevisionHandle | None:  # type: ignore[override]
        return self._handles.get(key, default)

    def add(self, handle: RevisionHandle) -> None:
        key = handle.key
        self._handles[key] = handle
        self._by_service.setdefault((key.namespace, handle.service), {})[key] = handle
        self._throttlers[key] = handle.throttler
        if handle.planned is not None:
            self._planned[key] = handle.planned

    def remove(self, key: str) -> RevisionHandle | None:
        """Take the revision out of every table; the caller closes what it owned."""
        handle = self._handles.pop(key, None)
        if handle is None:
            return None
        service = (handle.key.namespace, handle.service)
        of_service = self._by_service.get(service, {})
        of_service.pop(key, None)
        if not of_service:
            self._by_service.pop(service, None)
        self._throttlers.pop(key, None)
        self._planned.pop(key, None)
        return handle

    def of_service(self, namespace: str, service: str) -> list[RevisionHandle]:
        """The service's revisions, oldest generation first."""
        handles = self._by_service.get((namespace, service), {}).values()
        return sorted(handles, key=lambda h: h.generation)

    def services(self) -> Iterator[tuple[str, str]]:
        """(namespace, service) of every service with a revision."""
        return iter(list(self._by_service))


class WorkloadView(Mapping[str, "RevisionWorkload"]):
    """The handles' workloads by key (read-only)."""

    def __init__(self, revisions: Revisions) -> None:
        self._revisions = revisions

    def __getitem__(self, key: str) -> RevisionWorkload:
        return self._revisions[key].workload

    def __iter__(self) -> Iterator[str]:
        return iter(self._revisions)

    def __len__(self) -> int:
        return len(self._revisions)
