"""Cron bounds and the policy: modes, stabilization, observer fallback, clamping."""

from __future__ import annotations

import numpy as np

from tidal.api.predictive import PredictiveAnnotations, parse_bounds
from tidal.autoscaler.predictive.bounds import Bounds
from tidal.autoscaler.predictive.forecast import ForecastResult
from tidal.autoscaler.predictive.plan import Plan
from tidal.autoscaler.predictive.policy import PredictivePolicy, human_duration
from tidal.autoscaler.predictive.synthetic import MONDAY
from tidal.autoscaler.predictive.warm import MIN_GAPS

HOUR = 3600.0
DAY_S = 86_400.0


def at(day: int, hour: float) -> float:
    """Epoch seconds of `hour` on day `day` of the week starting Monday 2024-01-01 UTC."""
    return MONDAY + day * DAY_S + hour * HOUR


def test_cron_bounds_by_weekday_and_time():
    b = Bounds(0, 20, parse_bounds("MON-FRI 08:00-18:00 min=2 max=10; * 00:00-06:00 max=1"))
    assert b.at(at(0, 8)) == (2, 10)
    assert b.at(at(4, 17.99)) == (2, 10)
    assert b.at(at(4, 18)) == (0, 20)
    assert b.at(at(5, 12)) == (0, 20)  # Saturday
    assert b.at(at(6, 3)) == (0, 1)
    assert b.clamp(0, at(1, 9)) == 2 and b.clamp(50, at(1, 9)) == 10 and b.clamp(5, at(2, 2)) == 1


def test_cron_bounds_wrap_midnight_first_match_and_zero_cap():
    b = Bounds(1, 0, parse_bounds("FRI 22:00-02:00 min=4; * 01:00-05:00 max=0"))
    assert b.at(at(4, 23)) == (4, None)
    assert b.at(at(5, 1.5)) == (4, None)  # Saturday 01:30 still in Friday's window
    assert b.at(at(6, 1.5)) == (1, 0)  # Sunday: the night cap; the cap wins
    assert b.clamp(3, at(6, 1.5)) == 0
    assert b.at(at(3, 12)) == (1, None)


def test_cron_bounds_in_a_time_zone():
    b = Bounds(0, 0, parse_bounds("* 08:00-09:00 min=3"), timezone="Asia/Tokyo")  # UTC+9
    assert b.at(at(0, 23.5))[0] == 3  # 08:30 Tuesday in Tokyo
    assert b.at(at(1, 8.5))[0] == 0


def _plan(replicas: list[int], start: float = MONDAY, history_days: float = 3) -> Plan:
    zeros = np.zeros(len(replicas))
    result = ForecastResult(zeros, zeros, (1440,), "seasonal-median", "test")
    return Plan(start, np.array(replicas), result, 2, 10.0, int(history_days * 1440))


def test_auto_adds_the_plan_over_the_kpa_and_leaves_scale_in_to_the_kpa():
    policy = PredictivePolicy(PredictiveAnnotations())
    policy.set_plan(_plan([5] * 3 + [1] * 20))
    d = policy.decide(MONDAY, reactive_desired=2, current_replicas=2)
    assert (d.replicas, d.mode_used, d.planned, d.reactive) == (5, "auto", 5, 2)
    assert policy.decide(MONDAY + 60, 7, 5).replicas == 7  # scale-out at once
    # No peak is held: the KPA's own stable window already holds its scale-in.
    assert policy.decide(MONDAY + 180, 1, 7).replicas == 1


def test_proactive_holds_scale_in_for_the_window():
    policy = PredictivePolicy(PredictiveAnnotations(mode="proactive"))
    policy.set_plan(_plan([5] * 3 + [1] * 20))
    assert policy.decide(MONDAY, 0, 0).replicas == 5
    assert policy.decide(MONDAY + 180, 0, 5).replicas == 5  # held
    assert policy.decide(MONDAY + 300, 0, 5).replicas == 5  # 300 s after the 5
    assert policy.decide(MONDAY + 361, 0, 5).replicas == 1


def test_an_untrusted_plan_adds_nothing():
    """A plan without a period (an EWMA level) or from under min-history is not acted on."""
    policy = PredictivePolicy(PredictiveAnnotations())
    zeros = np.zeros(10)
    flat = ForecastResult(zeros, zeros, (), "ewma", "no period")
    policy.set_plan(Plan(MONDAY, np.array([3] * 10), flat, 2, 10.0, 5 * 1440))
    assert policy.decide(MONDAY, 1, 1).replicas == 1


def test_modes():
    plan = _plan([4] * 10)
    for mode, expected in (("proactive", 4), ("reactive", 9), ("observer", 9)):
        policy = PredictivePolicy(PredictiveAnnotations(mode=mode), max_scale=20)
        policy.set_plan(plan)
        d = policy.decide(MONDAY, reactive_desired=9, current_replicas=3)
        assert (d.replicas, d.mode_used, d.recommended) == (expected, mode, 9), d.reason
    policy = PredictivePolicy(PredictiveAnnotations(mode="proactive"))
    policy.set_plan(plan)
    assert policy.decide(MONDAY, 0, 3).replicas == 4


def test_observer_until_enough_history_and_says_so():
    policy = PredictivePolicy(PredictiveAnnotations(), min_scale=0)
    d = policy.decide(MONDAY, 2, 2)
    assert (d.mode_used, d.replicas) == ("observer", 2)
    assert d.reason.startswith("observer (runs as the KPA): 0s of history, need 2d for a plan")
    policy.set_plan(_plan([6] * 10, history_days=3 / 24))
    d = policy.decide(MONDAY, 2, 2)
    assert d.mode_used == "observer" and d.replicas == 2 and d.recommended == 2
    assert "3h of history, need 2d" in d.reason
    assert f"0 idle gaps seen, need {MIN_GAPS}" in d.reason


def test_stale_plan_falls_back_to_reactive_and_bounds_always_apply():
    policy = PredictivePolicy(
        PredictiveAnnotations(bounds=parse_bounds("MON-FRI 08:00-18:00 min=2")), max_scale=5
    )
    policy.set_plan(_plan([0] * 10))
    d = policy.decide(MONDAY + DAY_S, reactive_desired=0, current_replicas=0)
    assert (d.mode_used, d.planned, d.replicas) == ("auto", None, 0)
    assert policy.decide(at(1, 9), 0, 0).replicas == 2
    assert policy.decide(at(1, 9), 40, 0).replicas == 5
    assert policy.decide(MONDAY + 60, -1, 3).reactive == 3  # KPA without data: keep current


def test_human_duration():
    assert [human_duration(s) for s in (0, 45, 3 * 3600, 2 * DAY_S, 1.5 * DAY_S, 5400)] == [
        "0s",
        "45s",
        "3h",
        "2d",
        "1d12h",
        "1h30m",
    ]


def test_a_plan_of_one_replica_leaves_the_first_replica_to_the_warm_decision():
    """A sparse service's expected demand rounds to one replica in the minutes where last week
    had a request: that is a guess no price weighed, so it does not hold a replica the KPA
    (or the priced warm decision) would release. Two or more planned replicas are capacity
    for a predictable rise, and are added."""
    policy = PredictivePolicy(PredictiveAnnotations())
    policy.set_plan(_plan([1] * 10 + [3] * 10))
    one = policy.decide(MONDAY, reactive_desired=0, current_replicas=1)
    assert (one.planned, one.replicas) == (1, 0)
    three = policy.decide(MONDAY + 600, reactive_desired=0, current_replicas=0)
    assert (three.planned, three.replicas) == (3, 3)
