"""What one cold start costs in replica time, measured by replaying the production KPA on a lone
request that finds no replica (docs/predictive.md, "The price knob and its default").

The warm decision's `auto` price compares its idle replica time with the KPA's on the same idle
gaps. The simple model of the KPA, one replica for a fixed tail (stable window + scale-to-zero
grace) after each request, misses what a cold start does to it: the request waits a Ready Time
with concurrency 1, which is 1/0.7 of a replica at Knative's default target, so the KPA panics
to two replicas and holds both through its stable window, counted from the panic. The replay
measures what the KPA spends on a lone cold request beyond the simple model's `Ready Time +
fixed tail` (its panic headroom, less the shorter tail it then has), for the service's own KPA
settings and Ready Time, with the KPA's own code.

The KPA's idle tail itself, how long it keeps the last replica after the last request, is
measured the same way (`idle_tail`): its stable window, then its scale-to-zero grace unless the
gateway has been holding requests for it that long already, which with Knative's default
target burst capacity it always has for a small service (docs/autoscaling.md, "Going to
zero"): 62 s with the defaults, not stable window + grace (90 s).

The `auto` price charges every expected cold start, the KPA's and predictive's own,
`served_panic_cost`, the part spent while the request waits: in a busy period the KPA needs
the panic replica anyway, and predictive's idle cap releases it once the service is idle again
when the last hour's peak needed one replica (`refit.fit_warm`). The live account prices a
cold start avoided or caused at the whole `panic_cost`; an explicit price's expected ratios
use it too. Pure and deterministic; cached per settings (and Ready Time).
"""

from __future__ import annotations

from functools import lru_cache

from tidal.autoscaler.kpa import RPS, TICK_INTERVAL, DeciderSpec, RevisionAutoscaler

SERVICE_S = 1.0  # the lone request's service time once a replica is ready
STAT_S = 1.0  # the metric scrape period the replay records at
LIMIT_S = 3600.0  # a KPA that never returns to zero is followed this long


WARM_UP_WINDOWS = 2  # stable windows of steady traffic before the lone request's tail


@lru_cache(maxsize=256)
def idle_tail(spec: DeciderSpec) -> float:
    """Seconds from the last stat with a request in flight until the KPA (`spec`) asks for zero
    replicas: replayed on one warm replica that served light traffic (half a replica's target)
    for WARM_UP_WINDOWS stable windows, then nothing. LIMIT_S when it keeps a replica (scale
    to zero disabled, min-scale)."""
    kpa = RevisionAutoscaler(spec, 0.0, ready=1, initialized=True)
    light = spec.target_value / 2.0
    busy_until = WARM_UP_WINDOWS * spec.stable_window
    ticks_per_stat = max(1, round(TICK_INTERVAL / STAT_S))
    ready, k = 1, 0
    while k * STAT_S < busy_until + LIMIT_S:
        k += 1
        t = k * STAT_S
        busy = t <= busy_until
        kpa.record(t, light if busy else 0.0, light if busy else 0.0)
        if k % ticks_per_stat == 0:
            replicas = kpa.tick(t, ready).replicas
            ready = ready if replicas is None else replicas
            if ready == 0 and not busy:
                return t - busy_until
    return LIMIT_S


def panic_cost(spec: DeciderSpec, ready_s: float, tail_s: float) -> float:
    """Replay the KPA (`spec`) on one request arriving at zero replicas whose replicas become
    ready `ready_s` (rounded to the scrape period) after they are asked for, until it is back
    at zero; `tail_s` is the simple model's fixed tail. On a measured metric (cpu, memory, ...)
    the KPA's windows do not see a waiting request, and the simple model stands (0)."""
    if spec.scaling_metric not in ("concurrency", RPS):
        return 0.0
    return _replay(spec, round(ready_s / STAT_S) * STAT_S, tail_s)[0]


def served_panic_cost(spec: DeciderSpec, ready_s: float, tail_s: float) -> float:
    """The part of `panic_cost` spent while the request is in flight: the replica time of the
    replicas beyond the first from the panic until the request is served (0 where one request
    does not panic the KPA). What a cold start costs at least, when the replica it panics into
    is released as soon as the service is idle again."""
    if spec.scaling_metric not in ("concurrency", RPS):
        return 0.0
    return _replay(spec, round(ready_s / STAT_S) * STAT_S, tail_s)[1]


@lru_cache(maxsize=256)
def _replay(spec: DeciderSpec, ready_s: float, tail_s: float) -> tuple[float, float]:
    kpa = RevisionAutoscaler(spec, 0.0, ready=0, initialized=True)
    asked: list[float] = []  # when each replica still asked for was asked for

    def apply(replicas: int | None, t: float) -> None:
        if replicas is not None:
            asked.extend([t] * (replicas - len(asked)))
            del asked[max(replicas, 0) :]

    kpa.record(0.0, 1.0, 1.0)  # the activator's stat for the request, and its poke
    kpa.poke(0.0, 1.0)
    apply(kpa.tick(0.0, 0).replicas, 0.0)
    done = ready_s + SERVICE_S  # the request leaves
    first = beyond = served = 0.0
    ticks_per_stat = max(1, round(TICK_INTERVAL / STAT_S))
    k = 0
    while k * STAT_S < LIMIT_S:
        k += 1
        t = k * STAT_S
        ready = sum(1 for a in asked if t - a >= ready_s)
        busy = t <= done
        if ready or busy:
            kpa.record(t, 1.0 if busy else 0.0, 0.0)
        if k % ticks_per_stat == 0:
            apply(kpa.tick(t, ready).replicas, t)
        n = len(asked)
        first += STAT_S * min(n, 1)
        beyond += STAT_S * max(n - 1, 0)
        if busy:
            served = beyond
        if not busy and n == 0:
            break
    simple = ready_s + SERVICE_S + tail_s
    full = max(0.0, beyond + min(first, simple) - simple)
    return full, min(full, served)
