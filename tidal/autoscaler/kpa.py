"""Knative's KPA, ported (docs/autoscaling.md): the decider spec
(docs/autoscaling.md#per-revision-settings), the `Scale()` decider
(docs/autoscaling.md#the-scale-decision), the multiscaler's bookkeeping
(docs/autoscaling.md#ticks-and-pokes) and the KPA reconciler's bounds, scale-to-zero state machine
and SKS mode (docs/autoscaling.md#bounds-and-scale-to-zero).

Pure: no clock, no I/O. `now` is float seconds from the caller (wall or simulated).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress
from operator import attrgetter, neg, sub

from tidal.api.autoscaling import RPS, TARGET_MIN, AutoscalerConfig, AutoscalingAnnotations
from tidal.autoscaler.metrics import (
    BUCKET_SIZE,
    ROUND_SCALE,
    MaxTimeWindow,
    TimedFloat64Buckets,
    WeightedFloat64Buckets,
    new_buckets,
    round_precision,
)

TICK_INTERVAL = 2.0  # docs/autoscaling.md#cluster-defaults decider tick
# docs/autoscaling.md#bounds-and-scale-to-zero progress deadline + 30 s
ACTIVATION_TIMEOUT_BUFFER = 30.0

ACTIVE = "Active"
ACTIVATING = "Activating"
INACTIVE = "Inactive"
SERVE = "Serve"
PROXY = "Proxy"


@dataclass(frozen=True)
class DeciderSpec:
    """Per-revision autoscaling parameters (docs/autoscaling.md#per-revision-settings). Durations in
    seconds."""

    scaling_metric: str  # "concurrency" | "rps"
    target_value: float  # per-pod target: max(0.01, total x utilisation)
    total_value: float  # per-pod capacity used for EBC
    stable_window: float
    panic_window: float
    panic_threshold: float  # ratio, 2.0 = 200 %
    target_burst_capacity: float
    scale_down_delay: float
    activation_scale: int
    max_scale_up_rate: float
    max_scale_down_rate: float
    activator_capacity: float
    initial_scale: int
    min_scale: int
    max_scale: int  # 0 = unbounded
    enable_scale_to_zero: bool
    scale_to_zero_grace_period: float
    scale_to_zero_pod_retention_period: float
    aggregation_algorithm: str


def _pick(annotation: float | None, default: float) -> float:
    return default if annotation is None else annotation


def _panic_window(stable_window: float, percentage: float) -> float:
    """`MakeMetric`: stable x pct/100 rounded to a second (half away from zero), at least 1 s."""
    ns = int(round(stable_window * 1e9) * percentage / 100.0)
    seconds = (ns + 500_000_000) // 1_000_000_000
    return float(max(seconds, BUCKET_SIZE))


def decider_spec(
    config: AutoscalerConfig, ann: AutoscalingAnnotations, container_concurrency: int
) -> DeciderSpec:
    """Resolve annotations over cluster defaults (`MakeDecider`, `ResolveMetricTarget`,
    docs/autoscaling.md#per-revision-settings)."""
    metric = RPS if ann.metric == RPS else "concurrency"
    if metric == RPS:
        total, utilisation = config.requests_per_second_target_default, config.target_utilization
    else:
        total = float(container_concurrency or config.container_concurrency_target_default)
        utilisation = config.container_concurrency_target_fraction
    if ann.target is not None:
        total = ann.target
        if metric != RPS and container_concurrency:
            total = min(ann.target, float(container_concurrency))
    if ann.target_utilization_percentage is not None:
        utilisation = ann.target_utilization_percentage / 100.0
    stable = _pick(ann.window, config.stable_window)
    initial = config.initial_scale
    if ann.initial_scale is not None and (ann.initial_scale or config.allow_zero_initial_scale):
        initial = ann.initial_scale
    return DeciderSpec(
        scaling_metric=metric,
        target_value=max(TARGET_MIN, total * utilisation),
        total_value=total,
        stable_window=stable,
        panic_window=_panic_window(
            stable, _pick(ann.panic_window_percentage, config.panic_window_percentage)
        ),
        panic_threshold=_pick(ann.panic_threshold_percentage, config.panic_threshold_percentage)
        / 100.0,
        target_burst_capacity=_pick(ann.target_burst_capacity, config.target_burst_capacity),
        scale_down_delay=_pick(ann.scale_down_delay, config.scale_down_delay),
        activation_scale=ann.activation_scale or 0,
        max_scale_up_rate=config.max_scale_up_rate,
        max_scale_down_rate=config.max_scale_down_rate,
        activator_capacity=config.activator_capacity,
        initial_scale=initial,
        min_scale=int(_pick(ann.min_scale, config.min_scale)),
        max_scale=int(_pick(ann.max_scale, config.max_scale)),
        enable_scale_to_zero=config.enable_scale_to_zero,
        scale_to_zero_grace_period=config.scale_to_zero_grace_period,
        scale_to_zero_pod_retention_period=_pick(
            ann.scale_to_zero_pod_retention_period, config.scale_to_zero_pod_retention_period
        ),
        aggregation_algorithm=ann.metric_aggregation_algorithm,
    )


@dataclass(frozen=True)
class ScaleResult:
    """One `Scale()` outcome. `desired` is -1 and `valid` False when there is no data."""

    desired: int
    ebc: float
    valid: bool
    stable_value: float = 0.0
    panic_value: float = 0.0
    in_panic: bool = False


class Decider:
    """Knative's per-revision `autoscaler` with its metric collection (docs/autoscaling.md#metrics,
    docs/autoscaling.md#the-scale-decision)."""

    def __init__(self, spec: DeciderSpec, now: float, ready: int = 0) -> None:
        self.spec = spec
        # Knative's collector also keeps the windows of the metric the decider does not scale
        # on; nothing reads them, so only the scaling metric's are kept (half the work).
        self._stable = new_buckets(spec.stable_window, spec.aggregation_algorithm)
        self._panic = new_buckets(spec.panic_window, spec.aggregation_algorithm)
        self._windows = {spec.scaling_metric: (self._stable, self._panic)}
        self._scales_rps = spec.scaling_metric == RPS
        # Start in panic when more than one pod is ready, holding the current scale
        # (docs/autoscaling.md#the-scale-decision).
        self._panic_time: float | None = now if ready > 1 else None
        self._max_panic_pods = ready
        self._delay = (
            MaxTimeWindow(spec.scale_down_delay, TICK_INTERVAL)
            if spec.scale_down_delay > 0
            else None
        )

    @property
    def in_panic(self) -> bool:
        return self._panic_time is not None

    def record(self, now: float, concurrency: float, rps: float) -> None:
        """Add revision totals into the current 1 s bucket of the windows (`collection.record`,
        docs/autoscaling.md#metrics). Values recorded in the same second sum."""
        value = rps if self._scales_rps else concurrency
        self._stable.record(now, value)
        self._panic.record(now, value)

    def scale(self, now: float, ready_pods: int, reachable: bool = True) -> ScaleResult:
        """Knative's `Scale()` (docs/autoscaling.md#the-scale-decision)."""
        return ScaleResult(*self.scale_values(now, ready_pods, reachable))

    def scale_values(
        self, now: float, ready_pods: int, reachable: bool = True
    ) -> tuple[int, float, bool, float, float, bool]:
        """`scale` as the plain tuple of `ScaleResult`'s fields (a tick does not need the
        object)."""
        spec = self.spec
        stable_buckets, panic_buckets = self._stable, self._panic
        # No data (docs/autoscaling.md#metrics): nothing written for a window, unless TBC=-1 (no
        # scrape target).
        if stable_buckets.is_empty(now) and spec.target_burst_capacity != -1:
            return -1, 0.0, False, 0.0, 0.0, self._panic_time is not None
        observed_stable = stable_buckets.window_average(now)
        observed_panic = panic_buckets.window_average(now)

        ready = max(1.0, float(ready_pods))
        max_up = math.ceil(spec.max_scale_up_rate * ready)
        max_down = math.floor(ready / spec.max_scale_down_rate) if reachable else 0
        target = spec.target_value
        dspc = math.ceil(observed_stable / target)
        dppc = math.ceil(observed_panic / target)
        stable_pods = min(max(dspc, max_down), max_up)
        panic_pods = min(max(dppc, max_down), max_up)
        if spec.activation_scale > 1:
            if dspc > 0:
                stable_pods = max(stable_pods, spec.activation_scale)
            if dppc > 0:
                panic_pods = max(panic_pods, spec.activation_scale)

        if dppc / ready >= spec.panic_threshold:
            self._panic_time = now  # enter or extend panic
        elif self._panic_time is not None and self._panic_time + spec.stable_window < now:
            self._panic_time = None
            self._max_panic_pods = 0

        desired = stable_pods
        if self._panic_time is not None:
            # Never scale down while panicking.
            self._max_panic_pods = max(self._max_panic_pods, stable_pods, panic_pods)
            desired = self._max_panic_pods

        if reachable and self._delay is not None:
            self._delay.record(now, desired)
            desired = self._delay.current()

        ebc = self._excess_burst_capacity(ready_pods, observed_panic)
        return desired, ebc, True, observed_stable, observed_panic, self._panic_time is not None

    def _excess_burst_capacity(self, ready_pods: int, observed_panic: float) -> float:
        """EBC = floor(ready x TotalValue - TBC - panic); 0 if TBC=0; -1 if TBC=-1
        (docs/autoscaling.md#the-scale-decision)."""
        tbc = self.spec.target_burst_capacity
        if tbc == 0:
            return 0.0
        if tbc > 0:
            return float(math.floor(ready_pods * self.spec.total_value - tbc - observed_panic))
        return -1.0


@dataclass(frozen=True)
class Decision:
    """What one `RevisionAutoscaler.tick` decided.

    `replicas` is the count to apply now (None: leave as is). `desired_raw` is the decider's
    output this tick (-1 when it had no data). `mode` is the SKS mode: "Serve" (activator out
    of the path) or "Proxy" (requests go through the activator). `ahead` is how many of the
    replicas in force are held ahead of demand (the predictive autoscaler's, beyond what the
    KPA and the bounds would run): the scheduler gives them room last and takes it back for
    requests that wait (tidal/scheduler/placement.py)."""

    replicas: int | None
    desired_raw: int
    ebc: float
    in_panic: bool
    active: str
    reason: str
    stable_value: float
    panic_value: float
    mode: str
    ahead: int = 0


# What `RevisionAutoscaler._reconcile` may change (its trial step restores them).
_RECONCILER_FIELDS = (
    "_replicas",
    "mode",
    "_proxy_since",
    "active",
    "_active_reason",
    "_active_since",
    "_initialized",
)
_reconciler_state = attrgetter(*_RECONCILER_FIELDS)


class RevisionAutoscaler:
    """One revision's KPA: the decider, the multiscaler status and the KPA reconciler (bounds,
    initial scale, scale-to-zero, Active condition, SKS mode; docs/autoscaling.md#ticks-and-pokes,
    docs/autoscaling.md#bounds-and-scale-to-zero).

    Feed it with `record` (every 1 s while the revision has ready pods, zeros included, like the
    scraper; and for every activator stat), call `tick` every 2 s, and call `poke` on an activator
    stat: when it returns True, tick at once.
    """

    def __init__(
        self,
        spec: DeciderSpec,
        now: float,
        ready: int = 0,
        reachable: bool = True,
        progress_deadline_s: float = 600.0,
        initialized: bool = False,
    ) -> None:
        """`ready` pods at creation (> 1 starts the decider in panic). `initialized` is for a
        restart: the revision already runs at `ready` replicas and its PA was initialised, so
        no initial scale is applied (Knative keeps this in the PA status)."""
        self.spec = spec
        self.reachable = reachable
        self.decider = Decider(spec, now, ready)
        self.activation_timeout = progress_deadline_s + ACTIVATION_TIMEOUT_BUFFER
        # Multiscaler status of a new decider (docs/autoscaling.md#ticks-and-pokes).
        self.desired_scale = -1
        tbc = spec.target_burst_capacity
        self.ebc = (
            tbc if tbc in (-1, 0) else float(int(spec.initial_scale * spec.total_value - tbc))
        )
        # PA `Active` condition: a new PA is Activating ("Queued"); one restored at zero is
        # Inactive.
        self._initialized = initialized
        self.active, self._active_reason = (
            (INACTIVE, "NoTraffic") if initialized and ready == 0 else (ACTIVATING, "Queued")
        )
        self._active_since = now
        # Replicas last applied; a new revision's first tick applies initial_scale.
        self._replicas: int | None = ready if ready > 0 or initialized else None
        # The SKS starts in Proxy mode: the activator is in the path from creation.
        self.mode = PROXY
        self._proxy_since: float | None = now
        # (now, ready, reachable, the windows' write counts) of the last step: a step with the
        # same key would have the decider decide the same and leave it as it is.
        self._stepped: tuple[float, int, bool, int, int] | None = None

    def record(self, now: float, concurrency: float, rps: float) -> None:
        """Record revision-total concurrency and requests/s for the second containing `now`."""
        self.decider.record(now, concurrency, rps)

    def poke(self, now: float, concurrency: float) -> bool:
        """Multiscaler `Poke` (docs/autoscaling.md#ticks-and-pokes): True when the last desired
        scale is 0 and a stat with concurrency arrives, i.e. the caller should tick now (scale from
        zero)."""
        return self.desired_scale == 0 and concurrency != 0

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        """One decider tick followed by one KPA reconcile."""
        replicas, desired_raw, in_panic, reason, stable_value, panic_value = self._step(
            now, ready, reachable
        )
        return Decision(
            replicas=replicas,
            desired_raw=desired_raw,
            ebc=self.ebc,
            in_panic=in_panic,
            active=self.active,
            reason=reason,
            stable_value=stable_value,
            panic_value=panic_value,
            mode=self.mode,
        )

    def tick_replicas(self, now: float, ready: int, reachable: bool = True) -> int | None:
        """`tick` for a caller that reads only its `replicas` (the simulator): the same step,
        without building the `Decision`."""
        return self._step(now, ready, reachable)[0]

    def _step(
        self, now: float, ready: int, reachable: bool
    ) -> tuple[int | None, int, bool, str, float, float]:
        """`tick`'s work; returns the fields of its `Decision` that are not attributes."""
        self.reachable = reachable
        decider = self.decider
        desired_raw, ebc, valid, stable_value, panic_value, in_panic = decider.scale_values(
            now, ready, reachable
        )
        if valid:
            self.desired_scale = desired_raw
            self.ebc = ebc
        self._stepped = (now, ready, reachable, decider._stable.writes, decider._panic.writes)
        replicas, reason = self._reconcile(now, ready, reachable)
        return replicas, desired_raw, in_panic, reason, stable_value, panic_value

    def _reconcile(self, now: float, ready: int, reachable: bool) -> tuple[int | None, str]:
        """The KPA reconciler's part of a step, from the multiscaler status: the replicas to
        apply (None: as they are) and why."""
        want, apply, reason = self._scale(now, reachable)
        current = self.spec.initial_scale if self._replicas is None else self._replicas
        replicas = None
        if apply and want != current:
            replicas = want
        elif self._replicas is None:
            replicas = self.spec.initial_scale  # the deployment is created with initialScale
        if replicas is not None:
            self._replicas = replicas

        self.mode = SERVE if want > 0 and self.ebc >= 0 else PROXY
        # The activator backs the revision in Proxy mode or when no pod is ready (SKS).
        if self.mode == SERVE and ready > 0:
            self._proxy_since = None
        elif self._proxy_since is None:
            self._proxy_since = now
        self._update_active(now, want, ready, reachable)
        return replicas, reason

    # -- idle skipping (the simulator's event-skipping replay; docs/simulator.md) --------------

    def quiet_until(self, now: float, ready: int) -> float:
        """Right after a tick at `now`: the time before which further ticks would change nothing
        that `skip_idle` does not reproduce, provided the revision stays idle (zero recorded
        every second while `ready` > 0, nothing recorded at zero). `now` when unsure."""
        decider = self.decider
        if self._replicas is None or decider._delay is not None:
            return now
        limit = math.inf
        if decider._panic_time is not None:
            # With the inputs unchanged (bounded below), a tick either re-triggers panic (its
            # time is the tick's, as the last tick of a skip sets it) or holds the panic's
            # count until a stable window after the last trigger.
            limit = decider._panic_time + self.spec.stable_window
        windows = decider._windows[self.spec.scaling_metric]
        for buckets in windows:
            if buckets.is_empty(now) or not any(buckets.buckets):
                continue  # empty or all zeros: the average stays 0
            if isinstance(buckets, WeightedFloat64Buckets):
                return now  # the weights move as the window slides
            limit = min(limit, self._inputs_change(ready) if ready else self._unwritten_change(now))
            break
        return self._at_rest_until(now, ready, limit)

    def _at_rest_until(self, now: float, ready: int, limit: float) -> float:
        """`limit`, or sooner the next timer of the state machine (activation timeout, stable
        window, scale-to-zero grace and retention); `now` if it may still be moving (one step
        per tick, e.g. Activating -> Active -> Serve mode): it ticks again at `now` and keeps
        the state only if nothing moved."""
        decider = self.decider
        key = (now, ready, self.reachable, decider._stable.writes, decider._panic.writes)
        if decider._delay is None and key == self._stepped:
            # Right after a step with these inputs, the decider's part of a step at `now`
            # decides the same and keeps its state (the panic time is `now` or stays, the panic
            # maximum stays), and the status it feeds the reconciler is already in place: only
            # the reconciler may move.
            state = _reconciler_state(self)
            moved = self._reconcile(now, ready, self.reachable)[0] is not None
            if moved or _reconciler_state(self) != state:
                for name, value in zip(_RECONCILER_FIELDS, state, strict=True):
                    setattr(self, name, value)
                return now
        else:
            mine, its = dict(vars(self)), dict(vars(decider))
            moved = self._step(now, ready, self.reachable)[0] is not None
            self._stepped = mine["_stepped"]  # a record of the last step, not a state
            if moved or vars(self) != mine or vars(decider) != its:
                self.__dict__.update(mine)
                decider.__dict__.update(its)
                return now
        since, spec = self._active_since, self.spec
        if self.active == ACTIVATING:
            # It times out once strictly past the timeout: the tick at the timeout still waits.
            thresholds = [math.nextafter(since + self.activation_timeout, math.inf)]
        elif self.active == ACTIVE:
            thresholds = [since + spec.stable_window]
        else:
            grace = spec.scale_to_zero_grace_period
            retention = spec.scale_to_zero_pod_retention_period
            thresholds = [since + max(grace, retention), since + retention]
            if self._proxy_since is not None:
                thresholds.append(self._proxy_since + grace)
        return min([limit, *(t for t in thresholds if t > now)])

    def _unwritten_change(self, now: float) -> float:
        """With nothing recorded from now on (no replica ready, no traffic): the first second
        after `now` at which what a tick decides from differs from now: whether the stable
        window has data at all, the stable and panic pods (the panic trigger follows the panic
        pods) and the sign of the excess burst capacity. The averages are those
        `window_average` reads as the window slides on unwritten: the buckets that leave it
        taken off the total one by one, over the buckets still in it. That count shrinks, so an
        average may rise as well as fall: every second is looked at, until a whole window past
        the last write (then the stable window has no data, or with TBC -1 only zeros)."""
        spec = self.spec
        stable, panic = self.decider._stable, self.decider._panic
        if stable.first_write is None or panic.first_write is None:
            return now
        if stable.granularity != 1.0 or panic.granularity != 1.0:
            return now
        series = []  # per window: last write, its second, size, window, valid span, totals
        for buckets in (stable, panic):
            ring, size, last = buckets.buckets, len(buckets.buckets), buckets.last_write
            second = int(last)
            cut = (second + 1) % size  # the oldest bucket: the first to leave
            leaving = (ring[cut:] + ring[:cut])[: size - 1]
            totals = list(accumulate(leaving, sub, initial=buckets.window_total))
            span = int((last - buckets.first_write) // 1.0) + 1
            series.append((last, second, size, buckets.window, span, totals))
        stable_series, panic_series = series
        last_s, window_s = stable_series[0], stable_series[3]
        target, tbc = spec.target_value, spec.target_burst_capacity
        base = 0 * spec.total_value - tbc  # the excess burst capacity's, with no pod ready
        floor, ceil = math.floor, math.ceil

        def average(
            b: int, last: float, second: int, size: int, window: float, span: int, totals: list
        ) -> float:
            """What `window_average` reads in second `b` of a window unwritten since `last`."""
            at = float(b) - last  # `b`: the bucket `window_average` truncates a tick in it to
            if at <= 0:
                return round_precision(totals[0] / min(span, size))
            if at < window:
                gone = b - second
                return round_precision(totals[gone] / min(span, size - gone))
            return 0.0

        def inputs(b: int) -> tuple[int, int, bool] | None:
            if float(b) - last_s > window_s and tbc != -1:
                return None  # no data
            pods = ceil(average(b, *stable_series) / target)
            x = average(b, *panic_series)
            return pods, ceil(x / target), (floor(base - x) if tbc > 0 else tbc) >= 0

        start = floor(now)
        now_inputs = inputs(start)
        end = max(stable_series[1] + stable_series[2], panic_series[1] + panic_series[2])
        for b in range(start + 1, end + 2):
            if inputs(b) != now_inputs:
                return float(b)
        return math.inf

    def _inputs_change(self, ready: int) -> float:
        """With a zero recorded every second from now on: the first second at which what a
        tick decides from (desired pods from the stable and panic averages, the panic trigger,
        the sign of the excess burst capacity) differs from now. The stable pods depend on the
        stable window alone, the rest on the panic window alone, so each window's first change
        is found on its own (the panic window's first: it is short, and bounds the stable
        window's search)."""
        spec = self.spec
        stable, panic = self.decider._stable, self.decider._panic
        step = stable.granularity
        last = int(stable.last_write // step)
        horizon = len(stable.buckets)
        target, tbc = spec.target_value, spec.target_burst_capacity
        ceil = math.ceil
        if tbc > 0:
            base, floor = ready * spec.total_value - tbc, math.floor

            def panic_inputs(observed: float) -> tuple[int, bool]:
                return ceil(observed / target), floor(base - observed) >= 0

        else:  # the excess burst capacity is the constant TBC: its sign never changes

            def panic_inputs(observed: float) -> tuple[int, bool]:
                return ceil(observed / target), False

        j = _first_change(panic, last, horizon, panic_inputs)
        j = _first_change(stable, last, j - 1, lambda observed: ceil(observed / target))
        return math.inf if j > horizon else (last + j) * step

    def steady_until(self, now: float, ready: int, concurrency: float, rps: float) -> float:
        """Right after a record and a tick at `now`: the time before which further ticks would
        change nothing that `skip_steady` does not reproduce, provided `concurrency` and `rps`
        are recorded every second from now on (e.g. requests queued for a replica that cannot
        be placed), or nothing at all when both are 0 and no replica is ready (then it is
        `quiet_until`'s answer). Looks at most one stable window ahead; `now` when unsure."""
        decider = self.decider
        if self._replicas is None or decider._delay is not None:
            return now
        if not (ready or concurrency or rps):
            return self.quiet_until(now, ready)  # nothing is recorded: idle at zero
        spec = self.spec
        stable, panic = decider._stable, decider._panic
        step = stable.granularity
        second = int(now // step)
        for buckets in (stable, panic):
            if (
                isinstance(buckets, WeightedFloat64Buckets)
                or buckets.first_write is None
                or int(buckets.last_write // buckets.granularity) != second
            ):
                return now
        value = concurrency if spec.scaling_metric != RPS else rps
        horizon = len(stable.buckets)
        assert stable.first_write is not None and panic.first_write is not None
        ring_s, size_s, total_s = stable.buckets, len(stable.buckets), stable.window_total
        ring_p, size_p, total_p = panic.buckets, len(panic.buckets), panic.window_total
        first_s = int(stable.first_write // step)
        first_p = int(panic.first_write // panic.granularity)
        target, threshold = spec.target_value, spec.panic_threshold
        tbc = spec.target_burst_capacity
        ready_f = max(1.0, float(ready))
        base = ready * spec.total_value - tbc
        floor, ceil, scale = math.floor, math.ceil, ROUND_SCALE

        # What a tick decides from, after j more records of `value`: desired pods from the
        # stable and panic averages, the panic trigger (a function of the panic pods) and the
        # sign of the excess burst capacity. The window totals are updated as `record` leaves
        # them; the first j at which an input differs ends the steady span.
        observed_stable = round_precision(total_s / min(second - first_s + 1, size_s))
        observed_panic = round_precision(total_p / min(second - first_p + 1, size_p))
        dspc = ceil(observed_stable / target)
        dppc = ceil(observed_panic / target)
        ebc_ok = (floor(base - observed_panic) if tbc > 0 else tbc) >= 0
        now_inputs = (dspc, dppc, dppc / ready_f >= threshold, ebc_ok)
        limit = (second + horizon) * step
        # With both spans full, each input is a monotone function of a window's total (the
        # averages divide by a constant, rounding and ceil keep the order), so when the least
        # and the greatest total to come give the inputs of now, every total between does.
        steady = False
        if second - first_s + 1 >= size_s and second - first_p + 1 >= size_p:
            steady = True
            for ring, total, size, pods in (
                (ring_s, total_s, size_s, dspc),
                (ring_p, total_p, size_p, dppc),
            ):
                totals = _totals_after(ring, second, total, value, horizon)
                for bound in (min(totals), max(totals)):
                    x = round_precision(bound / size)
                    if ceil(x / target) != pods or (
                        ring is ring_p and tbc > 0 and (floor(base - x) >= 0) != ebc_ok
                    ):
                        steady = False
        for j in range(1, 1 if steady else horizon + 1):
            total_s = (total_s - (ring_s[(second + j) % size_s] if j <= size_s else value)) + value
            total_p = (total_p - (ring_p[(second + j) % size_p] if j <= size_p else value)) + value
            at = second + j
            x = total_s / min(at - first_s + 1, size_s)
            x = floor(x * scale + 0.5) / scale if x > 0.0 else round_precision(x)
            if ceil(x / target) != dspc:
                limit = at * step
                break
            x = total_p / min(at - first_p + 1, size_p)
            x = floor(x * scale + 0.5) / scale if x > 0.0 else round_precision(x)
            if ceil(x / target) != dppc:  # the panic trigger follows the panic pods
                limit = at * step
                break
            if tbc > 0 and (floor(base - x) >= 0) != ebc_ok:
                limit = at * step
                break
        if decider._panic_time is not None and not now_inputs[2]:
            limit = min(limit, decider._panic_time + spec.stable_window)
        # As in `quiet_until`: the state machine must be at rest at `now`.
        return max(now, self._at_rest_until(now, ready, limit))

    def skip_steady(
        self,
        records: Sequence[float],
        ticks: Sequence[float],
        ready: int,
        concurrency: float,
        rps: float,
    ) -> None:
        """Bring the state to what `concurrency` and `rps` recorded at `records` and ticks at
        `ticks` (all before `steady_until`) would leave: the records one by one, then the last
        tick for all ticks (they all compute the same thing)."""
        values = {"concurrency": concurrency, RPS: rps}
        split = len(records)
        if ticks:
            split = bisect_right(records, ticks[-1])  # the records are in time order
        self._record_span(records, 0, split, values)
        if ticks:
            self.tick(ticks[-1], ready)
        self._record_span(records, split, len(records), values)

    def _record_span(
        self, records: Sequence[float], begin: int, end: int, values: dict[str, float]
    ) -> None:
        """Every window records its metric's value at `records[begin:end]`."""
        times = [records[i] for i in range(begin, end)]  # read once for all windows
        for metric, windows in self.decider._windows.items():
            for buckets in windows:
                _record_each(buckets, times, 0, len(times), values[metric])

    def fill_idle(self, t: float) -> None:
        """Record the zeros of every second up to `t` at once (see `record_idle`)."""
        for windows in self.decider._windows.values():
            for buckets in windows:
                buckets.record_idle(t)

    def skip_idle(self, records: Sequence[float], ticks: Sequence[float], ready: int) -> None:
        """Bring the state to what idle stats at `records` and ticks at `ticks` (all before
        `quiet_until`) would leave: those ticks all compute the same thing, so the last one
        stands for them."""
        if ticks:
            if ready:
                self.fill_idle(ticks[-1])
            self.tick(ticks[-1], ready)
        if ready and records and (not ticks or records[-1] > ticks[-1]):
            self.fill_idle(records[-1])

    def _min_scale(self, reachable: bool) -> int:
        """min-scale is ignored when the revision is unreachable
        (docs/autoscaling.md#bounds-and-scale-to-zero)."""
        return self.spec.min_scale if reachable else 0

    def _scale(self, now: float, reachable: bool) -> tuple[int, bool, str]:
        """`scaler.scale`: bounds and initial scale, then scale-to-zero. Returns
        (want, apply, reason); want -1 means unknown."""
        desired = self.desired_scale
        if desired < 0 and self.active != ACTIVATING:
            return desired, False, "waiting for metrics"
        spec = self.spec
        low, high = self._min_scale(reachable), spec.max_scale
        if spec.initial_scale > 1 and not self._initialized and reachable:
            low = max(low, spec.initial_scale)
        if desired < low:
            desired = low
        elif high and desired > high:
            desired = high
        if desired != 0:
            return desired, True, f"scale to {desired}"
        return self._scale_to_zero(now, reachable)

    def _scale_to_zero(self, now: float, reachable: bool) -> tuple[int, bool, str]:
        """`handleScaleToZero` (docs/autoscaling.md#bounds-and-scale-to-zero). In tidal the
        activator is always reachable, so the activator probe of the Inactive branch always
        succeeds."""
        spec = self.spec
        if not spec.enable_scale_to_zero:
            return 1, True, "scale to zero disabled"
        in_state = now - self._active_since
        if self.active == ACTIVATING:
            if in_state > self.activation_timeout:
                return 0, True, f"activation timed out after {in_state:.0f}s"
            return -1, False, f"activating ({self.activation_timeout - in_state:.0f}s to time-out)"
        if self.active == ACTIVE:
            if in_state >= spec.stable_window:
                return 0, False, "idle for the stable window; deactivating"
            return 1, True, f"idle; scale to zero in {spec.stable_window - in_state:.0f}s"
        retention = spec.scale_to_zero_pod_retention_period if reachable else 0.0
        grace = spec.scale_to_zero_grace_period
        if in_state >= max(grace, retention):
            return 0, True, "scale to zero"
        if retention > 0 and in_state < retention:
            return 0, False, f"pod retention {retention - in_state:.0f}s left"
        proxy_for = 0.0 if self._proxy_since is None else now - self._proxy_since
        if grace - proxy_for <= 0:
            return 0, True, "scale to zero (activator already in path)"
        return 0, False, f"scale-to-zero grace {grace - proxy_for:.0f}s left"

    def _update_active(self, now: float, want: int, ready: int, reachable: bool) -> None:
        """`computeActiveCondition` (docs/autoscaling.md#bounds-and-scale-to-zero)."""
        low = self._min_scale(reachable)
        min_ready = max(low, 1) if self._initialized else max(low, self.spec.initial_scale)
        if ready >= min_ready:
            self._initialized = True
        if want == 0 or min_ready == 0:
            timed_out = self.active == ACTIVATING and min_ready > 0
            self._set_active(now, INACTIVE, "TimedOut" if timed_out else "NoTraffic")
        elif ready < min_ready:
            if want > 0 or self.active != INACTIVE:
                self._set_active(now, ACTIVATING, "Queued")
            else:
                self._set_active(now, INACTIVE, "NoTraffic")
        elif want > 0 or self.active != INACTIVE:
            self._set_active(now, ACTIVE, "")

    def _set_active(self, now: float, status: str, reason: str) -> None:
        """A condition's transition time moves when its status or reason changes."""
        if (status, reason) != (self.active, self._active_reason):
            self.active, self._active_reason, self._active_since = status, reason, now


def _record_each(
    buckets: TimedFloat64Buckets, times: Sequence[float], begin: int, end: int, value: float
) -> None:
    """`buckets.record(times[i], value)` for i in [begin, end), in one pass: where a time is the
    bucket right after the last write, the steps `record` takes are done inline; where all the
    times (a few dozen or more) are the seconds right after it, one after another, at C
    speed."""
    ring, size, step = buckets.buckets, len(buckets.buckets), buckets.granularity
    first = buckets.first_write
    inline = step < buckets.window and first is not None
    total, last = buckets.window_total, buckets.last_write
    floor = math.floor
    if inline and step == 1.0 and end - begin >= 24 and first is not None:  # else a loop is as fast
        seconds = list(map(floor, [times[i] for i in range(begin, end)]))
        count = end - begin
        if seconds[0] == last + 1.0 >= first and seconds == list(
            range(seconds[0], seconds[0] + count)
        ):
            _record_run(buckets, seconds[0], count, value)
            return
    recorded = 0  # by `record` itself, which counts its writes
    for i in range(begin, end):
        t = times[i]
        bucket_time = floor(t / step) * step
        if inline and bucket_time == last + step and bucket_time >= first:
            slot = int(t // step) % size
            total -= ring[slot]
            ring[slot] = 0.0 + value  # the slot is zeroed, then the value added to it
            total += value
            last = bucket_time
        else:
            buckets.window_total, buckets.last_write = total, last
            buckets.record(t, value)
            total, last, ring = buckets.window_total, buckets.last_write, buckets.buckets
            first = buckets.first_write
            inline = step < buckets.window and first is not None
            recorded += 1
    buckets.window_total, buckets.last_write = total, last
    buckets.writes += end - begin - recorded


def _record_run(buckets: TimedFloat64Buckets, second: int, count: int, value: float) -> None:
    """`record(t, value)` for t in seconds `second` to `second + count - 1` of 1 s buckets, the
    first of them right after the last write: each overwrites the next bucket (its old value
    off the total, then `0.0 + value` in the bucket and `value` on the total), so the total
    is one C-level `reduce` over (-old, value) pairs (see `_totals_after`) and the ring is
    written by slices."""
    ring = buckets.buckets
    size = len(ring)
    written = 0.0 + value  # what `record` leaves in a zeroed bucket
    cut = second % size
    olds = (ring[cut:] + ring[:cut])[:count] + [written] * max(0, count - size)
    steps = [value] * (2 * count)
    steps[0::2] = map(neg, olds)
    buckets.window_total = deque(accumulate(steps, initial=buckets.window_total), maxlen=1)[0]
    if count >= size:
        ring[:] = [written] * size
    elif cut + count <= size:
        ring[cut : cut + count] = [written] * count
    else:
        ring[cut:] = [written] * (size - cut)
        ring[: cut + count - size] = [written] * (cut + count - size)
    buckets.last_write = float(second + count - 1)
    buckets.writes += count


def _totals_after(
    ring: list[float], second: int, total: float, value: float, count: int
) -> list[float]:
    """A window's totals after each of `count` records of `value` in the seconds after
    `second` (its last write), computed as `record` does: each record takes the bucket it
    overwrites off the total, then adds `value`. `t + -b` is `t - b` in IEEE arithmetic, so one
    C-level `accumulate` over (-old, value) pairs gives the very floats of the loop."""
    size = len(ring)
    cut = (second + 1) % size
    olds = (ring[cut:] + ring[:cut])[:count] + [value] * max(0, count - size)
    steps = [value] * (2 * count)
    steps[0::2] = map(neg, olds)
    return list(accumulate(steps, initial=total))[2::2]  # accumulate's own + is add's, sooner


def _first_change(
    buckets: TimedFloat64Buckets, last: int, horizon: int, inputs: Callable[[float], object]
) -> int:
    """With a zero recorded every second after `last` (the second of the last write): the
    first j in [1, horizon] at which `inputs` of the window's average after j zeros differs
    from its value now; `horizon + 1` if none does. The window totals are those `record`
    leaves, bucket by bucket as the zeros overwrite them. The average can only move where a
    zero overwrites a non-zero bucket or the valid span still grows, so only those seconds
    are looked at; with no negative bucket and no negative total the average only falls, each
    input moves one way, and the first of them that differs is found by bisection."""
    if horizon < 1:
        return horizon + 1
    assert buckets.first_write is not None
    ring = buckets.buckets
    size = len(ring)
    span = last - int(buckets.first_write // buckets.granularity) + 1
    grow = min(max(0, size - span), horizon)  # seconds in which the valid span grows
    if not grow and not any(ring):
        return horizon + 1  # all zeros over a full span: the total and the divisor stay
    reach = min(horizon, size)  # past a whole window of zeros nothing moves
    cut = (last + 1) % size  # the ring from the bucket after the last write on
    overwritten = (ring[cut:] + ring[:cut])[:reach]
    totals = list(accumulate(overwritten, sub, initial=buckets.window_total))
    moves = list(range(1, grow + 1))
    moves += compress(range(grow + 1, reach + 1), overwritten[grow:])
    if not moves:
        return horizon + 1
    floor, scale = math.floor, ROUND_SCALE

    def at(j: int) -> object:
        x = totals[j] / min(span + j, size)
        return inputs(floor(x * scale + 0.5) / scale if x > 0.0 else round_precision(x))

    now = at(0)
    if min(ring) < 0.0 or totals[-1] < 0.0:  # not monotone: look at every move
        return next((j for j in moves if at(j) != now), horizon + 1)
    if at(moves[-1]) == now:
        return horizon + 1
    low, high = -1, len(moves) - 1  # at(moves[high]) differs; the first change is after low
    while high - low > 1:
        mid = (low + high) // 2
        if at(moves[mid]) != now:
            high = mid
        else:
            low = mid
    return moves[high]
