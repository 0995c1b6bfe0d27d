"""Discrete-event replay of a trace through tidal's own autoscaler and scheduler, for one
service or a fleet of services sharing pools.

The simulated platform keeps the live one's rules (docs/simulator.md):
- gateway/activator (tidal/gateway/activator.py): a request waits in a FIFO queue while no
  replica has a free slot; containerConcurrency (CC) is a hard per-replica limit (0 = none); the
  least-loaded replica is picked; past the pending cap (`pending_cap`: the activator's queue
  depth, 10,000 by default, while the autoscaler's SKS mode is Proxy or no replica is ready,
  else 10 x CC x ready replicas) a request gets 503 at once; a request still unanswered
  `timeoutSeconds` after it arrived gets 504 (waiting or in service, as the proxy's deadline
  does);
- scaling loop (tidal/controller/scaling.py, clocks from tidal/autoscaler/clocks.py): every
  stat period each service's time-weighted concurrency and request rate are recorded (not when
  it has no ready replica and no traffic); every decision tick its autoscaler decides; the first
  request that finds no free replica while none is in flight pokes it (a stat of 1, and an
  immediate decision when at zero);
- workload (tidal/controller/workload.py): a replica serves after its pool's start-up delay plus
  a start-up time drawn from a distribution; scale-in drains (no new requests, stop when idle);
- scheduler (tidal/scheduler/placement.py): `place` picks each new replica's pool and the
  replicas to stop, over the capacity every service's replicas hold; CostLedger
  (tidal/scheduler/cost.py) prices replica- and GPU-seconds.

Event skipping: a service with no request in flight, no replica draining and no replica
pending placement asks its autoscaler, after a decision, until when further idle ticks would
change nothing (`quiet_until`); its ticks until then, or until its next request or a starting
replica's readiness, are not run one by one but summed up by the autoscaler's `skip_idle`. A
placement that left every missing replica pending is not retried for the same count until some
replica has been removed (capacity only shrinks in between, so it would fail again). A service
without replicas whose requests (if any) all wait for such a placement records the same stats
every second (its queue, no arrivals; nothing without requests): its autoscaler says until when
its decision stays the same (`steady_until`) and takes those stats in one go (`skip_steady`);
its next request or time-out wakes it, and freed capacity makes
it retry the placement at its next decision tick, woken only if a replica is started. The
result is the same as ticking every second with every placement retried (`skip=False`), which
tests/sim/test_equivalence.py checks.

Time is simulated (seconds from the trace start); autoscalers see `start_epoch + t`. All
randomness is seeded, and every policy sees the same service and start-up times (a replica
started at the same second draws the same start-up time under every policy, `startup_sample`).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

import numpy as np

from tidal.api.autoscaling import RT
from tidal.api.pools import Pool
from tidal.api.predictive import OBSERVER, REACTIVE, PredictiveAnnotations
from tidal.autoscaler.baselines import HPAAutoscaler, make_autoscaler
from tidal.autoscaler.clocks import STAT_PERIOD_S, TICKS_PER_DECISION
from tidal.autoscaler.kpa import PROXY, DeciderSpec, Decision, RevisionAutoscaler
from tidal.autoscaler.signals import MetricAutoscaler, MetricFeed, MetricTarget, signal_spec
from tidal.autoscaler.signals import Usage as Measured
from tidal.gateway.activator import pending_cap
from tidal.scheduler.cost import CostLedger, Usage
from tidal.scheduler.placement import Demand, Placed, PoolUsage, Request, place, room_for
from tidal.sim.dists import Distribution
from tidal.sim.predictive import SimulatedPredictive
from tidal.sim.quiet import (
    predictive_quiet_until,
    predictive_skip_idle,
    predictive_skip_steady,
    predictive_steady_until,
)
from tidal.sim.traces import Trace

PENDING_CAP_DEFAULT = 10_000
STARTUP_SAMPLES = 4096
OK, REJECTED, TIMED_OUT = 0, 503, 504
PEAK_WINDOW_S = 10.0
POLICIES = ("kpa", "predictive", "hpa", "ray", "keepalive", "hybrid-histogram", "peak")
STARTING, READY, DRAINING = 0, 1, 2
# Event kinds, in the order they run at the same instant (as the live loop's stat tick comes
# before the requests of that instant). Arrivals (kind 1) come from the trace, not the heap.
TICK, DONE, UP, DEADLINE = 0, 2, 3, 4


@dataclass(frozen=True)
class ServiceModel:
    """What the simulator needs of a revision (from its Service manifest)."""

    name: str
    spec: DeciderSpec
    container_concurrency: int = 0
    timeout_s: float = 300.0
    demand: Demand = field(default_factory=Demand)
    predictive: PredictiveAnnotations = field(default_factory=PredictiveAnnotations)
    progress_deadline_s: float = 600.0
    pending_cap_default: int = PENDING_CAP_DEFAULT
    # Scaling on RT, CPU, memory or GPU (tidal.autoscaler.signals); None: on the spec's
    # concurrency or rps. What replicas use (docs/simulator.md#what-is-simulated):
    metric: MetricTarget | None = None
    cores_per_request: float = 1.0  # CPU a request in service burns
    memory_per_replica: float = 0.0  # bytes a ready replica holds when idle
    memory_per_request: float = 0.0  # bytes a request in service adds
    gpu_per_request: float = 100.0  # % of a replica's GPU a request in service keeps busy


class Autoscaler(Protocol):
    def record(self, now: float, concurrency: float, rps: float) -> None: ...

    def poke(self, now: float, concurrency: float) -> bool: ...

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision: ...


@dataclass
class SimResult:
    """One policy's replay. Per request: latency (s; NaN unless served), status (0 served,
    503, 504), whether it waited for a cold start, and its service (an index into `services`).
    Per second: ready and live replicas of the whole fleet. Usage counts from `score_from`."""

    policy: str
    arrivals: np.ndarray
    latency: np.ndarray
    status: np.ndarray
    cold: np.ndarray
    cold_starts: int
    ready: np.ndarray
    replicas: np.ndarray
    usage: dict[str, Usage]
    duration: float
    services: tuple[str, ...] = ("",)
    service_of: np.ndarray | None = None
    service_cold_starts: np.ndarray | None = None
    service_max_replicas: np.ndarray | None = None
    service_usage: dict[str, dict[str, Usage]] = field(default_factory=dict)
    score_from: float = 0.0
    note: str = ""
    setting: str = ""
    service_times: np.ndarray | None = None

    def wait(self) -> np.ndarray:
        """Per request, how long it waited for a replica (queueing and cold start); NaN
        unless served."""
        if self.service_times is None:
            return self.latency
        return np.maximum(self.latency - self.service_times, 0.0)


def peak_replicas(arrivals: np.ndarray, service_times: np.ndarray, target: float) -> int:
    """Replicas for the busiest 10 s: offered concurrency (work arriving in the window / its
    length, Little's law) over the per-replica target."""
    if not len(arrivals):
        return 1
    windows = (arrivals // PEAK_WINDOW_S).astype(np.int64)
    work = np.bincount(windows, weights=service_times)
    return max(1, math.ceil(float(work.max()) / PEAK_WINDOW_S / target - 1e-9))


def make_policy(
    name: str,
    service: ServiceModel,
    now: float,
    peak: int,
    ready_times: np.ndarray,
    settings: Mapping[str, float] | None = None,
    prior_history: np.ndarray | None = None,
) -> Any:
    metric = service.metric
    if metric is not None and name == "hpa":
        feed = MetricFeed(metric, HPAAutoscaler.SYNC_S)
        return HPAAutoscaler(service.spec, feed=feed, **(settings or {}))
    # The KPA takes rt but no resource metric (Knative refuses cpu on it); predictive takes all.
    if metric is not None and (name == "predictive" or (name == "kpa" and metric.metric == RT)):
        inner = make_policy(
            name,
            replace(service, spec=signal_spec(service.spec), metric=None),
            now,
            peak,
            ready_times,
            settings,
            prior_history,
        )
        feed = MetricFeed(metric, service.spec.stable_window, service.container_concurrency)
        return MetricAutoscaler(inner, feed)
    if name == "predictive":
        return SimulatedPredictive(
            service.spec,
            service.predictive,
            now,
            ready_times,
            service.progress_deadline_s,
            prior_history=prior_history,
        )
    return make_autoscaler(
        name,
        service.spec,
        now,
        progress_deadline_s=service.progress_deadline_s,
        peak_replicas=peak,
        settings=settings,
    )


class _Grid(Sequence[float]):
    """The autoscaler times `clock0 + k * STAT_PERIOD_S` for k in [first, last] with `step`,
    without building the list (a skip may cover weeks)."""

    def __init__(self, clock0: float, first: int, last: int, step: int = 1) -> None:
        self.clock0, self.first, self.step = clock0, first, step
        self.size = max(0, (last - first) // step + 1)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if i < 0:
            i += self.size
        if not 0 <= i < self.size:
            raise IndexError(i)
        return self.clock0 + (self.first + i * self.step) * STAT_PERIOD_S


def _grid_or_list(clock0: float, first: int, last: int) -> Sequence[float]:
    """The times of stat ticks `first` to `last`: as a list when short, else a `_Grid`; the
    same floats either way. The KPA reads every record of a steady skip, and its skips are
    short (they end when its windows' averages move, at most one stable window on); a list's
    items cost less to read. Others read a few records of what may be a long skip."""
    if last - first < 96:
        return [clock0 + k * STAT_PERIOD_S for k in range(first, last + 1)]
    return _Grid(clock0, first, last)


def startup_sample(service: int, second: int, k: int, size: int) -> int:
    """Which start-up sample the `k`-th replica a service starts in `second` gets: a fixed hash
    of the three, so that two policies starting a replica of the same service at the same
    second draw the same start-up time (common random numbers). Drawn by count, one extra
    start in one policy reshuffled every later draw, and a policy that acted once in the
    warm-up and then ran exactly as the KPA still scored differently."""
    x = (service * 0x9E3779B1 + second * 0x85EBCA77 + k * 0xC2B2AE3D) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 33  # the 64-bit finaliser of MurmurHash3: every input bit moves the result
    x = (x * 0xFF51AFD7ED558CCD) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 33
    return x % size


class _Service:
    """One service's side of the replay: its autoscaler, queue, replicas and gateway stats."""

    def __init__(self, index: int, model: ServiceModel, autoscaler: Any) -> None:
        self.index = index
        self.model = model
        self.autoscaler = autoscaler
        self.cc = model.container_concurrency
        self.timeout = model.timeout_s
        self.state: dict[int, int] = {}
        self.ready = 0
        self.desired = 0
        self.pending_since: list[float] = []
        self.free: list[tuple[int, int]] = []  # (in-flight, replica) heap, stale entries lazily
        self.queue: deque[int] = deque()
        self.open = 0
        self.area = 0.0
        self.last = 0.0
        self.count = 0
        self.period_start = 0.0
        self.poked = False
        self.cold_began: float | None = None
        self.cold_starts: list[float] = []  # when each cold start ended (a replica was ready)
        self.start_second = -1  # the second of the last replica start, and starts in it
        self.starts_in_second = 0
        self.max_live = 0
        self.next_k = 1  # the stat tick (in periods) this service's heap entry is for
        self.skip_from: int | None = None  # first stat tick not run while quiet
        # (capacity freed so far, desired, placed for, needed) at the last placement that left
        # every missing replica pending: until capacity is freed, asking again for as many,
        # as many of them needed by its requests, gets the same.
        self.blocked: tuple[int, int, int, int] | None = None
        # Its autoscaler may hold replicas ahead of demand (`ahead`: the predictive one).
        self.predicts = hasattr(autoscaler, "ahead")
        # RT and use for autoscalers that scale on them: requests in service (their time
        # integral gives CPU, memory and GPU use) and (RT, service time) of the answered.
        self.measured = callable(getattr(autoscaler, "record_usage", None))
        self.busy = 0
        self.busy_area = 0.0
        self.busy_last = 0.0
        self.latencies: list[tuple[float, float]] = []
        quiet = getattr(autoscaler, "quiet_until", None)
        skip = getattr(autoscaler, "skip_idle", None)
        if isinstance(autoscaler, SimulatedPredictive) and quiet is None:
            quiet = lambda now, ready: predictive_quiet_until(autoscaler, now, ready)  # noqa: E731
            skip = lambda r, t, ready: predictive_skip_idle(autoscaler, r, t, ready)  # noqa: E731
        self.quiet_until: Callable[[float, int], float] | None = quiet
        # Steady skipping (no replica, the missing ones cannot be placed, requests queued or
        # none). Not through a metric wrapper: it records other values than it is given.
        steady = not isinstance(autoscaler, MetricAutoscaler)
        self.steady_until = getattr(autoscaler, "steady_until", None) if steady else None
        self.skip_steady = getattr(autoscaler, "skip_steady", None) if steady else None
        if isinstance(autoscaler, SimulatedPredictive) and self.steady_until is None:
            self.steady_until = partial(predictive_steady_until, autoscaler)
            self.skip_steady = partial(predictive_skip_steady, autoscaler)
        self.steady: tuple[float, float] | None = None  # what the skipped stats record
        self.skip_idle: Callable[[Sequence[float], Sequence[float], int], None] | None = skip
        # A decision tick's replicas to apply (None: as they are), without the whole
        # `Decision` where the KPA itself decides (not through a wrapper, whose attributes
        # may lead to the KPA it wraps).
        self.tick_replicas: Callable[[float, int], int | None] = (
            autoscaler.tick_replicas
            if isinstance(autoscaler, RevisionAutoscaler)
            else lambda now, ready: autoscaler.tick(now, ready, True).replicas
        )


class Simulation:
    """One policy over one trace, for one service or several (one per trace service, in the
    order of `trace.services`). Build, then `run()`."""

    def __init__(
        self,
        trace: Trace,
        service: ServiceModel | Sequence[ServiceModel],
        policy: str,
        pools: tuple[Pool, ...],
        service_times: np.ndarray,
        startup: Distribution,
        seed: int = 0,
        *,
        skip: bool = True,
        settings: Mapping[str, float] | None = None,
        prior_history: np.ndarray | None = None,
        score_from: float = 0.0,
    ) -> None:
        self.trace = trace
        self.models = [service] if isinstance(service, ServiceModel) else list(service)
        if len(self.models) > 1 and len(self.models) != len(trace.services):
            raise ValueError(f"{len(self.models)} services for a trace of {len(trace.services)}")
        self.policy = policy
        self.pools = pools
        self.pool_by_name = {pool.name: pool for pool in pools}
        self.service_times = service_times
        self.skip = skip
        self.score_from = score_from
        self.prior_s = 0.0 if prior_history is None else 60.0 * len(prior_history)
        rng = np.random.default_rng(seed + 7)
        self.startup_samples = startup.sample(STARTUP_SAMPLES, rng).tolist()
        self.clock0 = trace.start_epoch
        n_services = len(self.models)
        self.service_of = (
            trace.service_of.astype(np.int64)
            if n_services > 1 and trace.service_of is not None
            else np.zeros(len(trace), dtype=np.int64)
        )
        ready_times = np.asarray(self.startup_samples)
        self.services: list[_Service] = []
        for index, model in enumerate(self.models):
            mine = self.service_of == index
            peak = peak_replicas(trace.arrivals[mine], service_times[mine], model.spec.target_value)
            autoscaler = make_policy(
                policy, model, self.clock0, peak, ready_times, settings, prior_history
            )
            self.services.append(_Service(index, model, autoscaler))
        self.ledger = CostLedger(pools)
        # Replicas of every service, by integer id.
        self.in_flight: list[int] = []
        self.pool_of: list[str] = []
        self.started_at: list[float] = []
        self.ready_at: list[float] = []  # when a starting replica becomes ready
        self.devices: list[tuple[str, ...]] = []
        self.owner: list[int] = []
        # What each pool's replicas hold: replicas per demand, and devices.
        self.pool_demands: dict[str, Counter[Demand]] = {p.name: Counter() for p in pools}
        self.pool_devices: dict[str, set[str]] = {p.name: set() for p in pools}
        self._usage_now: dict[str, PoolUsage] | None = None  # `_usage()` until they change
        self._room: dict[Demand, bool] = {}  # `room_for` each demand, until usage changes
        self.events: list[tuple[float, int, int, int]] = []
        # Replicas removed so far (each frees capacity in its pool), plus one each time no
        # service's needed replicas wait for room any more (replicas ahead of demand may take
        # room again): a placement that failed is retried after either.
        self.freed = 0
        self.waiting: set[int] = set()  # services skipping ticks while blocked on capacity
        # Replicas ahead of demand yield to requests that wait (tidal/scheduler/placement.py):
        # services whose needed replicas wait for room, and those that may run replicas ahead
        # of demand (their autoscaler's `ahead` was > 0 at its last decision).
        self.starved: set[int] = set()
        self.ahead_holders: set[int] = set()
        # Placement retries in turn after capacity was freed: id -> (services, their
        # demands, [position]); an event (time, TICK, service, id) is the next one's turn.
        self.chains: dict[int, tuple[list[int], set[Demand], list[int]]] = {}
        self.chain_id = 0
        self.ticking: tuple[int, int] | None = None  # (stat tick, service) being run
        self.changes: list[tuple[float, int, int]] = []  # (time, d ready, d live)

    # -- capacity and replicas ----------------------------------------------------------------

    def _usage(self) -> dict[str, PoolUsage]:
        """What every pool's replicas hold; kept until a replica starts or is removed (most
        placements of a starved fleet ask in between)."""
        if self._usage_now is not None:
            return self._usage_now
        usage = {}
        for name, demands in self.pool_demands.items():
            cpu = sum(d.cpu * n for d, n in demands.items())
            memory = sum(d.memory * n for d, n in demands.items())
            count = sum(demands.values())
            usage[name] = PoolUsage(cpu, memory, count, frozenset(self.pool_devices[name]))
        self._usage_now = usage
        return usage

    def _room_for(self, demand: Demand) -> bool:
        """`room_for(demand)` over the pools as they are now (asked by most placements of a
        starved fleet, between two changes of usage)."""
        room = self._room.get(demand)
        if room is None:
            room = self._room[demand] = room_for(demand, self.pools, self._usage())
        return room

    def _start_replica(self, svc: _Service, pool: str, devices: tuple[str, ...], t: float) -> None:
        rid = len(self.in_flight)
        self.in_flight.append(0)
        self.pool_of.append(pool)
        self.started_at.append(t)
        self.devices.append(devices)
        self.owner.append(svc.index)
        svc.state[rid] = STARTING
        svc.max_live = max(svc.max_live, len(svc.state))
        if pool in self.pool_demands:
            self.pool_demands[pool][svc.model.demand] += 1
            self.pool_devices[pool].update(devices)
            self._usage_now = None
            self._room.clear()
        second = math.floor(t)
        if second != svc.start_second:
            svc.start_second, svc.starts_in_second = second, 0
        sample = startup_sample(svc.index, second, svc.starts_in_second, len(self.startup_samples))
        svc.starts_in_second += 1
        delay = self.pool_by_name[pool].startup_delay_s + self.startup_samples[sample]
        self.ready_at.append(t + delay)
        self.ledger.start(str(rid), svc.model.name, svc.model.name, pool, len(devices), t)
        self.changes.append((t, 0, 1))
        heapq.heappush(self.events, (t + delay, UP, rid, 0))

    def _remove(self, svc: _Service, rid: int, t: float) -> None:
        del svc.state[rid]
        self.freed += 1
        if self.waiting:
            self._retry_waiting(t)
        self.ledger.stop(str(rid), t)
        pool = self.pool_of[rid]
        if pool in self.pool_demands:
            self.pool_demands[pool][svc.model.demand] -= 1
            self.pool_devices[pool].difference_update(self.devices[rid])
            self._usage_now = None
            self._room.clear()
        self.changes.append((t, 0, -1))

    def _stop_replica(self, svc: _Service, rid: int, t: float) -> None:
        state = svc.state.get(rid)
        if state == READY:
            svc.ready -= 1
            self.changes.append((t, -1, 0))
        if state == STARTING or self.in_flight[rid] == 0:
            self._remove(svc, rid, t)
        else:
            svc.state[rid] = DRAINING

    @staticmethod
    def _live(svc: _Service) -> int:
        """Replicas not draining."""
        active = len(svc.state)
        if active and svc.ready != active:
            active -= sum(1 for state in svc.state.values() if state == DRAINING)
        return active

    @staticmethod
    def _needed(svc: _Service, count: int) -> int:
        """Of `count` replicas, those its requests need: the rest, its autoscaler holds ahead
        of demand."""
        return count - min(svc.autoscaler.ahead, count) if svc.predicts else count

    def _scale_to(self, svc: _Service, count: int, t: float) -> None:
        """The workload's `scale_to`, with the scheduler choosing pools and victims. Replicas
        ahead of demand yield to other services' requests that wait for room, as `place_all`
        has them: none is placed while some service's needed replicas wait, and the ones
        running are stopped when one starts to wait (`_take_back`)."""
        svc.desired = count
        needed = self._needed(svc, count)
        starved = self.starved
        others_wait = bool(starved) and (len(starved) > 1 or svc.index not in starved)
        target = needed if others_wait else count
        if svc.blocked == (self.freed, count, target, needed):
            return  # nothing freed since that placement failed: it would fail again
        active = self._live(svc)
        if needed > active and self.ahead_holders and not self._room_for(svc.model.demand):
            self._take_back(svc, t)  # may free room now
        if target > active and not self._room_for(svc.model.demand):
            # No pool has room for one more: `place` (no ResourcePolicy here) would start or
            # stop nothing and hold every missing replica pending, the oldest first, then now.
            missing = count - active
            since = sorted(svc.pending_since)[:missing]
            since += [t] * (missing - len(since))
            svc.pending_since = since
            svc.blocked = (self.freed, count, target, needed) if self.skip else None
            self._update_starved(svc, active < needed, t)
            return
        placed = [
            Placed(
                str(rid),
                self.pool_of[rid],
                self.started_at[rid],
                self.devices[rid],
                ready=state == READY,
                terminating=state == DRAINING,
            )
            for rid, state in svc.state.items()
        ]
        request = Request(
            svc.model.name, target, svc.model.demand, placed, pending_since=svc.pending_since
        )
        decision = place(request, self.pools, self._usage(), t)
        for start in decision.start:
            self._start_replica(svc, start.pool, start.devices, t)
        for rid in decision.stop:
            self._stop_replica(svc, int(rid), t)
        svc.pending_since = [p.since for p in decision.pending] + [t] * (count - target)
        blocked = svc.pending_since and not decision.start and not decision.stop
        svc.blocked = (self.freed, count, target, needed) if blocked and self.skip else None
        self._update_starved(svc, self._live(svc) < needed, t)

    def _update_starved(self, svc: _Service, waits: bool, t: float) -> None:
        """Whether `svc`'s needed replicas wait for room; once none does, replicas ahead of
        demand may take room again: the services that yielded retry, as on freed capacity."""
        if waits:
            if svc.index not in self.starved:
                self.starved.add(svc.index)
                self._wake_ahead(svc, t)
        elif svc.index in self.starved:
            self.starved.discard(svc.index)
            if not self.starved and self.ahead_holders:
                self.freed += 1
                if self.waiting:
                    self._retry_waiting(t)

    def _running_ahead(self, needy: _Service) -> Iterator[_Service]:
        """The services other than `needy` that run replicas ahead of demand, by index; each
        is checked when its turn comes (stopping one's changes nothing of the next)."""
        for index in sorted(self.ahead_holders):
            other = self.services[index]
            if other is not needy and self._live(other) > self._needed(other, other.desired):
                yield other

    def _wake_ahead(self, needy: _Service, t: float) -> None:
        """`needy` starts to wait for room: each service that skips ticks while it runs
        replicas ahead of demand is woken, so that its next decision tick, as when it ticks
        every second, sees a request waiting and stops them (`_decide`)."""
        for other in self._running_ahead(needy):
            self._wake_for(other, t)  # nothing to do for one that ticks

    def _take_back(self, needy: _Service, t: float) -> None:
        """`needy`'s needed replicas find no room: every other service stops the replicas it
        runs ahead of demand (they drain; one without a request in flight frees its room now).
        A service that skips ticks is first brought up to now."""
        self.starved.add(needy.index)
        for other in self._running_ahead(needy):
            self._wake_for(other, t)
            self._scale_to(other, other.desired, t)

    def _wake_for(self, svc: _Service, t: float) -> None:
        """Wake a skipping service before another changes its replicas at `t`: its ticks up to
        now are summed up; if `t` is a stat tick that has not reached it yet (it comes after
        the service ticking now), that tick runs as its own."""
        if svc.skip_from is None:
            return
        k = math.floor(t / STAT_PERIOD_S)
        ticking = self.ticking
        if ticking is not None and ticking[0] == k and svc.index > ticking[1]:
            self._wake(svc, k - 1)
            if svc.next_k != k:
                svc.next_k = k
                heapq.heappush(self.events, (k * STAT_PERIOD_S, TICK, svc.index, 0))
        else:
            self._wake_at(svc, k)

    def _decide(self, svc: _Service, t: float) -> None:
        replicas = svc.tick_replicas(self.clock0 + t, svc.ready)
        runs_ahead = False
        if svc.predicts:
            if svc.autoscaler.ahead:
                self.ahead_holders.add(svc.index)
                # More of its replicas ahead of demand than before, while requests wait?
                needed = self._needed(svc, svc.desired)
                runs_ahead = bool(self.starved) and self._live(svc) > needed
            else:
                self.ahead_holders.discard(svc.index)
        if replicas is not None:
            self._scale_to(svc, replicas, t)
        elif svc.pending_since or runs_ahead:
            self._scale_to(svc, svc.desired, t)

    # -- idle skipping ------------------------------------------------------------------------

    def _wake(self, svc: _Service, last_k: int) -> None:
        """Sum up the skipped stat ticks from `svc.skip_from` to `last_k` (inclusive)."""
        first, steady = svc.skip_from, svc.steady
        svc.skip_from = svc.steady = None
        self.waiting.discard(svc.index)
        if first is None or last_k < first:
            return
        per = TICKS_PER_DECISION
        first_tick = -(-first // per) * per
        last_tick = last_k // per * per
        ticks = _Grid(self.clock0, first_tick, last_tick, per)
        if steady is not None:
            assert svc.skip_steady is not None
            # Stats are recorded only with a replica ready or traffic (see `run`).
            recorded = svc.ready or steady[0] or steady[1]
            records = _grid_or_list(self.clock0, first, last_k) if recorded else []
            svc.skip_steady(records, ticks, svc.ready, *steady)
        else:
            records = _Grid(self.clock0, first, last_k) if svc.ready else _Grid(0.0, 1, 0)
            assert svc.skip_idle is not None
            svc.skip_idle(records, ticks, svc.ready)
        svc.period_start = svc.last = last_k * STAT_PERIOD_S

    def _wake_at(self, svc: _Service, k: int) -> None:
        """Wake a skipping service at an event after stat tick `k` and before tick k + 1."""
        self._wake(svc, k)
        if svc.next_k != k + 1:  # else the resume entry is that very tick
            svc.next_k = k + 1
            heapq.heappush(self.events, (svc.next_k * STAT_PERIOD_S, TICK, svc.index, 0))

    def _retry_waiting(self, t: float) -> None:
        """Capacity was freed at `t`: each service waiting for it retries its placement at its
        next decision tick, as its skipped tick would (during the stat tick of service i at
        t, those after i still tick at t). Its autoscaler is not needed for that: it would
        decide the same, so it is woken only if the placement starts a replica.

        A retry without room for one more replica starts nothing and changes nothing the
        replay reads later (the service's next decision places afresh), and room comes back
        only when a replica is removed, which schedules retries of its own for every service
        whose turn has not come. So the services retry in turn, by index (the order of their
        ticks at that instant), in a chain that ends once no pool has room for them."""
        k = math.floor(t / STAT_PERIOD_S)
        per = TICKS_PER_DECISION
        after = (k // per + 1) * per
        order = sorted(self.waiting)
        ticking = self.ticking
        if ticking is not None and ticking[0] == k and k % per == 0:
            split = bisect.bisect_right(order, ticking[1])
            self._chain(order[split:], k)
            order = order[:split]
        self._chain(order, after)

    def _chain(self, order: list[int], k: int) -> None:
        """Retries of the services `order` (ascending) at stat tick `k`, one after another."""
        if not order:
            return
        self.chain_id += 1
        demands = {self.services[index].model.demand for index in order}
        self.chains[self.chain_id] = (order, demands, [0])
        heapq.heappush(self.events, (k * STAT_PERIOD_S, TICK, order[0], self.chain_id))

    def _retry(self, svc: _Service, k: int, chain: int) -> None:
        """The placement retry of a waiting service's skipped decision tick `k`, then the next
        service's of its chain while there is room."""
        order, demands, at = self.chains[chain]
        if not any(self._room_for(demand) for demand in demands):
            del self.chains[chain]
            return
        if svc.steady is not None:  # else woken since: its own tick retries
            self.ticking = (k, svc.index)  # the retry is that service's tick k
            self._scale_to(svc, svc.desired, k * STAT_PERIOD_S)
            self.ticking = None
            if svc.state:  # placed: its ticks from k on are its own again
                self._wake_at(svc, k)
        at[0] += 1
        if at[0] < len(order) and any(self._room_for(demand) for demand in demands):
            heapq.heappush(self.events, (k * STAT_PERIOD_S, TICK, order[at[0]], chain))
        else:
            del self.chains[chain]

    def _quiet_ticks(self, svc: _Service, k: int, end_k: int) -> int:
        """After the decision at stat tick `k`: the next tick to run (k + 1 unless quiet)."""
        if svc.open or svc.pending_since:
            return k + 1 if svc.steady_until is None else self._steady_ticks(svc, k, end_k)
        if svc.quiet_until is None:
            return k + 1
        up = math.inf  # a starting replica's readiness ends the skip (ready changes)
        if svc.ready != len(svc.state):
            for rid, state in svc.state.items():
                if state == DRAINING:
                    return k + 1
                if state == STARTING:
                    up = min(up, self.ready_at[rid])
        limit = min(svc.quiet_until(self.clock0 + k * STAT_PERIOD_S, svc.ready), self.clock0 + up)
        if limit == math.inf:
            resume = end_k
        else:
            resume = max(k + 1, math.ceil((limit - self.clock0) / STAT_PERIOD_S) - 1)
            while self.clock0 + resume * STAT_PERIOD_S < limit:
                resume += 1
            resume = min(resume, end_k)
        if resume > k + 1:
            svc.skip_from = k + 1
        return max(resume, k + 1)

    def _steady_ticks(self, svc: _Service, k: int, end_k: int) -> int:
        """Like `_quiet_ticks`, for a service without replicas whose missing ones cannot be
        placed until capacity is freed, its requests (if any) all waiting: every stat is the
        same (the queue, no arrivals; nothing is recorded without one) until its next
        request, time-out or freed capacity wakes it. A service that measures use and RT
        measures nothing then (no replica, no answer)."""
        if (
            svc.ready
            or svc.state
            or not svc.pending_since
            or svc.blocked is None
            or svc.blocked[:2] != (self.freed, svc.desired)
            or svc.open != len(svc.queue)
            or (svc.measured and (svc.busy or svc.latencies))
        ):
            return k + 1
        assert svc.steady_until is not None
        concurrency = float(svc.open)
        limit = svc.steady_until(self.clock0 + k * STAT_PERIOD_S, 0, concurrency, 0.0)
        if limit == math.inf:
            resume = end_k  # woken there at the latest (past the end: by its time-outs)
        else:
            resume = max(k + 1, math.ceil((limit - self.clock0) / STAT_PERIOD_S) - 1)
            while self.clock0 + resume * STAT_PERIOD_S < limit:
                resume += 1
        if resume <= k + 1:
            return k + 1
        svc.skip_from = k + 1
        svc.steady = (concurrency, 0.0)
        self.waiting.add(svc.index)
        return resume

    # -- the replay ---------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> SimResult:
        """Replay the trace. `progress(t)` is called about every 1 % of the trace."""
        arrivals = self.trace.arrivals.tolist()
        owners = self.service_of.tolist()
        service_times = self.service_times.tolist()
        n = len(arrivals)
        latency = [math.nan] * n
        status = bytearray(n)  # 0 OK, 1 503, 2 504
        cold = bytearray(n)
        queued = bytearray(n)
        services = self.services
        clock0 = self.clock0
        events, in_flight = self.events, self.in_flight
        heappush, heappop = heapq.heappush, heapq.heappop
        inf = math.inf
        end = self.trace.duration
        end_k = math.floor(end / STAT_PERIOD_S) + 1  # the first stat tick after the end
        per = TICKS_PER_DECISION
        skip = self.skip
        report_every = max(end / 100.0, 60.0)
        next_report = report_every
        last_done = 0.0

        def pick(svc: _Service) -> int:
            """Least in-flight ready replica with a free slot, or -1."""
            free, state, cc = svc.free, svc.state, svc.cc
            while free:
                load, rid = free[0]
                if state.get(rid) != READY or in_flight[rid] != load:
                    heappop(free)
                    continue
                if cc and load >= cc:
                    return -1
                return rid
            return -1

        def dispatch(svc: _Service, req: int, rid: int, t: float) -> None:
            heappop(svc.free)
            in_flight[rid] += 1
            heappush(svc.free, (in_flight[rid], rid))
            if svc.measured:
                svc.busy_area += svc.busy * (t - svc.busy_last)
                svc.busy_last, svc.busy = t, svc.busy + 1
            done = t + service_times[req]
            deadline = arrivals[req] + svc.timeout
            if done > deadline:
                heappush(events, (deadline, DONE, req, -1 - rid))
            else:
                heappush(events, (done, DONE, req, rid))

        def drain_queue(svc: _Service, t: float) -> None:
            queue = svc.queue
            while queue:
                rid = pick(svc)
                if rid < 0:
                    return
                req = queue.popleft()
                queued[req] = 0
                dispatch(svc, req, rid, t)

        for svc in services:
            heappush(events, (STAT_PERIOD_S, TICK, svc.index, 0))

        i = 0
        while True:
            ta = arrivals[i] if i < n else inf
            if events and (events[0][0] < ta or (events[0][0] == ta and events[0][1] == TICK)):
                t, kind, a, b = heappop(events)
            elif i < n:
                t, kind, a, b = ta, 1, i, owners[i]
                i += 1
            else:
                break
            if progress is not None and t >= next_report:
                progress(min(t, end))
                next_report = t + report_every
            if kind == TICK:
                # -- a service's stat clock and decision clock ----------------------------
                svc = services[a]
                k = round(t / STAT_PERIOD_S)
                if b:
                    self._retry(svc, k, b)
                    continue
                if k != svc.next_k:
                    continue  # superseded: the service woke early
                if svc.skip_from is not None:
                    self._wake(svc, k - 1)
                if t > end and not svc.open:
                    continue  # done: no more ticks for this service
                self.ticking = (k, a)
                svc.area += svc.open * (t - svc.last)
                svc.last = t
                elapsed = max(t - svc.period_start, 1e-3)
                concurrency, rps = svc.area / elapsed, svc.count / elapsed
                if svc.poked:
                    rps, svc.poked = max(0.0, rps - 1.0), False
                svc.area, svc.count, svc.period_start = 0.0, 0, t
                if svc.measured:
                    self._measure(svc, clock0 + t, t, elapsed)
                if svc.ready or concurrency or rps:
                    svc.autoscaler.record(clock0 + t, concurrency, rps)
                next_k = k + 1
                if k % per == 0:
                    self._decide(svc, t)
                    drain_queue(svc, t)
                    if skip:
                        next_k = self._quiet_ticks(svc, k, end_k)
                svc.next_k = next_k
                heappush(events, (next_k * STAT_PERIOD_S, TICK, a, 0))
                self.ticking = None
            elif kind == 1:
                # -- a request arrives ----------------------------------------------------
                svc = services[b]
                if svc.skip_from is not None:
                    k = math.floor(t / STAT_PERIOD_S)
                    self._wake(svc, k)
                    if svc.next_k != k + 1:  # else the resume entry is that very tick
                        svc.next_k = k + 1
                        heappush(events, (svc.next_k * STAT_PERIOD_S, TICK, b, 0))
                svc.area += svc.open * (t - svc.last)
                svc.last = t
                first = svc.open == 0
                svc.open += 1
                svc.count += 1
                rid = -1 if svc.queue else pick(svc)
                if rid >= 0:
                    dispatch(svc, a, rid, t)
                    continue
                if first:
                    svc.autoscaler.record(clock0 + t, 1.0, 1.0)
                    svc.poked = True
                    if svc.autoscaler.poke(clock0 + t, 1.0) or svc.desired == 0:
                        self._decide(svc, t)
                in_path = svc.autoscaler.mode == PROXY
                cap = pending_cap(svc.cc, svc.ready, in_path, svc.model.pending_cap_default)
                if len(svc.queue) >= cap:
                    status[a] = 1
                    svc.open -= 1
                    last_done = max(last_done, t)
                else:
                    if svc.ready == 0:
                        cold[a] = 1
                        if svc.cold_began is None:
                            svc.cold_began = t
                    svc.queue.append(a)
                    queued[a] = 1
                    heappush(events, (arrivals[a] + svc.timeout, DEADLINE, a, b))
            elif kind == DONE:
                # -- a request ends (answered, or at its deadline) --------------------------
                rid = b if b >= 0 else -1 - b
                svc = services[self.owner[rid]]
                svc.area += svc.open * (t - svc.last)
                svc.last = t
                svc.open -= 1
                last_done = t
                if svc.measured:
                    svc.busy_area += svc.busy * (t - svc.busy_last)
                    svc.busy_last, svc.busy = t, svc.busy - 1
                    if b >= 0:
                        svc.latencies.append((t - arrivals[a], service_times[a]))
                if b >= 0:
                    latency[a] = t - arrivals[a]
                else:
                    status[a] = 2
                in_flight[rid] -= 1
                s = svc.state[rid]
                if s == READY:
                    heappush(svc.free, (in_flight[rid], rid))
                    if svc.queue:
                        drain_queue(svc, t)
                elif s == DRAINING and in_flight[rid] == 0:
                    self._remove(svc, rid, t)
                if len(svc.free) > 4 * svc.ready + 64:
                    svc.free[:] = [(in_flight[r], r) for r, s in svc.state.items() if s == READY]
                    heapq.heapify(svc.free)
            elif kind == UP:
                # -- a replica becomes ready -----------------------------------------------
                svc = services[self.owner[a]]
                if svc.skip_from is not None:  # the skip ran up to here at most (ready changes)
                    k = math.floor(t / STAT_PERIOD_S)
                    self._wake(svc, k)
                    if svc.next_k != k + 1:
                        svc.next_k = k + 1
                        heappush(events, (svc.next_k * STAT_PERIOD_S, TICK, svc.index, 0))
                if svc.state.get(a) == STARTING:
                    svc.state[a] = READY
                    svc.ready += 1
                    self.changes.append((t, 1, 0))
                    heappush(svc.free, (0, a))
                    if svc.cold_began is not None:
                        svc.cold_starts.append(t)
                        svc.cold_began = None
                    drain_queue(svc, t)
            elif queued[a]:
                # -- the oldest waiting request of a service times out ----------------------
                svc = services[b]
                if svc.skip_from is not None:
                    self._wake_at(svc, math.floor(t / STAT_PERIOD_S))
                svc.area += svc.open * (t - svc.last)
                svc.last = t
                svc.queue.popleft()
                queued[a] = 0
                status[a] = 2
                svc.open -= 1
                last_done = t
        return self._result(latency, status, cold, max(end, last_done))

    def _measure(self, svc: _Service, now: float, t: float, elapsed: float) -> None:
        """A stat period's RT samples and use for an autoscaler that scales on them, as the
        live loop hands them in. From the requests in service over the period: CPU at cores
        per request; memory as each ready replica's own plus bytes per request; GPU as the
        busy share (% per request, at most 100 % of each ready replica's GPU)."""
        svc.busy_area += svc.busy * (t - svc.busy_last)
        svc.busy_last = t
        if svc.latencies:
            svc.autoscaler.record_latency(now, svc.latencies)
            svc.latencies = []
        if svc.ready:
            model, busy = svc.model, svc.busy_area / elapsed
            usage = Measured(
                replicas=svc.ready,
                cpu_cores=busy * model.cores_per_request,
                memory_bytes=svc.ready * model.memory_per_replica + busy * model.memory_per_request,
                gpu_percent=min(busy * model.gpu_per_request, 100.0 * svc.ready),
                gpu_replicas=svc.ready,
            )
            svc.autoscaler.record_usage(now, usage)
        svc.busy_area = 0.0

    def _result(
        self, latency: list[float], status: bytearray, cold: bytearray, stop_at: float
    ) -> SimResult:
        for svc in self.services:
            for rid in list(svc.state):
                self.ledger.stop(str(rid), stop_at)
        usage: dict[str, Usage] = {}
        by_service: dict[str, dict[str, Usage]] = {}
        for key, value in self.ledger.usage(self.score_from, math.inf, stop_at).items():
            usage[key.pool] = usage.get(key.pool, Usage()) + value
            pools = by_service.setdefault(key.service, {})
            pools[key.pool] = pools.get(key.pool, Usage()) + value
        seconds = max(1, math.ceil(stop_at / STAT_PERIOD_S))
        ready, live = np.zeros(seconds + 1, dtype=np.int64), np.zeros(seconds + 1, dtype=np.int64)
        if self.changes:
            times, d_ready, d_live = (np.asarray(c) for c in zip(*self.changes, strict=True))
            slot = np.clip(np.ceil(times / STAT_PERIOD_S).astype(np.int64) - 1, 0, seconds)
            np.add.at(ready, slot, d_ready)
            np.add.at(live, slot, d_live)
        codes = np.array([OK, REJECTED, TIMED_OUT], dtype=np.int16)
        cold_counts = np.array(
            [sum(1 for t in s.cold_starts if t >= self.score_from) for s in self.services]
        )
        return SimResult(
            policy=self.policy,
            arrivals=self.trace.arrivals,
            latency=np.asarray(latency),
            status=codes[np.frombuffer(bytes(status), dtype=np.uint8)],
            cold=np.frombuffer(bytes(cold), dtype=np.uint8).astype(bool),
            cold_starts=int(cold_counts.sum()),
            ready=np.cumsum(ready)[:seconds],
            replicas=np.cumsum(live)[:seconds],
            usage=usage,
            duration=stop_at,
            services=tuple(m.name for m in self.models),
            service_of=self.service_of,
            service_cold_starts=cold_counts,
            service_max_replicas=np.array([s.max_live for s in self.services]),
            service_usage=by_service,
            score_from=self.score_from,
            note=policy_note(
                self.policy, self.models[0], self.prior_s, self.score_from, self.trace.duration
            ),
            service_times=self.service_times,
        )


def policy_note(
    policy: str, model: ServiceModel, prior_s: float, score_from: float, duration: float
) -> str:
    """Why a row may not show the policy as itself: predictive runs as the KPA (observer mode)
    while its history is shorter than `tidal.dev/min-history`."""
    if policy != "predictive":
        return ""
    settings = model.predictive
    if settings.mode in (OBSERVER, REACTIVE):
        return f"tidal.dev/mode={settings.mode}: ran as kpa"
    until = settings.min_history - prior_s  # replay time at which the history suffices
    if until <= score_from:
        return ""
    need = _human(settings.min_history)
    if until >= duration:
        # The history reaches what is needed at the end of the trace at the earliest.
        have = _human(prior_s + duration)
        return (
            f"observer (ran as kpa): {have} of history, {need} needed before it plans; "
            "give --warmup DAYS or --history FILE"
        )
    return (
        f"observer (ran as kpa) for the first {_human(until - score_from)} scored, "
        f"until it had {need} of history; a longer --warmup avoids it"
    )


def _human(seconds: float) -> str:
    hours = seconds / 3600.0
    return f"{hours / 24:.2f} d" if hours >= 72 else f"{hours:.1f} h"


def simulate(
    trace: Trace,
    service: ServiceModel | Sequence[ServiceModel],
    policies: tuple[str, ...],
    pools: tuple[Pool, ...],
    service_time: Distribution,
    startup: Distribution,
    seed: int = 0,
    progress: Callable[[str, float], None] | None = None,
    **options: Any,
) -> dict[str, SimResult]:
    """Replay `trace` once per policy, in this process, all with the same service and start-up
    times. `options` go to `Simulation` (skip, settings, prior_history, score_from)."""
    times = service_time.sample(len(trace), np.random.default_rng(seed), trace)
    results = {}
    for name in policies:
        sim = Simulation(trace, service, name, pools, times, startup, seed, **options)
        report = None if progress is None else (lambda t, name=name: progress(name, t))
        results[name] = sim.run(report)
    return results
