"""Scaling signals other than concurrency and request rate: response time (RT) and the measured
CPU, memory and GPU use of a revision's replicas (docs/autoscaling.md#metrics-and-classes).

Each is turned into *replica-equivalents*: the replicas the revision would need at its target,
before rounding. For the resource metrics that is Kubernetes HPA's `ready x observed / target`
summed over replicas (`sum of usage / target per replica`); for RT it is `ready x RT / target`. The
KPA-like classes feed that figure to the KPA decider in place of concurrency with a per-pod target
of 1 (`MetricAutoscaler`), so its windows, panic mode, scale-down delay and scale-to-zero apply
unchanged; the HPA class reads it at its sync (tidal/autoscaler/baselines.py `HPAAutoscaler`).

Pure: the controller and the simulator hand in what they measured; nothing here reads a clock.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tidal.api.autoscaling import CONCURRENCY, CPU, GPU, MEMORY, RPS, RT
from tidal.autoscaler.clocks import STAT_PERIOD_S
from tidal.autoscaler.kpa import DeciderSpec, Decision

MIB = 1024 * 1024
# RT within this fraction of the target: hold (HPA's tolerance, applied to RT).
TOLERANCE = 0.1
# Service time at least this share of the target: more replicas cannot bring RT under it.
GUARD_SHARE = 1.0


@dataclass(frozen=True)
class Usage:
    """One second of a revision's measured resource use, summed over the `replicas` that reported
    (the others are left out, as Kubernetes' HPA leaves out pods without metrics)."""

    replicas: int
    cpu_cores: float = 0.0
    memory_bytes: float = 0.0
    gpu_percent: float = 0.0  # sum over replicas of each one's mean device utilisation
    gpu_memory_bytes: float = 0.0
    gpu_replicas: int = 0  # replicas that reported GPU figures


@dataclass(frozen=True)
class MetricTarget:
    """What a revision scales on and its per-replica target, in the metric's own unit:
    cpu cores (the request x target %), memory bytes, GPU %, RT seconds, or concurrency/rps."""

    metric: str
    per_replica: float
    rt_percentile: float | None = None  # None: mean RT


def metric_target(
    metric: str, target: float | None, cpu_request: float | None, rt_percentile: float | None
) -> MetricTarget:
    """The per-replica target as Knative and ACK write it: cpu `target` is % of the request
    (default 80, Kubernetes' default), memory is MiB, gpu is % (default 80), rt is milliseconds.
    Validation (tidal/api/autoscaling.py) has already refused missing targets and requests."""
    if metric == CPU:
        return MetricTarget(CPU, (cpu_request or 0.0) * (target or 80.0) / 100.0)
    if metric == MEMORY:
        return MetricTarget(MEMORY, (target or 0.0) * MIB)
    if metric == GPU:
        return MetricTarget(GPU, target or 80.0)
    if metric == RT:
        return MetricTarget(RT, (target or 0.0) / 1000.0, rt_percentile)
    return MetricTarget(metric, target or 0.0)


# What a predictive plan forecasts on each measured metric, in the unit users write its target
# in (docs/autoscaling.md#predictive-on-every-metric): the per-minute history column (summed over
# the service's revisions; gpu and rt weighted by ready replicas, since the history keeps their
# per-replica mean) and the factor from the feed's unit (MetricTarget.per_replica) to it.
PLAN_COLUMNS = {
    CPU: ("cpu_cores", 1.0, "cores"),
    MEMORY: ("memory_bytes", 1.0 / MIB, "MiB"),
    GPU: ("gpu_percent*ready_replicas", 1.0, "% of a GPU"),
    RT: ("mean_rt*ready_replicas", 1000.0, "ms x replicas"),
}


def planning_spec(spec: DeciderSpec, target: MetricTarget | None) -> DeciderSpec:
    """The spec a predictive plan is sized with: the revision's own for concurrency and rps;
    on a measured metric its per-replica target in the plan's unit (cpu: the request's cores x
    target %, memory MiB, gpu %, rt ms), `scaling_metric` naming the metric."""
    if target is None or target.metric not in PLAN_COLUMNS:
        return spec
    per = target.per_replica * PLAN_COLUMNS[target.metric][1]
    return dataclasses.replace(
        spec, scaling_metric=target.metric, target_value=per, total_value=per
    )


def plan_unit(metric: str) -> str:
    """The unit of a plan's demand and per-replica target on `metric`, for people."""
    if metric in PLAN_COLUMNS:
        return PLAN_COLUMNS[metric][2]
    return "requests/s" if metric == RPS else "requests in flight"


def plan_columns(metric: str) -> tuple[str, ...]:
    """The history columns `demand_series` needs for `metric`."""
    if metric == RPS:
        return ("requests",)
    if metric == CONCURRENCY:
        return ("avg_concurrency",)
    return ("requests", "avg_concurrency", PLAN_COLUMNS[metric][0])


def demand_series(metric: str, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-minute demand on `metric` from history columns (NaN = no data), in the plan's unit:
    mean concurrency; requests/s; cores; MiB; % of a GPU summed over replicas; RT x ready
    replicas (RT does not add up over replicas: `ready x RT / target` is the replicas that minute
    asked for, HPA's estimate). A minute without requests is no demand (0) whatever its replicas
    used idling, so idle gaps show in the series; a minute with requests but no measurement
    stays NaN."""
    if metric == RPS:
        return np.asarray(columns["requests"], dtype=float) / 60.0
    if metric == CONCURRENCY:
        return np.asarray(columns["avg_concurrency"], dtype=float)
    column, scale, _ = PLAN_COLUMNS[metric]
    values = np.asarray(columns[column], dtype=float) * scale
    requests = np.asarray(columns["requests"], dtype=float)
    concurrency = np.asarray(columns["avg_concurrency"], dtype=float)
    idle = (requests == 0) & (concurrency == 0)
    return np.where(idle, 0.0, values)


def response_time(samples: Sequence[tuple[float, float]], percentile: float | None) -> float:
    """Mean (or the given percentile, 0-100) of the samples' response times, in seconds."""
    values = [rt for rt, _ in samples]
    if percentile is None:
        return sum(values) / len(values)
    return float(np.percentile(values, percentile))


class MetricFeed:
    """Per second, the replica-equivalents the revision needs on its metric."""

    def __init__(
        self, target: MetricTarget, window_s: float, container_concurrency: int = 0
    ) -> None:
        self.target = target
        self.window_s = window_s
        self.cc = container_concurrency
        self.usage: Usage | None = None
        self._latencies: deque[tuple[float, float, float]] = deque()  # (t, rt, service)
        self._rt_value = 0.0  # the last RT figure, held while requests are in flight
        self.observed: float | None = None  # the last observation, in the metric's unit
        # Time on a replica over the window, by the same statistic as RT (mean or percentile).
        self.service_time: float | None = None
        self._own_replica = False  # CC 0: RT over target with a replica per request (guarded)

    def record_usage(self, usage: Usage) -> None:
        self.usage = usage

    def record_latency(self, now: float, samples: Sequence[tuple[float, float]]) -> None:
        self._latencies.extend((now, rt, service) for rt, service in samples)
        while self._latencies and self._latencies[0][0] <= now - self.window_s:
            self._latencies.popleft()

    @property
    def guarded(self) -> bool:
        """More replicas cannot bring RT under target. With a containerConcurrency the gateway
        queues, and the service time alone is at or over the target. With none (CC 0) nothing
        queues in the gateway and the time on a replica includes sharing it, so the service
        time says nothing alone: RT is over target while every request in flight already has
        a replica of its own."""
        if self.target.metric != RT:
            return False
        if not self.cc:
            return self._own_replica
        return (
            self.service_time is not None
            and self.service_time >= GUARD_SHARE * self.target.per_replica
        )

    def value(self, now: float, concurrency: float, ready: int) -> tuple[float, int]:
        """(replica-equivalents, replicas measured) for this second; (0, 0) with nothing measured.
        Call after this second's `record_usage`/`record_latency`."""
        metric, per = self.target.metric, self.target.per_replica
        if per <= 0:
            return 0.0, 0  # no target to measure against (cpu without a request)
        if metric in (CPU, MEMORY, GPU):
            usage = self.usage
            self.usage = None
            if usage is None or not usage.replicas:
                return 0.0, 0
            if metric == CPU:
                total, count = usage.cpu_cores, usage.replicas
            elif metric == MEMORY:
                total, count = usage.memory_bytes, usage.replicas
            else:
                total, count = usage.gpu_percent, usage.gpu_replicas
            if not count:
                return 0.0, 0
            self.observed = total / count
            return total / per, count
        if metric == RT:
            return self._rt(now, concurrency, ready), ready
        return concurrency / per if per else 0.0, ready

    def _rt(self, now: float, concurrency: float, ready: int) -> float:
        # This tick's samples. Half a stat period, not a second: at epoch times a second
        # minus 1e-9 is the second itself, and the replay's ticks are exactly a second apart.
        fresh = [(rt, s) for t, rt, s in self._latencies if t > now - STAT_PERIOD_S / 2]
        if fresh:
            # What requests cost without queueing, read as RT is (mean or the percentile):
            # a p95 target cannot be met if the p95 of the service time alone is over it.
            window = [(s, s) for _, _, s in self._latencies]
            self.service_time = response_time(window, self.target.rt_percentile)
            self.observed = response_time(fresh, self.target.rt_percentile)
            target = self.target.per_replica
            if self.cc and self.guarded:
                # Only queueing can be removed: aim a little above the service time.
                target = self.service_time * (1 + TOLERANCE)
            ratio = self.observed / target
            pods = max(ready, 1)
            self._own_replica = ratio > 1 + TOLERANCE and ready >= max(concurrency, 1.0)
            # RT is not proportional to 1/replicas (the service time stays), so a burst of
            # queueing (a cold start) must not ask for a fleet: at most double per second,
            # as HPA's scale-up limit; and never more replicas than it takes to give every
            # request in the gateway a slot of its own (more cannot shorten any queue).
            value = pods if abs(ratio - 1.0) <= TOLERANCE else min(pods * ratio, 2.0 * pods)
            self._rt_value = min(value, max(concurrency, 1.0) / max(self.cc, 1))
        elif concurrency <= 0:
            self._rt_value = 0.0  # no request in flight or answered: no load
        return self._rt_value

    def view(self) -> dict[str, Any]:
        """The metric, its last observation and target, in the units users write (cores,
        bytes, %, ms), for the revision's status."""
        metric, observed, per = self.target.metric, self.observed, self.target.per_replica
        scale = 1000.0 if metric == RT else 1.0
        view: dict[str, Any] = {
            "name": metric,
            "observed": None if observed is None else observed * scale,
            "target": per * scale,
        }
        if metric == RT:
            view["percentile"] = self.target.rt_percentile
            view["serviceTime"] = None if self.service_time is None else self.service_time * 1000
            view["guarded"] = self.guarded
        return view

    def describe(self) -> str:
        """The observation in words, for the autoscaler's status reason."""
        metric, observed = self.target.metric, self.observed
        if self.target.per_replica <= 0:
            return "missing request for cpu: set resources.requests.cpu to scale on cpu"
        if observed is None:
            return f"no {metric} measured yet"
        if metric == CPU:
            target = self.target.per_replica * 1000
            return f"cpu {observed * 1000:.0f}m per replica, target {target:.0f}m"
        if metric == MEMORY:
            return (
                f"memory {observed / MIB:.0f}Mi per replica, "
                f"target {self.target.per_replica / MIB:.0f}Mi"
            )
        if metric == GPU:
            return f"gpu {observed:.0f}% per replica, target {self.target.per_replica:.0f}%"
        if metric == RT:
            which = (
                "mean" if self.target.rt_percentile is None else f"p{self.target.rt_percentile:g}"
            )
            target = self.target.per_replica * 1000
            text = f"rt {which} {observed * 1000:.0f}ms, target {target:.0f}ms"
            if self.guarded and not self.cc:
                text += (
                    "; every request in flight already has a replica of its own "
                    "(containerConcurrency 0): more replicas cannot lower RT, not scaling out"
                )
            elif self.guarded:
                assert self.service_time is not None
                text += (
                    f"; service time {self.service_time * 1000:.0f}ms is at or above the target: "
                    "more replicas cannot lower RT, scaling only to remove queueing"
                )
            return text
        return f"{metric} {observed:.2f}"


class Inner(Protocol):
    def record(self, now: float, concurrency: float, rps: float) -> None: ...

    def poke(self, now: float, concurrency: float) -> bool: ...

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision: ...


def signal_spec(spec: DeciderSpec) -> DeciderSpec:
    """The decider spec for replica-equivalents: a per-pod target of 1."""
    return dataclasses.replace(spec, target_value=1.0, total_value=1.0)


class MetricAutoscaler:
    """A KPA-like autoscaler (the KPA, or the predictive autoscaler around it) fed with the
    replica-equivalents of an RT or resource metric instead of concurrency, and zero for a
    second without requests. Requests still poke it from zero; the status reason says what was
    observed."""

    def __init__(self, inner: Inner, feed: MetricFeed) -> None:
        self.inner = inner
        self.feed = feed
        self._ready = 0

    def record_usage(self, now: float, usage: Usage) -> None:
        self.feed.record_usage(usage)

    def record_latency(self, now: float, samples: Sequence[tuple[float, float]]) -> None:
        self.feed.record_latency(now, samples)

    def record(self, now: float, concurrency: float, rps: float) -> None:
        value, _ = self.feed.value(now, concurrency, self._ready)
        if concurrency <= 0 and rps <= 0:
            # No request: no load, whatever idle replicas use. So a revision still scales to
            # zero, and the predictive class sees its idle gaps as on concurrency.
            value = 0.0
        elif self._ready == 0:
            value = max(value, 1.0)  # requests at zero: one replica, as the KPA's poke
        self.inner.record(now, value, value)

    def poke(self, now: float, concurrency: float) -> bool:
        return self.inner.poke(now, concurrency)

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        self._ready = ready
        decision = self.inner.tick(now, ready, reachable)
        return dataclasses.replace(decision, reason=f"{decision.reason}; {self.feed.describe()}")

    def skip_idle(self, records: Sequence[float], ticks: Sequence[float], ready: int) -> None:
        """The inner KPA's idle skip (`RevisionAutoscaler.skip_idle`; the replay finds the
        KPA's `quiet_until` through `__getattr__`), leaving the feed as the skipped seconds'
        `record` calls would: nothing in flight and nothing answered, so no RT load held."""
        if len(records):
            self.feed.value(records[-1], 0.0, self._ready)
        if len(ticks):
            self._ready = ready
        self.inner.skip_idle(records, ticks, ready)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        # The predictive autoscaler's extras (set_plan, next_decision_at, ...) pass through.
        return getattr(self.inner, name)
