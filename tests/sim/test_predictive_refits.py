"""The simulator's predictive policy refits its warm model every 10 minutes. A refit that would
keep the model (no gap has ended since the last) does not wake an idle replay: ticking only
when `next_decision_at` asks must leave the policy where ticking every decision tick does, its
10-minute refit clock included."""

from __future__ import annotations

import math

import numpy as np

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.predictive import parse_predictive_annotations
from tidal.autoscaler.kpa import decider_spec
from tidal.autoscaler.predictive.refit import WARM_REFIT_S
from tidal.autoscaler.predictive.synthetic import MONDAY
from tidal.sim.predictive import SimulatedPredictive

TICK_S = 2.0  # the decision clock
BUSY = (10, 11, 300, 301)  # seconds after the start with a request: one gap between
IDLE_FROM = 306  # the first decision tick of the idle stretch (busy ticks: even seconds)
IDLE_UNTIL = 3 * 3600


def timer_history(days: int = 2) -> np.ndarray:
    """Per-minute history before the trace: one busy minute every 12 minutes."""
    history = np.zeros(days * 1440)
    history[::12] = 1.0
    return history


def predictive() -> SimulatedPredictive:
    config = AutoscalerConfig()
    spec = decider_spec(config, parse_autoscaling_annotations({}, config), 1)
    settings = parse_predictive_annotations({"tidal.dev/min-history": "1d"})
    return SimulatedPredictive(
        spec, settings, MONDAY, np.full(64, 30.0), prior_history=timer_history()
    )


def busy_start(sim: SimulatedPredictive) -> dict[float, int | None]:
    """Both runs alike: every second recorded and every decision tick run while requests come."""
    decisions = {}
    for second in range(1, IDLE_FROM):
        now = MONDAY + second
        if second in BUSY:
            sim.record(now, 1.0, 1.0)
        if second % TICK_S == 0:
            decisions[now] = sim.tick(now, 0).replicas
    return decisions


def test_idle_ticks_only_when_asked_leave_the_policy_as_every_tick_does() -> None:
    every, asked = predictive(), predictive()
    assert busy_start(every) == busy_start(asked)
    assert asked.autoscaler.policy.warm is not None  # fitted from the history and the gap
    assert asked.autoscaler.gaps  # the gap between the busy seconds, seen live

    last, end = MONDAY + IDLE_FROM, MONDAY + IDLE_UNTIL
    per_tick = {}
    now = last
    while now <= end:
        per_tick[now] = every.tick(now, 0).replicas
        now += TICK_S
    woken = []
    now = last
    while now <= end:
        woken.append(now)
        assert asked.tick(now, 0).replicas == per_tick[now], now
        wake = asked.next_decision_at(now)
        wake = end if wake is None else min(max(wake, now + TICK_S), end)
        now = last + math.ceil((wake - last) / TICK_S) * TICK_S  # the next decision tick
        if woken[-1] == end:
            break

    assert asked._next_warm == every._next_warm  # on the same 10-minute grid
    assert asked._next_plan == every._next_plan
    assert np.array_equal(asked.autoscaler.policy.warm.hold, every.autoscaler.policy.warm.hold)
    assert asked.autoscaler.replicas == every.autoscaler.replicas
    # Hourly plans and the warm decision's own changes, not a wake per 10-minute refit.
    assert len(woken) < IDLE_UNTIL / WARM_REFIT_S


def test_only_proactive_mode_gets_plans_without_a_period():
    """The replay forecasts a history without a period only for `proactive`, the one mode that
    reads such a plan (`build_plan(aperiodic=False)`); auto plans zeros there."""
    config = AutoscalerConfig()
    spec = decider_spec(config, parse_autoscaling_annotations({}, config), 1)
    flat = np.random.default_rng(1).poisson(3.0, 3 * 1440).astype(float)
    methods = {}
    for mode in ("auto", "proactive"):
        settings = parse_predictive_annotations({"tidal.dev/mode": mode})
        sim = SimulatedPredictive(spec, settings, MONDAY, np.full(64, 30.0), prior_history=flat)
        sim.tick(MONDAY, 0)  # the first tick plans
        plan = sim.policy.plan
        assert plan is not None and plan.periods == ()
        methods[mode] = plan.method
    assert methods["auto"] == "none" and methods["proactive"] != "none"
