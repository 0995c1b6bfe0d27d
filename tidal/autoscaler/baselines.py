"""Baseline autoscalers, for comparison in the simulator and for services that ask for them.

Each has `RevisionAutoscaler`'s interface (tidal/autoscaler/kpa.py): `record(now, concurrency,
rps)` every second with revision totals, `poke(now, concurrency) -> bool` on a request at zero,
`tick(now, ready, reachable) -> Decision` every 2 s. Pure: time comes in as `now`.

- `hpa`: Kubernetes HPA on a measured metric, CPU by default (15 s sync, 10 % tolerance, scale-up
  limit max(+100 %, +4 pods) per sync, 300 s scale-down stabilisation, never below one replica).
- `ray`: Ray Serve's default policy.
- `keepalive`: one replica per needed slot, each kept 10 min after its last use (AWS Lambda's
  fixed keep-alive).
- `hybrid-histogram`: the Azure "Serverless in the Wild" keep-alive/pre-warm policy.
- `peak`: a fixed count, sized for the peak.
docs/simulator.md describes each and its sweep knob (the keyword arguments named in
`SETTINGS`).

For the simulator's event-skipping replay each has `quiet_until(now, ready)` (after a tick at
`now`, the time before which further idle ticks change nothing) and `skip_idle(records, ticks,
ready)` (the state those idle seconds would leave); `RevisionAutoscaler` has the same pair. The
steady pair `steady_until(now, ready, concurrency, rps)` and `skip_steady(records, ticks, ready,
concurrency, rps)` does the same for seconds without a ready replica that all record the same
stats (requests queued for a replica that cannot be placed), or none at all.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction

import numpy as np

from tidal.api.autoscaling import AHPA, CONCURRENCY, CPU, GPU, HPA, KPA, MEMORY, PREDICTIVE, RPS
from tidal.autoscaler.clocks import STAT_PERIOD_S
from tidal.autoscaler.kpa import (
    ACTIVE,
    INACTIVE,
    PROXY,
    SERVE,
    TICK_INTERVAL,
    DeciderSpec,
    Decision,
    RevisionAutoscaler,
)
from tidal.autoscaler.metrics import MaxTimeWindow
from tidal.autoscaler.signals import MetricFeed, MetricTarget, Usage

RAY_CLASS = "ray.tidal.dev"
KEEPALIVE_CLASS = "keepalive.tidal.dev"
HYBRID_CLASS = "hybrid-histogram.tidal.dev"
PEAK_CLASS = "peak.tidal.dev"


def _firings(
    ticks: Sequence[float], last: float, interval: float, span: float = 0.0
) -> list[float]:
    """When a clock fires among `ticks[:-1]` (the last tick runs for real) that fires on the
    first tick at least `interval` after it last fired (at `last`): its firings from `span`
    before its final one, in order; none when it does not fire. After its first firing it
    fires every so many ticks, as long as the ticks' differences are exact."""
    end = len(ticks) - 1
    k = _next_firing(ticks, last, interval, 0, end)
    if k == end:
        return []
    stride = _next_firing(ticks, ticks[k], interval, k + 1, end) - k
    if _exact_differences(ticks[k], ticks[end - 1]):
        final = k + (end - 1 - k) // stride * stride
        first = final
        while first - stride >= k and ticks[first - stride] >= ticks[final] - span:
            first -= stride
        return [ticks[i] for i in range(first, final + 1, stride)]
    fired = [ticks[k]]
    while k + stride < end:
        k += stride
        fired.append(ticks[k])
        stride = _next_firing(ticks, ticks[k], interval, k + 1, end) - k
    return [t for t in fired if t >= fired[-1] - span]


def _next_firing(ticks: Sequence[float], last: float, interval: float, lo: int, end: int) -> int:
    """The first index in [lo, end) whose tick is at least `interval` after `last`; `end` when
    none is."""
    k = bisect_left(ticks, last + interval - 1.0, lo, end)
    while k < end and ticks[k] - last < interval:
        k += 1
    return k


def _exact_differences(low: float, high: float) -> bool:
    """Whether times `clock0 + k` (k whole) from `low` to `high` differ by exactly their k's
    difference: all on one binade's grid finer than 1 s, or all whole seconds."""
    if not 0 < low <= high < 2.0**52:
        return False
    return math.frexp(low)[1] == math.frexp(high)[1] or (low.is_integer() and high.is_integer())


class _Baseline:
    """Bounds, the replica count last applied, and the Decision a tick returns."""

    def __init__(self, spec: DeciderSpec, initial: int) -> None:
        self.spec = spec
        self.low = spec.min_scale
        self.high = spec.max_scale or math.inf
        self.initial = initial
        self.replicas: int | None = None  # last applied; None before the first tick
        self._latest = 0.0  # highest concurrency recorded since the last tick
        self._idle_tick = False  # the last tick saw no load

    def record(self, now: float, concurrency: float, rps: float) -> None:
        self._latest = max(self._latest, concurrency)

    def poke(self, now: float, concurrency: float) -> bool:
        """Decide at once when at zero and a request came (Ray Serve: "from zero ...
        immediately")."""
        return self.replicas == 0 and concurrency != 0

    @property
    def mode(self) -> str:
        """The SKS mode: Serve while replicas are wanted, else Proxy (the activator's)."""
        return SERVE if self.replicas else PROXY

    def _clamp(self, want: int) -> int:
        return int(min(max(want, self.low), self.high))

    def _apply(self, want: int, raw: int, reason: str, value: float) -> Decision:
        want = self._clamp(want)
        replicas = None if want == self.replicas else want
        self.replicas = want
        self._idle_tick = self._latest == 0  # this tick saw no load: idle ticks repeat it
        self._latest = 0.0
        return Decision(
            replicas=replicas,
            desired_raw=raw,
            ebc=-1.0,
            in_panic=False,
            active=ACTIVE if want else INACTIVE,
            reason=reason,
            stable_value=value,
            panic_value=0.0,
            mode=self.mode,
        )

    def _need(self, concurrency: float) -> int:
        return math.ceil(concurrency / self.spec.target_value - 1e-9)

    def _settled(self) -> bool:
        """The last tick saw no load and nothing was recorded since: idle ticks repeat it."""
        return self.replicas is not None and self._idle_tick and self._latest == 0

    def skip_idle(self, records: Sequence[float], ticks: Sequence[float], ready: int) -> None:
        """Idle records only keep `_latest` at 0; the last of identical ticks stands for all."""
        if ticks:
            self.tick(ticks[-1], ready)

    def steady_until(self, now: float, ready: int, concurrency: float, rps: float) -> float:
        """Right after a tick at `now`, with no replica ready: the time before which further
        ticks change nothing, provided `concurrency` and `rps` are recorded every second (or,
        both 0, nothing is). `now` when unsure."""
        return now

    def skip_steady(
        self,
        records: Sequence[float],
        ticks: Sequence[float],
        ready: int,
        concurrency: float,
        rps: float,
    ) -> None:
        """The state that the same stats at `records` and ticks at `ticks` (all before
        `steady_until`) leave. Here a record only raises `_latest` and the ticks all compute
        the same thing: the last record before the last tick, that tick, and the last record
        after it stand for all."""
        split = bisect_right(records, ticks[-1]) if ticks else len(records)
        if split:
            self.record(records[split - 1], concurrency, rps)
        if ticks:
            self.tick(ticks[-1], ready)
        if split < len(records):
            self.record(records[-1], concurrency, rps)

    def _held_until(self, window: MaxTimeWindow, need: int) -> float:
        """With `need` recorded in `window` at every tick: when its maximum next changes."""
        return window.expires_at() if window.current() > need else math.inf


class HPAAutoscaler(_Baseline):
    """Kubernetes HPA (`replica_calculator.go`, `normalizeDesiredReplicasWithBehaviors`) on a
    measured metric (tidal/autoscaler/signals.py): each sync, `desired = ceil(ready x observed /
    target)` from the mean of the samples since the last sync, held within a 10 % tolerance;
    scale-up takes the least recommendation of its stabilization window (default 0 s) and at most
    max(+100 %, +4 pods) per sync, scale-down the greatest of its window (default 300 s); never
    below one replica. Knative's `window` annotation sets both windows.

    Without a feed (the simulator's `hpa` baseline) it scales on CPU: each request in service
    burns `cores_per_request`, each replica requests `total_value x cores_per_request` and the
    target is `target_utilization` of that, so a queue does not show as CPU."""

    SYNC_S = 15.0
    TOLERANCE = 0.1
    DOWN_STABILIZATION_S = 300.0

    def __init__(
        self,
        spec: DeciderSpec,
        target_utilization: float = 0.8,
        down_stabilization_s: float = DOWN_STABILIZATION_S,
        up_stabilization_s: float = 0.0,
        sync_s: float = SYNC_S,
        feed: MetricFeed | None = None,
        cores_per_request: float = 1.0,
    ) -> None:
        super().__init__(spec, max(1, spec.min_scale, spec.initial_scale))
        self.low = max(1, self.low)
        self.target_utilization = target_utilization
        self.down_stabilization_s = down_stabilization_s
        self.up_stabilization_s = up_stabilization_s
        self.sync_s = sync_s
        per_replica = spec.total_value * cores_per_request * target_utilization
        self.feed = feed or MetricFeed(MetricTarget(CPU, per_replica), sync_s)
        self._samples: deque[tuple[float, float, int]] = deque()  # (t, value, measured)
        self._recommendations: deque[tuple[float, int]] = deque()
        self._last_sync = -math.inf
        self._ready = 0
        self._reason = "waiting for the first sync"  # the last sync's, until the next

    def record_usage(self, now: float, usage: Usage) -> None:
        self.feed.record_usage(usage)

    def record_latency(self, now: float, samples: Sequence[tuple[float, float]]) -> None:
        self.feed.record_latency(now, samples)

    def record(self, now: float, concurrency: float, rps: float) -> None:
        value, measured = self.feed.value(now, concurrency, self._ready)
        self._samples.append((now, value, measured))

    def poke(self, now: float, concurrency: float) -> bool:
        return False

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        self._ready = ready
        current = self.initial if self.replicas is None else self.replicas
        while self._samples and self._samples[0][0] <= now - self.sync_s:
            self._samples.popleft()
        measured = [(v, m) for _, v, m in self._samples if m]
        if now - self._last_sync < self.sync_s or not ready or not measured:
            reason = self._reason if measured else self.feed.describe()
            return self._apply(current, -1, reason, 0.0)
        self._last_sync = now
        value = sum(v for v, _ in measured) / len(measured)
        pods = sum(m for _, m in measured) / len(measured)
        ratio = value / pods
        wanted = current if abs(ratio - 1.0) <= self.TOLERANCE else math.ceil(value - 1e-9)
        wanted = self._clamp(wanted)
        self._recommendations.append((now, wanted))
        keep = max(self.down_stabilization_s, self.up_stabilization_s)
        while self._recommendations[0][0] < now - keep:
            self._recommendations.popleft()
        up = min(r for t, r in self._recommendations if t >= now - self.up_stabilization_s)
        down = max(r for t, r in self._recommendations if t >= now - self.down_stabilization_s)
        desired = max(current, up) if up > current else current
        desired = min(desired, down) if desired > down else desired
        desired = min(desired, max(2 * current, current + 4))
        self._reason = self._sync_reason(ratio, desired)
        return self._apply(desired, wanted, self._reason, value)

    def _sync_reason(self, ratio: float, desired: int) -> str:
        return f"{ratio:.0%} of target -> {desired}; {self.feed.describe()}"

    def quiet_until(self, now: float, ready: int) -> float:
        """At its floor with nothing measured in the samples and floor-level recommendations,
        every idle sync recommends the floor again. Otherwise, on a metric an idle replica
        measures as 0, ticks before the next sync only drop old samples, which the last tick
        of a skip does for all: until the next sync, half a stat period early (so that the
        sync never is the last tick of a skip whatever the clock's rounding)."""
        if self.replicas is None or not ready:
            return now
        settled = (
            self.replicas == self.low
            and all(v == 0 for _, v, _ in self._samples)
            and all(r == self.low for _, r in self._recommendations)
        )
        if settled:
            return math.inf
        if (
            self.feed.target.metric not in (CPU, GPU, CONCURRENCY, RPS)
            or self.feed.target.per_replica <= 0
        ):
            return now
        j = 1
        while now + j * TICK_INTERVAL - self._last_sync < self.sync_s:
            j += 1
        return now + j * TICK_INTERVAL - STAT_PERIOD_S / 2

    def steady_until(self, now: float, ready: int, concurrency: float, rps: float) -> float:
        """Without a ready replica there is no sync and a resource metric measures nothing:
        every tick holds the count, until a replica is ready."""
        resource = self.feed.target.metric in (CPU, MEMORY, GPU) and self.feed.usage is None
        return math.inf if not ready and resource and self.replicas is not None else now

    def skip_steady(
        self,
        records: Sequence[float],
        ticks: Sequence[float],
        ready: int,
        concurrency: float,
        rps: float,
    ) -> None:
        """The records (unmeasured samples) a sync old or less at the last tick, that tick,
        then the records after it: the ticks before drop only what it drops too."""
        split = bisect_right(records, ticks[-1]) if ticks else 0
        if ticks:
            begin = bisect_right(records, ticks[-1] - self.sync_s, 0, split)
            for j in range(begin, split):
                self.record(records[j], concurrency, rps)
            self.tick(ticks[-1], ready)
        for j in range(split, len(records)):
            self.record(records[j], concurrency, rps)

    def skip_idle(self, records: Sequence[float], ticks: Sequence[float], ready: int) -> None:
        """Zero samples for the last sync period, the syncs among the ticks before the last
        (only when settled: each recommends the floor) as they leave the clock, the
        recommendations and the reason, then the last tick itself."""
        # Older zeros would be gone: the last tick drops samples more than a sync old.
        tail = [records[j] for j in range(max(0, len(records) - 20), len(records))]
        # The replicas each zero counts as measured: a resource metric counts those ready
        # (`ready` throughout), the others those the last tick saw (this skip's from its first).
        target = self.feed.target
        resource = target.metric in (CPU, MEMORY, GPU)
        before, after = (ready, ready) if resource else (self._ready, ready)
        if target.per_replica <= 0:
            before = after = 0
        elif tail and resource:
            self.feed.observed = 0.0  # as an idle second's use leaves it
        first = ticks[0] if ticks else math.inf
        if ticks:
            keep = max(self.down_stabilization_s, self.up_stabilization_s)
            fired = _firings(ticks, self._last_sync, self.sync_s, keep)
            if fired:
                self._last_sync = last = fired[-1]
                recommendations = self._recommendations
                while recommendations and recommendations[0][0] < last - keep:
                    recommendations.popleft()
                recommendations.extend((t, self.low) for t in fired)
                self._reason = self._sync_reason(0.0, self.low)
        if ticks:
            self._samples.extend(
                (t, 0.0, before if t <= first else after) for t in tail if t <= ticks[-1]
            )
            self.tick(ticks[-1], ready)
            tail = [t for t in tail if t > ticks[-1]]
        self._samples.extend((t, 0.0, before if t <= first else after) for t in tail)


class RayServeAutoscaler(_Baseline):
    """Ray Serve's default policy : replicas report ongoing requests every 10 s, averaged
    over a 30 s look-back; `desired = ceil(n * (1 + (err - 1) * factor))` with
    `err = total / (target * n)`; a change applies after 30 s (up) / 600 s (down) of decisions in
    the same direction; from zero with requests queued, one replica at once. The target is the
    revision's per-pod target, as the KPA uses."""

    METRICS_INTERVAL_S = 10.0
    LOOK_BACK_S = 30.0
    UPSCALE_DELAY_S = 30.0
    DOWNSCALE_DELAY_S = 600.0
    FACTOR = 1.0

    def __init__(
        self,
        spec: DeciderSpec,
        upscale_delay_s: float = UPSCALE_DELAY_S,
        downscale_delay_s: float = DOWNSCALE_DELAY_S,
    ) -> None:
        super().__init__(spec, spec.min_scale)
        self.upscale_delay_s = upscale_delay_s
        self.downscale_delay_s = downscale_delay_s
        self._samples: deque[tuple[float, float]] = deque()
        self._reported = 0.0
        self._reported_at = -math.inf
        self._counter = 0

    def record(self, now: float, concurrency: float, rps: float) -> None:
        super().record(now, concurrency, rps)
        self._samples.append((now, concurrency))

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        if self.replicas is None:
            return self._apply(self.initial, self.initial, "initial replicas", 0.0)
        if now - self._reported_at >= self.METRICS_INTERVAL_S:
            while self._samples and self._samples[0][0] <= now - self.LOOK_BACK_S:
                self._samples.popleft()
            values = [c for _, c in self._samples]
            self._reported = sum(values) / len(values) if values else 0.0
            self._reported_at = now
        n = self.replicas
        if n == 0:
            if self._latest > 0:
                self._counter = 0
                return self._apply(max(math.ceil(self.FACTOR), 1), 1, "from zero", self._latest)
            return self._apply(0, 0, "idle at zero", 0.0)
        total = self._reported
        desired = self._desired(total, n)
        decision = n
        if desired > n:
            self._counter = max(self._counter, 0) + 1
            if self._counter > int(self.upscale_delay_s / TICK_INTERVAL):
                self._counter, decision = 0, desired
        elif desired < n:
            self._counter = min(self._counter, 0) - 1
            if self._counter < -int(self.downscale_delay_s / TICK_INTERVAL):
                self._counter, decision = 0, desired
        else:
            self._counter = 0
        return self._apply(decision, desired, f"ongoing {total:.2f} -> {desired}", total)

    def _desired(self, total: float, n: int) -> int:
        err = total / (self.spec.target_value * n)
        desired = math.ceil(n * (1 + (err - 1) * self.FACTOR) - 1e-9)
        if desired == n and math.ceil(n * err - 1e-9) < n:
            desired -= 1
        return self._clamp(desired)

    def quiet_until(self, now: float, ready: int) -> float:
        """At zero with nothing but zeros in the look-back, idle ticks only move the 10 s
        report clock. With replicas, an idle tick records zeros and moves the up/down counter
        one step towards the count the last report asks for: until the next report (never,
        when the look-back and the report are all zeros: reports stay 0) or the counter
        trips. Half a stat period early, so that the tick at that time is never the last of a
        skip (its decision would be lost) whatever the clock's rounding."""
        n = self.replicas
        if n is None:
            return now
        zeros = all(c == 0 for _, c in self._samples)
        if n == 0:
            return math.inf if zeros and self._settled() else now
        return self._report_or_trip(now, n, zeros and self._reported == 0, STAT_PERIOD_S / 2)

    def _report_or_trip(self, now: float, n: int, reports_stand: bool, early: float) -> float:
        """`early` before the next report (never when `reports_stand`: each repeats the last)
        or the tick at which the up/down counter trips, every tick moving it one step towards
        the count the last report asks for (`now` plus a tick when it trips at once)."""
        step = TICK_INTERVAL
        limit = math.inf
        if not reports_stand:
            j = 1
            while now + j * step - self._reported_at < self.METRICS_INTERVAL_S:
                j += 1
            limit = now + j * step - early
        desired, counter = self._desired(self._reported, n), self._counter
        if desired > n:
            trips = int(self.upscale_delay_s / step) + 1 - max(counter, 0)
        elif desired < n:
            trips = int(self.downscale_delay_s / step) + 1 + min(counter, 0)
        else:
            return limit
        return min(limit, now + max(trips, 1) * step - early)

    def _count(self, n: int, steps: int) -> None:
        """`steps` ticks at `n` replicas that do not trip: each moves the up/down counter one
        step towards the count the last report asks for."""
        desired = self._desired(self._reported, n)
        if desired > n:
            self._counter = max(self._counter, 0) + steps
        elif desired < n:
            self._counter = min(self._counter, 0) - steps
        else:
            self._counter = 0

    def _last_report(self, ticks: Sequence[float]) -> float:
        """When the last report among `ticks[:-1]` happens (the report clock as the ticks move
        it; `_reported_at` when none does)."""
        fired = _firings(ticks, self._reported_at, self.METRICS_INTERVAL_S)
        return fired[-1] if fired else self._reported_at

    def skip_idle(self, records: Sequence[float], ticks: Sequence[float], ready: int) -> None:
        """The counter moved by the ticks before the last (the count `quiet_until` saw asked
        for throughout), the report clock moved (a report among them averages zeros: 0), the
        zeros recorded since the last report's look-back, then the last tick and the zeros
        recorded after it."""
        if not ticks:
            self._samples.extend((t, 0.0) for t in records)
            return
        n, steps = self.replicas, len(ticks) - 1
        if n and steps:
            self._count(n, steps)
        split = bisect_right(records, ticks[-1])
        begin = 0
        last = self._last_report(ticks)
        if last != self._reported_at:
            cut = last - self.LOOK_BACK_S
            while self._samples and self._samples[0][0] <= cut:
                self._samples.popleft()
            self._reported, self._reported_at = 0.0, last
            begin = bisect_right(records, cut, 0, split)
        self._samples.extend((records[j], 0.0) for j in range(begin, split))
        self.tick(ticks[-1], ready)
        self._samples.extend((records[j], 0.0) for j in range(split, len(records)))

    def steady_until(self, now: float, ready: int, concurrency: float, rps: float) -> float:
        """With replicas wanted and none ready: until the next report the report stands, and
        from it a constant desired count moves the up/down counter one step a tick; the count
        changes when the counter trips. A report changes nothing when the look-back holds only
        the recorded value (integral, so its mean is exact), or, with nothing recorded, nothing
        and the last report was 0."""
        n = self.replicas
        if ready or not n:
            return now
        value = concurrency if concurrency > 0 else None
        settled = self._reported == concurrency and (
            all(c == value for _, c in self._samples) and float(concurrency).is_integer()
        )
        return self._report_or_trip(now, n, settled, 0.0)

    def skip_steady(
        self,
        records: Sequence[float],
        ticks: Sequence[float],
        ready: int,
        concurrency: float,
        rps: float,
    ) -> None:
        """The counter moved by the ticks before the last, the report clock and the look-back
        as they leave it (a report repeats the last one), then the last tick and the records
        after it."""
        split = bisect_right(records, ticks[-1]) if ticks else len(records)
        cut = -math.inf
        if len(ticks) > 1:
            self._count(self.replicas or 0, len(ticks) - 1)
            last = self._last_report(ticks)
            if last != self._reported_at:
                cut = last - self.LOOK_BACK_S
                while self._samples and self._samples[0][0] <= cut:
                    self._samples.popleft()
                self._reported_at = last
        for j in range(bisect_right(records, cut, 0, split), split):
            self.record(records[j], concurrency, rps)
        if ticks:
            self.tick(ticks[-1], ready)
        for j in range(split, len(records)):
            self.record(records[j], concurrency, rps)


class KeepAliveAutoscaler(_Baseline):
    """Fixed keep-alive: as many replicas as the concurrency needs at once (target per pod), each
    kept `keep_alive_s` after it was last needed (AWS Lambda: 10 min)."""

    def __init__(self, spec: DeciderSpec, keep_alive_s: float = 600.0) -> None:
        super().__init__(spec, spec.min_scale)
        self.keep_alive_s = keep_alive_s
        self._window = MaxTimeWindow(keep_alive_s, TICK_INTERVAL)

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        need = self._need(self._latest)
        self._window.record(now, need)
        return self._apply(self._window.current(), need, f"needs {need}", self._latest)

    def quiet_until(self, now: float, ready: int) -> float:
        """Idle ticks record a need of 0, which keeps the count until the longest-kept
        replica's time is up (whether or not the tick at `now` saw load: the window's last
        zero stands for the zeros before it, so the last tick of a skip stands for all)."""
        return self._window.expires_at() if self.replicas is not None else now

    def steady_until(self, now: float, ready: int, concurrency: float, rps: float) -> float:
        """Each tick records the same need: the count holds until the kept maximum above it
        leaves the window (never, when the need is the maximum)."""
        if ready or self.replicas is None:
            return now
        need = self._need(concurrency)
        if self._clamp(max(self._window.current(), need)) != self.replicas:
            return now
        return self._held_until(self._window, need)


class HybridHistogramAutoscaler(_Baseline):
    """Azure's hybrid histogram policy (Shahrad et al., ATC 2020), parameters and branch
    rules as in dslab's `hybrid_histogram.rs`: idle times (last request's end to the next
    arrival, at 1 s resolution) go into a 4 h histogram of 1 min bins.
    - out-of-bounds rate >= 0.5: predict the next idle time (an AR(1) fit, in place of ARIMA)
      and keep one replica warm in [0.85, 1.15] x the prediction;
    - bin-count CV < 2 (not yet representative): keep one replica for the whole 4 h range;
    - otherwise unload at once, pre-warm at p5 x 0.9 and keep until p99 x 1.1 after the idle
      start.
    Replicas beyond the first follow the load, kept for the stable window (not covered by the
    paper, whose model is one instance per application)."""

    RANGE_S = 4 * 3600.0
    BIN_S = 60.0
    CV_THRESHOLD = 2.0
    OOB_THRESHOLD = 0.5
    ARIMA_MARGIN = 0.15
    HISTOGRAM_MARGIN = 0.10
    HEAD, TAIL = 0.05, 0.99

    def __init__(self, spec: DeciderSpec, head: float = HEAD, tail: float = TAIL) -> None:
        super().__init__(spec, spec.min_scale)
        self.head, self.tail = head, tail
        self._bins = np.zeros(round(self.RANGE_S / self.BIN_S), dtype=np.int64)
        self._cumulative = np.zeros_like(self._bins)  # counts up to and including each bin
        self._total = 0  # of the bins
        self._squares = 0  # sum of the bins' squares
        self._oob = 0
        self._offsets: tuple[float, float] | None = None  # _windows' (begin, length), cached
        self._idle_times: list[float] = []
        self._idle_since: float | None = None
        self._warm = (0.0, 0.0)  # one replica is kept warm in [begin, end)
        self._extra = MaxTimeWindow(spec.stable_window, TICK_INTERVAL)

    def record(self, now: float, concurrency: float, rps: float) -> None:
        super().record(now, concurrency, rps)
        if concurrency > 0 and self._idle_since is not None:
            self._add_idle_time(now - self._idle_since)
            self._idle_since = None
        elif concurrency == 0 and self._idle_since is None and self.replicas:
            self._idle_since = now
            self._warm = self._windows(now)

    def _add_idle_time(self, seconds: float) -> None:
        self._idle_times.append(seconds)
        self._offsets = None
        index = int(seconds // self.BIN_S)
        if index < len(self._bins):
            count = int(self._bins[index])
            self._bins[index] = count + 1
            self._cumulative[index:] += 1
            self._total += 1
            self._squares += 2 * count + 1
        else:
            self._oob += 1

    def _windows(self, idle_start: float) -> tuple[float, float]:
        """[pre-warm, end of keep-alive) after an idle period starts (dslab `prewarm_window`,
        `keepalive_window`)."""
        if self._offsets is None:
            self._offsets = self._window_offsets()
        prewarm, length = self._offsets
        begin = idle_start + prewarm
        return begin, begin + length

    def _window_offsets(self) -> tuple[float, float]:
        """The warm window's start after the idle start and its length, from the histogram
        (or the idle times' forecast)."""
        total = self._total
        if self._oob and self._oob / (self._oob + total) >= self.OOB_THRESHOLD:
            guess = self._predict_idle()
            return guess * (1 - self.ARIMA_MARGIN), guess * self.ARIMA_MARGIN * 2
        if self._cv_below_threshold(total):
            return 0.0, self.RANGE_S
        head, tail = self._percentile_bin(self.head), self._percentile_bin(self.tail)
        prewarm = head * self.BIN_S * (1 - self.HISTOGRAM_MARGIN)
        keep = (tail + 1) * self.BIN_S * (1 + self.HISTOGRAM_MARGIN)
        return prewarm, keep

    def _cv_below_threshold(self, total: int) -> bool:
        """Whether the bin counts' coefficient of variation (sample std / mean) is under
        CV_THRESHOLD. Decided from exact integer sums (cv^2 = n (n S2 - T^2) / ((n - 1) T^2)),
        unless so close to the threshold that only the float computation can say."""
        if not total:
            return self.CV_THRESHOLD > 0.0
        n = len(self._bins)
        limit = Fraction(self.CV_THRESHOLD) ** 2
        num = n * (n * self._squares - total * total) * limit.denominator
        den = (n - 1) * total * total * limit.numerator
        if abs(num - den) * 10**9 > den:
            return num < den
        return float(self._bins.std(ddof=1) / (total / n)) < self.CV_THRESHOLD

    def _percentile_bin(self, q: float) -> int:
        """The first bin whose cumulative share (count / total, as a float) reaches `q`: the
        first holding the least count whose share does."""
        total = self._total
        least = max(0, math.ceil(q * total))
        while least > 0 and (least - 1) / total >= q:
            least -= 1
        while least / total < q:
            least += 1
        return int(self._cumulative.searchsorted(least))

    def _predict_idle(self) -> float:
        """One-step AR(1) forecast fitted by least squares to the idle times."""
        x = np.asarray(self._idle_times[-200:])
        if len(x) < 3:
            return float(x[-1])
        mean = x.mean()
        a, b = x[:-1] - mean, x[1:] - mean
        phi = float(np.clip(a @ b / max(a @ a, 1e-12), -1.0, 1.0))
        return max(0.0, mean + phi * (x[-1] - mean))

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        need = self._need(self._latest)
        self._extra.record(now, need)
        held = self._extra.current()
        begin, end = self._warm
        warm = 1 if begin <= now < end else 0
        want = max(need, warm, held if held > 1 else 0)
        reason = f"needs {need}; warm window [{begin:.0f}, {end:.0f})"
        return self._apply(want, need, reason, self._latest)

    def quiet_until(self, now: float, ready: int) -> float:
        """Idle ticks need 0: the count holds until the warm window opens or closes, or the
        extra replicas' stable window is up, provided the first idle tick keeps it (the tick at
        `now` may have seen load). With a replica ready and no idle period begun, the next
        second's zero begins one, with windows from then. That second and the next tick are
        foreseen as `now` plus a stat period and a tick, so those windows' bounds are kept
        half a stat period clear of the ticks (whatever the clock's rounding): a bound before
        the first idle tick is passed at it, a later one ends the skip half a period early."""
        if self.replicas is None:
            return now
        held = self._extra.current()
        if ready and self._idle_since is None:
            if not self.replicas:
                return now
            first, early = now + TICK_INTERVAL, STAT_PERIOD_S / 2
            begin, end = self._windows(now + STAT_PERIOD_S)
            warm = 1 if begin <= first < end else 0
            limits = [t - early for t in (begin, end) if t > first - early]
        else:
            begin, end = self._warm
            warm = 1 if begin <= now < end else 0
            limits = [t for t in self._warm if t > now]
        if self._clamp(max(warm, held if held > 1 else 0)) != self.replicas:
            return now
        if held > 1:
            limits.append(self._extra.expires_at())
        return min(limits, default=math.inf)

    def skip_idle(self, records: Sequence[float], ticks: Sequence[float], ready: int) -> None:
        """The first idle record (it may begin an idle period; the rest change nothing), then
        the last tick, which stands for all."""
        if records:
            self.record(records[0], 0.0, 0.0)
        super().skip_idle(records, ticks, ready)

    def steady_until(self, now: float, ready: int, concurrency: float, rps: float) -> float:
        """Each tick sees the same need: the count holds until the warm window opens or
        closes or the extra replicas' maximum above the need leaves its window. Requests must
        not end an idle period on their first record (that changes the histogram)."""
        if ready or self.replicas is None or (concurrency > 0 and self._idle_since is not None):
            return now
        need = self._need(concurrency)
        held = max(self._extra.current(), need)
        begin, end = self._warm
        warm = 1 if begin <= now < end else 0
        if self._clamp(max(need, warm, held if held > 1 else 0)) != self.replicas:
            return now
        limits = [t for t in self._warm if t > now]
        return min([self._held_until(self._extra, need), *limits])


class PeakAutoscaler(_Baseline):
    """Always on at peak: a fixed count (the simulator sizes it from the trace's peak)."""

    def __init__(self, spec: DeciderSpec, replicas: int) -> None:
        super().__init__(spec, replicas)
        self.low = self.high = replicas

    def poke(self, now: float, concurrency: float) -> bool:
        return False

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        return self._apply(self.initial, self.initial, f"fixed at {self.initial}", self._latest)

    def quiet_until(self, now: float, ready: int) -> float:
        """Every tick decides the same count: the last of a skip stands for all."""
        return math.inf if self.replicas is not None else now

    def steady_until(self, now: float, ready: int, concurrency: float, rps: float) -> float:
        return math.inf if self.replicas is not None else now


Autoscaler = (
    RevisionAutoscaler
    | HPAAutoscaler
    | RayServeAutoscaler
    | KeepAliveAutoscaler
    | HybridHistogramAutoscaler
    | PeakAutoscaler
)

BASELINES: dict[str, Callable[..., Autoscaler]] = {
    "hpa": HPAAutoscaler,
    "ray": RayServeAutoscaler,
    "keepalive": KeepAliveAutoscaler,
    "hybrid-histogram": HybridHistogramAutoscaler,
    "peak": PeakAutoscaler,
}
# The keyword settings (knobs) each baseline takes, in seconds or fractions.
SETTINGS: dict[str, tuple[str, ...]] = {
    "hpa": ("target_utilization", "down_stabilization_s"),
    "ray": ("upscale_delay_s", "downscale_delay_s"),
    "keepalive": ("keep_alive_s",),
    "hybrid-histogram": ("head", "tail"),
}
CLASS_POLICIES = {
    KPA: "kpa",
    PREDICTIVE: "predictive",
    AHPA: "predictive",
    HPA: "hpa",
    RAY_CLASS: "ray",
    KEEPALIVE_CLASS: "keepalive",
    HYBRID_CLASS: "hybrid-histogram",
    PEAK_CLASS: "peak",
}


def policy_for_class(autoscaler_class: str) -> str:
    """The policy name for an `autoscaling.knative.dev/class` value."""
    try:
        return CLASS_POLICIES[autoscaler_class]
    except KeyError:
        known = ", ".join(sorted(CLASS_POLICIES))
        message = f"unknown autoscaler class {autoscaler_class!r} (known: {known})"
        raise ValueError(message) from None


def make_autoscaler(
    name: str,
    spec: DeciderSpec,
    now: float,
    ready: int = 0,
    progress_deadline_s: float = 600.0,
    peak_replicas: int | None = None,
    settings: Mapping[str, float] | None = None,
) -> Autoscaler:
    """An autoscaler by policy name: `kpa` or one of BASELINES. `peak` runs `peak_replicas`
    (default: max-scale, else min-scale, else 1). `settings` are a baseline's keyword
    arguments (its knobs, e.g. `keep_alive_s`). `predictive` is built by its own module."""
    if name == "kpa":
        return RevisionAutoscaler(spec, now, ready, progress_deadline_s=progress_deadline_s)
    if name == "peak":
        return PeakAutoscaler(spec, peak_replicas or spec.max_scale or spec.min_scale or 1)
    if name not in BASELINES:
        known = ", ".join(["kpa", *BASELINES])
        raise ValueError(f"unknown autoscaler {name!r} (known: {known})")
    unknown = set(settings or {}) - set(SETTINGS.get(name, ()))
    if unknown:
        accepted = ", ".join(SETTINGS.get(name, ())) or "none"
        raise ValueError(f"{name} has no setting {', '.join(sorted(unknown))} (has: {accepted})")
    return BASELINES[name](spec, **(settings or {}))
