"""Event skipping for the predictive policy in the simulator.

The other policies answer `quiet_until(now, ready)` and `skip_idle(records, ticks, ready)`
themselves (tidal/autoscaler/kpa.py, baselines.py). `SimulatedPredictive` is the production
`PredictiveAutoscaler` (reactive KPA + plan + policy) fed with replanned history; until it
answers them itself, these functions do, from what it holds: idle ticks change nothing before
the reactive KPA's own limit, the next replan, the next minute whose planned count differs, or
the moment the stabilization window lets go of a higher recommendation. Anything they cannot
read makes the replay tick every second instead (slower, never different).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def predictive_quiet_until(predictive: Any, now: float, ready: int) -> float:
    try:
        scaler = predictive.autoscaler
        policy = scaler.policy
        limit = min(scaler.reactive.quiet_until(now, ready), predictive._next_plan)
        if limit <= now or policy.bounds.windows or scaler._reactive_replicas < 0:
            return now
        offset = scaler.epoch_offset
        plan = policy.plan
        if plan is not None:
            values = plan.replicas
            index = math.floor((now + offset - plan.start) / 60.0)
            if index < 0:
                limit = min(limit, plan.start - offset)
            elif index < len(values):
                differ = np.flatnonzero(values[index:] != values[index])
                upto = index + int(differ[0]) if differ.size else len(values)
                limit = min(limit, plan.start + upto * 60.0 - offset)
        window = policy._window
        if window:
            # The latest entry holding each column's maximum: when it leaves the window, the
            # held recommendation drops.
            auto_top = proactive_top = -math.inf
            auto_at = proactive_at = 0.0
            for at, auto, proactive in window:
                if auto >= auto_top:
                    auto_top, auto_at = auto, at
                if proactive >= proactive_top:
                    proactive_top, proactive_at = proactive, at
            hold = policy.settings.stabilization_window
            _, auto_now, proactive_now = window[-1]
            if auto_top > auto_now:
                limit = min(limit, auto_at + hold - offset)
            if proactive_top > proactive_now:
                limit = min(limit, proactive_at + hold - offset)
        return limit
    except AttributeError:
        return now


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
