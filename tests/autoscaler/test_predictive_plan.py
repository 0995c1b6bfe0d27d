"""Forecast and plan: the forward shift, Ready Time lead, and robustness to bad histories."""

from __future__ import annotations

import numpy as np
import pytest

from tidal.api.predictive import PredictiveAnnotations
from tidal.autoscaler.predictive.bounds import Bounds
from tidal.autoscaler.predictive.forecast import NONE, PROFILE, SEASONAL_NAIVE, forecast
from tidal.autoscaler.predictive.periods import DAY
from tidal.autoscaler.predictive.plan import build_plan, clamp_plan, plan_replicas, ready_time_lead
from tidal.autoscaler.predictive.policy import PredictivePolicy
from tidal.autoscaler.predictive.synthetic import MONDAY, synthetic_history


def test_plan_is_ceil_of_demand_shifted_earlier_by_the_lead():
    upper = np.array([0, 0, 0, 0, 25, 0, 0, 10.0])
    assert plan_replicas(upper, 10, 0).tolist() == [0, 0, 0, 0, 3, 0, 0, 1]
    assert plan_replicas(upper, 10, 2).tolist() == [0, 0, 3, 3, 3, 1, 1, 1]
    assert plan_replicas(upper, 10, 1).tolist() == [0, 0, 0, 3, 3, 0, 1, 1]
    assert plan_replicas(np.array([20.0, np.nan]), 10, 0).tolist() == [2, 0]


def test_the_expected_plan_leaves_out_rises_shorter_than_the_lead():
    """A replica started one Ready Time ahead of a rise that lasts no longer than that waits
    about as long as it serves: the expected (auto) plan keeps only counts the demand holds
    for lead + 1 minutes, each such run whole and led. The cautious plan keeps every minute."""
    blip, rise = [0, 0, 0, 20, 0, 0], [0, 20, 20, 20, 0, 0]
    mean = np.array(blip + rise, dtype=float)
    assert plan_replicas(mean, 10, 1, nearest=True).tolist() == [0] * 6 + [2, 2, 2, 2, 0, 0]
    assert plan_replicas(mean, 10, 2, nearest=True).tolist() == [0] * 5 + [2] * 5 + [0, 0]
    assert plan_replicas(mean, 10, 3, nearest=True).tolist() == [0] * 12  # 3 min < 4
    assert plan_replicas(mean, 10, 1).tolist() == [0, 0, 2, 2, 0, 0, 2, 2, 2, 2, 0, 0]
    assert plan_replicas(mean, 10, 0, nearest=True).tolist() == [2 * (v > 0) for v in mean]


def test_ready_time_lead_is_p90_in_whole_minutes():
    assert ready_time_lead([20, 30, 40, 50, 170]) == 3  # p90 = 122 s, rounded up
    assert ready_time_lead([5.0]) == 1
    assert ready_time_lead([]) == 1  # default 60 s
    assert ready_time_lead([], default_s=0) == 0


def test_plan_from_a_daily_history_follows_the_cycle():
    _, y = synthetic_history(8, seed=5, bursts_per_day=0)  # plans a Tuesday
    plan = build_plan(y, MONDAY + 8 * 86_400, 10, 0.95, lead_minutes=3)
    assert plan.method in (PROFILE, SEASONAL_NAIVE) and plan.periods == (DAY,)
    assert len(plan.replicas) == DAY and plan.history_minutes == 8 * DAY
    night, noon = plan.replicas_at(plan.start + 3 * 3600), plan.replicas_at(plan.start + 13 * 3600)
    assert night in (0, 1) and 9 <= noon <= 13  # 5 and ~100 in flight, target 10
    assert plan.replicas_at(plan.start - 1) is None
    assert plan.replicas_at(plan.start + 86_400) is None


def _histories() -> dict[str, np.ndarray]:
    _, y = synthetic_history(3, seed=6)
    gaps = y.copy()
    gaps[500:900] = np.nan
    gaps[2000:2005] = np.nan
    nans = y.copy()
    nans[np.random.default_rng(7).random(len(y)) < 0.3] = np.nan
    spike = np.zeros(3 * DAY)
    spike[1234] = 500.0
    return {
        "gaps": gaps,
        "nans": nans,
        "all-zero": np.zeros(3 * DAY),
        "constant": np.full(3 * DAY, 42.0),
        "single-spike": spike,
        "10-minutes": np.full(10, 7.0),
        "all-nan": np.full(DAY, np.nan),
        "empty": np.array([]),
    }


@pytest.mark.parametrize("name", list(_histories()))
def test_any_history_gives_a_plan_or_an_explicit_observer_fallback(name):
    history = _histories()[name]
    plan = build_plan(history, MONDAY, 10, 0.95, lead_minutes=2)
    assert plan.replicas.shape == (DAY,) and plan.replicas.dtype.kind == "i"
    assert (plan.replicas >= 0).all() and np.isfinite(plan.forecast.upper).all()
    policy = PredictivePolicy(PredictiveAnnotations())
    policy.set_plan(plan)
    decision = policy.decide(MONDAY + 30, reactive_desired=1, current_replicas=1)
    if plan.history_minutes < 2 * DAY:
        assert decision.mode_used == "observer" and "of history, need 2d" in decision.reason
    elif not plan.periods:  # a level without a rhythm is not acted on
        assert decision.mode_used == "observer" and "no period found" in decision.reason
    else:
        assert decision.mode_used == "auto"
    print(f"{name}: {plan.method}, {plan.forecast.reason}; {decision.reason}")


def test_fallback_methods_and_scale_to_zero():
    assert forecast(np.full(DAY, np.nan), 0.95).method == NONE
    assert forecast(np.full(10, 7.0), 0.95).method == SEASONAL_NAIVE  # the last value
    plan = build_plan(np.zeros(3 * DAY), MONDAY, 10, 0.95, lead_minutes=2)
    assert plan.method == SEASONAL_NAIVE and not plan.replicas.any()
    policy = PredictivePolicy(PredictiveAnnotations(stabilization_window=0))
    policy.set_plan(plan)
    assert policy.decide(MONDAY, 0, 1).replicas == 0


@pytest.mark.parametrize("low,high", [(0, 0), (2, 0), (1, 5), (3, 3)])
def test_clamp_plan_without_windows_matches_clamping_each_minute(low: int, high: int) -> None:
    bounds = Bounds(min_scale=low, max_scale=high)
    replicas = np.array([0, 1, 2.7, 4, 9, 0])
    expected = [bounds.clamp(int(n), 0.0) for n in replicas]
    assert clamp_plan(replicas, 0.0, bounds).tolist() == expected


def test_without_aperiodic_a_history_without_a_period_is_not_forecast():
    """What the simulator asks for (auto reads no plan without a period): the same plan where
    a period is found, and zeros, method `none`, where none is."""
    _, daily = synthetic_history(8, seed=5, bursts_per_day=0)
    start = MONDAY + 8 * 86_400
    full = build_plan(daily, start, 10.0, 0.95, 2)
    cut = build_plan(daily, start, 10.0, 0.95, 2, aperiodic=False)
    assert full.periods == cut.periods == (DAY,) and cut.method == full.method
    assert np.array_equal(cut.replicas, full.replicas)
    assert np.array_equal(cut.forecast.upper, full.forecast.upper)
    flat = np.random.default_rng(1).poisson(3.0, 3 * DAY).astype(float)
    assert build_plan(flat, start, 10.0, 0.95, 2).method != NONE  # forecast all the same
    cut = build_plan(flat, start, 10.0, 0.95, 2, aperiodic=False)
    assert cut.periods == () and cut.method == NONE and not cut.replicas.any()
    assert cut.history_minutes == 3 * DAY
