"""Discrete-event replay of a trace through tidal's own autoscaler and scheduler.

The simulated platform keeps the live one's rules (DESIGN.md, "the principle"):
- gateway/activator (tidal/gateway/activator.py): a request waits in a FIFO queue while no
  replica has a free slot; containerConcurrency (CC) is a hard per-replica limit (0 = none); the
  least-loaded replica is picked; past the pending cap (10 x CC x max(1, desired), or 10000 when
  CC = 0) a request gets 503 at once; a request still unanswered `timeoutSeconds` after it
  arrived gets 504 (waiting or in service, as the proxy's deadline does);
- scaling loop (tidal/controller/scaling.py): every 1 s the revision's time-weighted concurrency
  and request rate are recorded (not when it has no ready replica and no traffic); every 2 s the
  autoscaler ticks; the first request that finds no free replica while none is in flight pokes
  it (a stat of 1, and an immediate decision when at zero);
- workload (tidal/controller/workload.py): a replica serves after its pool's start-up delay plus
  a start-up time drawn from a distribution; scale-in drains (no new requests, stop when idle);
- scheduler (tidal/scheduler/placement.py): `place` picks each new replica's pool and the
  replicas to stop; CostLedger (tidal/scheduler/cost.py) prices replica- and GPU-seconds.
Time is simulated (seconds from the trace start); the autoscaler sees `start_epoch + t`. All
randomness is seeded, and every policy sees the same service and start-up times.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tidal.api.pools import Pool
from tidal.api.predictive import PredictiveAnnotations
from tidal.autoscaler.baselines import Autoscaler, make_autoscaler
from tidal.autoscaler.kpa import DeciderSpec
from tidal.scheduler.cost import CostLedger, Usage
from tidal.scheduler.placement import Demand, Placed, Request, place, tally
from tidal.sim.dists import Distribution
from tidal.sim.predictive import SimulatedPredictive
from tidal.sim.traces import Trace

STAT_PERIOD_S = 1.0
TICKS_PER_DECISION = 2
PENDING_CAP_DEFAULT = 10_000
STARTUP_SAMPLES = 4096
OK, REJECTED, TIMED_OUT = 0, 503, 504
PEAK_WINDOW_S = 10.0
POLICIES = ("kpa", "predictive", "hpa", "ray", "keepalive", "hybrid-histogram", "peak")
STARTING, READY, DRAINING = 0, 1, 2


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


@dataclass
class SimResult:
    """One policy's replay. Per request: latency (s; NaN unless served), status (0 served,
    503, 504) and whether it waited for a cold start. Per second: ready and live replicas."""

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


def peak_replicas(trace: Trace, service_times: np.ndarray, target: float) -> int:
    """Replicas for the busiest 10 s: offered concurrency (work arriving in the window / its
    length, Little's law) over the per-replica target."""
    if not len(trace):
        return 1
    windows = (trace.arrivals // PEAK_WINDOW_S).astype(np.int64)
    work = np.bincount(windows, weights=service_times)
    return max(1, math.ceil(float(work.max()) / PEAK_WINDOW_S / target - 1e-9))


def make_policy(
    name: str,
    service: ServiceModel,
    now: float,
    peak: int,
    ready_times: np.ndarray,
) -> Autoscaler | SimulatedPredictive:
    if name == "predictive":
        return SimulatedPredictive(
            service.spec, service.predictive, now, ready_times, service.progress_deadline_s
        )
    return make_autoscaler(
        name, service.spec, now, progress_deadline_s=service.progress_deadline_s, peak_replicas=peak
    )


class Simulation:
    """One policy over one trace. Build, then `run()`."""

    def __init__(
        self,
        trace: Trace,
        service: ServiceModel,
        policy: str,
        pools: tuple[Pool, ...],
        service_times: np.ndarray,
        startup: Distribution,
        seed: int = 0,
    ) -> None:
        self.trace = trace
        self.service = service
        self.policy = policy
        self.pools = pools
        self.pool_by_name = {pool.name: pool for pool in pools}
        self.service_times = service_times
        rng = np.random.default_rng(seed + 7)
        self.startup_samples = startup.sample(STARTUP_SAMPLES, rng).tolist()
        self.clock0 = trace.start_epoch
        peak = peak_replicas(trace, service_times, service.spec.target_value)
        self.autoscaler = make_policy(
            policy, service, self.clock0, peak, np.asarray(self.startup_samples)
        )
        self.ledger = CostLedger(pools)
        # Replicas: state, in-flight count, pool, start time, devices, by integer id.
        self.state: dict[int, int] = {}
        self.in_flight: list[int] = []
        self.pool_of: list[str] = []
        self.started: list[float] = []
        self.devices: list[tuple[str, ...]] = []
        self.ready_count = 0
        self.desired = 0
        self.pending_since: list[float] = []
        self.free: list[tuple[int, int]] = []  # (in-flight, replica) heap, stale entries lazily
        self.events: list[tuple[float, int, int, int]] = []  # (time, kind, a, b)
        self.cold_start_began: float | None = None
        self.cold_starts = 0

    # -- replicas -----------------------------------------------------------------------------

    def _start_replica(self, pool: str, devices: tuple[str, ...], t: float) -> None:
        rid = len(self.in_flight)
        self.in_flight.append(0)
        self.pool_of.append(pool)
        self.started.append(t)
        self.devices.append(devices)
        self.state[rid] = STARTING
        delay = self.pool_by_name[pool].startup_delay_s
        delay += self.startup_samples[rid % len(self.startup_samples)]
        self.ledger.start(str(rid), self.service.name, self.service.name, pool, len(devices), t)
        heapq.heappush(self.events, (t + delay, 1, rid, 0))

    def _stop_replica(self, rid: int, t: float) -> None:
        state = self.state.get(rid)
        if state == READY:
            self.ready_count -= 1
        if state == STARTING or self.in_flight[rid] == 0:
            del self.state[rid]
            self.ledger.stop(str(rid), t)
        else:
            self.state[rid] = DRAINING

    def _scale_to(self, count: int, t: float) -> None:
        """The workload's `scale_to`, with the scheduler choosing pools and victims."""
        self.desired = count
        placed = [
            Placed(
                str(rid),
                self.pool_of[rid],
                self.started[rid],
                self.devices[rid],
                ready=state == READY,
                terminating=state == DRAINING,
            )
            for rid, state in self.state.items()
        ]
        demand = self.service.demand
        usage = tally(self.pools, [(p, demand) for p in placed])
        request = Request(
            self.service.name, count, demand, placed, pending_since=self.pending_since
        )
        decision = place(request, self.pools, usage, t)
        for start in decision.start:
            self._start_replica(start.pool, start.devices, t)
        for rid in decision.stop:
            self._stop_replica(int(rid), t)
        self.pending_since = [p.since for p in decision.pending]

    def _decide(self, t: float) -> None:
        decision = self.autoscaler.tick(self.clock0 + t, self.ready_count, True)
        if decision.replicas is not None:
            self._scale_to(decision.replicas, t)
        elif self.pending_since:
            self._scale_to(self.desired, t)

    # -- the replay ---------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> SimResult:
        """Replay the trace. `progress(t)` is called about once a simulated minute."""
        arrivals = self.trace.arrivals.tolist()
        service_times = self.service_times.tolist()
        n = len(arrivals)
        latency = [math.nan] * n
        status = bytearray(n)  # 0 OK, 1 503, 2 504
        cold = bytearray(n)
        ready_series, live_series = array("i"), array("i")
        cc = self.service.container_concurrency
        timeout = self.service.timeout_s
        autoscaler = self.autoscaler
        clock0 = self.clock0
        events, free, in_flight, state = self.events, self.free, self.in_flight, self.state
        heappush, heappop = heapq.heappush, heapq.heappop
        queue: deque[int] = deque()
        inf = math.inf
        end = self.trace.duration

        # Gateway stats (tidal/gateway/stats.py) and the scaling loop's clock.
        open_requests = 0
        area = 0.0
        last = 0.0
        count = 0
        period_start = 0.0
        poked = False
        tick = 0
        next_tick = STAT_PERIOD_S

        def pick() -> int:
            """Least in-flight ready replica with a free slot, or -1."""
            while free:
                load, rid = free[0]
                if state.get(rid) != READY or in_flight[rid] != load:
                    heappop(free)
                    continue
                if cc and load >= cc:
                    return -1
                return rid
            return -1

        def dispatch(req: int, rid: int, t: float) -> None:
            heappop(free)
            in_flight[rid] += 1
            heappush(free, (in_flight[rid], rid))
            done = t + service_times[req]
            deadline = arrivals[req] + timeout
            if done > deadline:
                heappush(events, (deadline, 0, req, -1 - rid))
            else:
                heappush(events, (done, 0, req, rid))

        def drain_queue(t: float) -> None:
            while queue:
                rid = pick()
                if rid < 0:
                    return
                dispatch(queue.popleft(), rid, t)

        i = 0
        while True:
            ta = arrivals[i] if i < n else inf
            te = events[0][0] if events else inf
            tq = arrivals[queue[0]] + timeout if queue else inf
            if next_tick <= ta and next_tick <= te and next_tick <= tq:
                # -- the 1 s stat clock and the 2 s decision clock ------------------------
                t = next_tick
                if i >= n and not open_requests and t > end:
                    break
                area += open_requests * (t - last)
                last = t
                elapsed = max(t - period_start, 1e-3)
                concurrency, rps = area / elapsed, count / elapsed
                if poked:
                    rps, poked = max(0.0, rps - 1.0), False
                area, count, period_start = 0.0, 0, t
                if self.ready_count or concurrency or rps:
                    autoscaler.record(clock0 + t, concurrency, rps)
                tick += 1
                if tick % TICKS_PER_DECISION == 0:
                    self._decide(t)
                    drain_queue(t)
                ready_series.append(self.ready_count)
                live_series.append(len(state))
                next_tick = tick * STAT_PERIOD_S + STAT_PERIOD_S
                if progress is not None and tick % 60 == 0:
                    progress(t)
            elif ta <= te and ta <= tq:
                # -- a request arrives ----------------------------------------------------
                t = ta
                area += open_requests * (t - last)
                last = t
                first = open_requests == 0
                open_requests += 1
                count += 1
                rid = -1 if queue else pick()
                if rid >= 0:
                    dispatch(i, rid, t)
                else:
                    if first:
                        autoscaler.record(clock0 + t, 1.0, 1.0)
                        poked = True
                        if autoscaler.poke(clock0 + t, 1.0) or self.desired == 0:
                            self._decide(t)
                    cap = 10 * cc * max(1, self.desired) if cc else self.service.pending_cap_default
                    if len(queue) >= cap:
                        status[i] = 1
                        open_requests -= 1
                    else:
                        if self.ready_count == 0:
                            cold[i] = 1
                            if self.cold_start_began is None:
                                self.cold_start_began = t
                        queue.append(i)
                i += 1
            elif te <= tq:
                # -- a request ends, or a replica becomes ready ---------------------------
                t, kind, a, b = heappop(events)
                area += open_requests * (t - last)
                last = t
                if kind == 0:
                    rid = b if b >= 0 else -1 - b
                    open_requests -= 1
                    if b >= 0:
                        latency[a] = t - arrivals[a]
                    else:
                        status[a] = 2
                    in_flight[rid] -= 1
                    s = state[rid]
                    if s == READY:
                        heappush(free, (in_flight[rid], rid))
                        if queue:
                            drain_queue(t)
                    elif s == DRAINING and in_flight[rid] == 0:
                        del state[rid]
                        self.ledger.stop(str(rid), t)
                elif state.get(a) == STARTING:
                    state[a] = READY
                    self.ready_count += 1
                    heappush(free, (0, a))
                    if self.cold_start_began is not None:
                        self.cold_starts += 1
                        self.cold_start_began = None
                    drain_queue(t)
                if len(free) > 4 * self.ready_count + 64:
                    free[:] = [(in_flight[r], r) for r, s in state.items() if s == READY]
                    heapq.heapify(free)
            else:
                # -- the oldest waiting request times out ---------------------------------
                t = tq
                area += open_requests * (t - last)
                last = t
                status[queue.popleft()] = 2
                open_requests -= 1

        stop_at = max(end, last)
        for rid in list(state):
            self.ledger.stop(str(rid), stop_at)
        usage: dict[str, Usage] = {}
        for key, value in self.ledger.usage(0.0, math.inf, stop_at).items():
            usage[key.pool] = usage.get(key.pool, Usage()) + value
        codes = np.array([OK, REJECTED, TIMED_OUT], dtype=np.int16)
        return SimResult(
            policy=self.policy,
            arrivals=self.trace.arrivals,
            latency=np.asarray(latency),
            status=codes[np.frombuffer(bytes(status), dtype=np.uint8)],
            cold=np.frombuffer(bytes(cold), dtype=np.uint8).astype(bool),
            cold_starts=self.cold_starts,
            ready=np.asarray(ready_series),
            replicas=np.asarray(live_series),
            usage=usage,
            duration=stop_at,
        )


def simulate(
    trace: Trace,
    service: ServiceModel,
    policies: tuple[str, ...],
    pools: tuple[Pool, ...],
    service_time: Distribution,
    startup: Distribution,
    seed: int = 0,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, SimResult]:
    """Replay `trace` once per policy, all with the same service and start-up times."""
    times = service_time.sample(len(trace), np.random.default_rng(seed), trace)
    results = {}
    for name in policies:
        sim = Simulation(trace, service, name, pools, times, startup, seed)
        report = None if progress is None else (lambda t, name=name: progress(name, t))
        results[name] = sim.run(report)
    return results
