"""Event skipping for the predictive policy in the simulator.

The other policies answer `quiet_until(now, ready)` and `skip_idle(records, ticks, ready)`
themselves (tidal/autoscaler/kpa.py, baselines.py). `SimulatedPredictive` is the production
`PredictiveAutoscaler` (reactive KPA + plan + policy) fed with replanned history; until it
answers them itself, these functions do, from what it holds: idle ticks change nothing before
the reactive KPA's own limit, the predictive autoscaler's next decision (a warm release or
pre-warm, a refit), the moment the service turns idle, the next minute whose planned count
differs, or the moment the stabilization window lets go of a higher recommendation. Anything
they cannot read makes the replay tick every second instead (slower, never different).

A service waiting for capacity with nothing queued records nothing, as an idle one at zero:
`predictive_steady_until` and `predictive_skip_steady` answer for it as for idleness. With
requests queued it records the same stats every second: the reactive KPA says how long its
decision holds (its own `steady_until`), the predictive side adds its refits, plan changes and
stabilization window (never the warm decision: the service is busy throughout), and the skipped
records are laid down as recording each would (the KPA's windows in one pass, the last busy
second and peak, the per-minute history second by second).
"""

from __future__ import annotations

import bisect
import math
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from tidal.autoscaler.clocks import STAT_PERIOD_S
from tidal.autoscaler.predictive.autoscaler import IDLE_AFTER_S
from tidal.autoscaler.predictive.warm import MIN_GAP_S


def predictive_quiet_until(predictive: Any, now: float, ready: int) -> float:
    try:
        scaler = predictive.autoscaler
        limit = _predictive_limit(predictive, now, scaler.reactive.quiet_until(now, ready))
        # The moment an ended request makes the service idle (the warm decision takes over).
        last_busy = scaler._last_busy
        if last_busy is not None and scaler.idle_since(now) is None:
            limit = min(limit, last_busy + IDLE_AFTER_S - scaler.epoch_offset)
        return max(limit, now)
    except AttributeError:
        return now


def _predictive_limit(predictive: Any, now: float, limit: float) -> float:
    """`limit` (the reactive KPA's), or sooner the warm decision's next release or pre-warm,
    the next refit, the next plan change, or the stabilization window letting go of its
    maximum; `now` when unsure (cron bounds, a KPA without data yet)."""
    scaler = predictive.autoscaler
    policy = scaler.policy
    offset = scaler.epoch_offset
    if limit <= now or policy.bounds.windows or scaler._reactive_replicas < 0:
        return now
    # The warm decision's next release or pre-warm, and the next refit.
    pending = predictive.next_decision_at(now)
    if pending is not None:
        limit = min(limit, pending)
    plan = policy.plan
    if plan is not None:
        limit = min(limit, _next_plan_change(plan, now + offset) - offset)
    window = policy._window
    if window:
        # The window's maximum, held until it leaves the window: its first entry, the only
        # one with that value (`PredictivePolicy._stabilize` keeps them decreasing).
        top_at, top = window[0]
        if top > window[-1][1]:
            limit = min(limit, top_at + policy.settings.stabilization_window - offset)
    return limit


def _next_plan_change(plan: Any, epoch: float) -> float:
    """Epoch second of the next minute whose planned (or cautious) count differs from this
    minute's; the plan's start when it has not begun, infinity when nothing changes."""
    index = math.floor((epoch - plan.start) / 60.0)
    if index < 0:
        return plan.start
    change = math.inf
    for length, steps in _steps_of(plan):
        if index >= length:
            continue
        # Counts are constant between steps: the first minute after `index` that differs
        # from it is the first step after it.
        at = bisect.bisect_right(steps, index)
        upto = steps[at] if at < len(steps) else length
        change = min(change, plan.start + upto * 60.0)
    return change


# Per plan (by id, with a weak reference that tells a live plan from a reused id): its
# counts' steps. A fleet asks about each service's plan in turn, so one entry would not do.
_steps_cache: dict[int, tuple[weakref.ref[Any], tuple[tuple[int, list[int]], ...]]] = {}
_steps_limit = [1024]  # prune dead plans' entries past this many


def _steps_of(plan: Any) -> tuple[tuple[int, list[int]], ...]:
    """Per count array of `plan` (planned, cautious), its length and the minutes where the
    count differs from the minute before; computed once per plan (a plan is asked about
    every wake)."""
    entry = _steps_cache.get(id(plan))
    if entry is not None and entry[0]() is plan:
        return entry[1]
    if len(_steps_cache) >= _steps_limit[0]:
        for key in [key for key, (ref, _) in _steps_cache.items() if ref() is None]:
            del _steps_cache[key]
        _steps_limit[0] = max(1024, 2 * len(_steps_cache))
    arrays = tuple(c for c in (plan.replicas, plan.cautious) if c is not None)
    steps = tuple((len(c), (np.flatnonzero(c[1:] != c[:-1]) + 1).tolist()) for c in arrays)
    _steps_cache[id(plan)] = (weakref.ref(plan), steps)
    return steps


def predictive_skip_idle(
    predictive: Any, records: Sequence[float], ticks: Sequence[float], ready: int
) -> None:
    """As `RevisionAutoscaler.skip_idle`, through the predictive wrapper (its per-minute
    history rolls on by itself)."""
    if ticks:
        if ready:
            predictive.autoscaler.reactive.fill_idle(ticks[-1])
        predictive.tick(ticks[-1], ready)
    if ready and records and (not ticks or records[-1] > ticks[-1]):
        predictive.record(records[-1], 0.0, 0.0)


def predictive_steady_until(
    predictive: Any, now: float, ready: int, concurrency: float, rps: float
) -> float:
    """`steady_until` (tidal/autoscaler/kpa.py) for the predictive policy. With nothing
    recorded (no replica ready, no traffic) it is idle at zero. With requests queued and no
    replica (`concurrency` recorded every second, no arrivals): the reactive KPA's own
    `steady_until`, and as for idleness the next refit, plan change and the stabilization
    window letting go (the service is busy all along, so the warm decision is not asked)."""
    if not (ready or concurrency or rps):
        return predictive_quiet_until(predictive, now, ready)
    if ready or rps or concurrency < 0:
        return now
    try:
        scaler = predictive.autoscaler
        last_busy = scaler._last_busy
        if STAT_PERIOD_S >= MIN_GAP_S or last_busy != now + scaler.epoch_offset:
            return now  # the stat at `now` must be busy, and each after it follow it closely
        limit = scaler.reactive.steady_until(now, ready, concurrency, rps)
        return max(_predictive_limit(predictive, now, limit), now)
    except AttributeError:
        return now


def predictive_skip_steady(
    predictive: Any,
    records: Sequence[float],
    ticks: Sequence[float],
    ready: int,
    concurrency: float,
    rps: float,
) -> None:
    """`skip_steady` for the spans `predictive_steady_until` allows: with nothing recorded,
    as idle; with requests queued, the records before the last tick, that tick (the ticks
    all decide the same), then the records after it."""
    if not records:
        assert not ready
        predictive_skip_idle(predictive, records, ticks, ready)
        return
    split = len(records)
    if ticks:
        last = ticks[-1]
        split = next((i for i in range(len(records)) if records[i] > last), len(records))
    _record_busy(predictive, records, 0, split, concurrency)
    if ticks:
        predictive.tick(ticks[-1], ready)
    _record_busy(predictive, records, split, len(records), concurrency)


def _record_busy(
    predictive: Any, records: Sequence[float], begin: int, end: int, concurrency: float
) -> None:
    """`predictive.record(t, concurrency, 0)` for each t of `records[begin:end]`, seconds
    apart, with `concurrency` > 0: the reactive KPA records them in one pass; of the
    predictive autoscaler's own state, they leave no idle gap (each follows a busy second),
    the last as the last busy second, and one peak entry at the last (each record replaces
    the previous one's, of the same value). The per-minute history sums them one by one."""
    if begin >= end:
        return
    scaler = predictive.autoscaler
    span = [records[i] for i in range(begin, end)]
    scaler.reactive.skip_steady(span, (), 0, concurrency, 0.0)
    epoch = records[end - 1] + scaler.epoch_offset
    if scaler.observing_since is None:
        scaler.observing_since = records[begin] + scaler.epoch_offset
    scaler._last_busy = epoch
    peaks = scaler._peaks
    while peaks and peaks[-1][1] <= concurrency:
        peaks.pop()
    peaks.append((epoch, concurrency))
    roll = predictive._roll
    for i in range(begin, end):
        roll(records[i])
        predictive._sum += concurrency
