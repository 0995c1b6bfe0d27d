"""Predictive scaling on every metric (docs/autoscaling.md#predictive-on-every-metric): the
plan forecasts the metric the revision scales on, in its own unit, and turns the forecast into
replicas with that metric's per-replica target."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.predictive import parse_predictive_annotations
from tidal.autoscaler.kpa import decider_spec
from tidal.autoscaler.predictive.bounds import Bounds
from tidal.autoscaler.predictive.policy import PredictivePolicy
from tidal.autoscaler.predictive.refit import build_models
from tidal.autoscaler.predictive.synthetic import MONDAY
from tidal.autoscaler.signals import (
    MIB,
    MetricAutoscaler,
    MetricFeed,
    Usage,
    demand_series,
    metric_target,
    plan_columns,
    planning_spec,
)

DAY = 1440


def spec(**annotations: str):
    config = AutoscalerConfig.from_mapping({})
    ann = parse_autoscaling_annotations(
        {f"autoscaling.knative.dev/{k}": v for k, v in annotations.items()}, config
    )
    return decider_spec(config, ann, 0)


@pytest.mark.parametrize(
    "metric, target, per",
    [
        ("cpu", 60, 0.3),  # 60 % of a 500m request: 0.3 cores
        ("memory", 512, 512.0),  # MiB
        ("gpu", 70, 70.0),  # % of a GPU
        ("rt", 250, 250.0),  # ms (the series is ms x ready replicas)
    ],
)
def test_plans_are_sized_with_the_metric_target_in_its_own_unit(metric, target, per):
    base = spec()
    plan = planning_spec(base, metric_target(metric, target, 0.5, None))
    assert plan.scaling_metric == metric
    assert math.isclose(plan.target_value, per)
    assert (plan.min_scale, plan.max_scale) == (base.min_scale, base.max_scale)


def test_concurrency_and_rps_plans_keep_the_deciders_spec():
    base = spec(metric="rps", target="20")
    assert planning_spec(base, None) is base
    assert planning_spec(base, metric_target("rps", 20, None, None)) is base
    assert plan_columns("rps") == ("requests",)


def test_demand_series_in_the_plans_unit_with_idle_minutes_as_zero():
    nan = math.nan
    columns = {
        "requests": np.array([60.0, 0.0, 120.0, nan, 30.0]),
        "avg_concurrency": np.array([1.0, 0.0, 2.0, nan, 0.5]),
        "cpu_cores": np.array([0.9, 0.02, 1.8, nan, nan]),  # idle replica burns 0.02 cores
        "memory_bytes": np.array([300.0, 200.0, 400.0, nan, nan]) * MIB,
        "gpu_percent*ready_replicas": np.array([150.0, 10.0, 180.0, nan, nan]),
        "mean_rt*ready_replicas": np.array([0.4, nan, 0.6, nan, 0.2]),
    }
    cpu = demand_series("cpu", columns)
    # Idle minute: no demand (a gap), not the idle replica's 0.02 cores. Unmeasured: missing.
    np.testing.assert_allclose(cpu, [0.9, 0.0, 1.8, nan, nan])
    np.testing.assert_allclose(demand_series("memory", columns), [300, 0, 400, nan, nan])
    np.testing.assert_allclose(demand_series("gpu", columns), [150, 0, 180, nan, nan])
    np.testing.assert_allclose(demand_series("rt", columns), [400, 0, 600, nan, 200])
    np.testing.assert_allclose(demand_series("rps", columns), [1, 0, 2, nan, 0.5])
    np.testing.assert_allclose(demand_series("concurrency", columns), [1, 0, 2, nan, 0.5])


def cpu_history(days: int) -> np.ndarray:
    """Cores per minute: 2.4 from 09:00 to 17:00, 0.3 otherwise, every day."""
    hour = (np.arange(days * DAY) % DAY) / 60.0
    return np.where((hour >= 9) & (hour < 17), 2.4, 0.3)


def test_predictive_plans_and_decides_on_cpu_cores_over_the_cpu_target():
    """Four days of CPU use with a daily rhythm; a 500m request at 60 % (0.3 cores per
    replica): the plan runs 2.4 / 0.3 = 8 replicas by day and 1 at night, led by its lead,
    and the policy acts on it while the reactive part asks for one."""
    history = cpu_history(4)
    start = MONDAY + 4 * 86_400.0
    settings = parse_predictive_annotations({})
    plan_on = planning_spec(spec(), metric_target("cpu", 60, 0.5, None))
    bounds = Bounds(0, 0, settings.bounds, settings.timezone)
    plan, _, _ = build_models(history, start, plan_on, settings, 2, 60.0, bounds, [], None)
    assert plan.periods and math.isclose(plan.target_per_replica, 0.3)
    policy = PredictivePolicy(settings)
    policy.set_plan(plan)
    noon, night = start + 12 * 3600.0, start + 3 * 3600.0
    assert policy.decide(noon, 1, 1, None).planned == 8
    assert policy.decide(noon, 1, 1, None).replicas == 8
    assert policy.decide(night, 1, 1, None).planned == 1
    # Led by two minutes: replicas are ready before the 09:00 rise, not after it.
    assert policy.decide(start + 9 * 3600.0 - 90.0, 1, 1, None).planned == 8
    # The same figures read as concurrency at its default target (70) would plan nothing.
    as_concurrency, _, _ = build_models(history, start, spec(), settings, 2, 60.0, bounds, [], None)
    assert as_concurrency.replicas_at(noon) == 0


def test_the_predictive_autoscaler_sees_no_load_in_seconds_without_requests():
    """An idle replica's memory is not demand: the KPA-like classes get zero for a second with
    no request (so they scale to zero and the predictive class sees idle gaps), and the
    measured figure while requests run."""
    from tidal.autoscaler.kpa import RevisionAutoscaler
    from tidal.autoscaler.predictive.autoscaler import PredictiveAutoscaler
    from tidal.autoscaler.signals import signal_spec

    kpa = RevisionAutoscaler(signal_spec(spec()), 0.0, ready=1, initialized=True)
    predictive = PredictiveAutoscaler(kpa, PredictivePolicy(parse_predictive_annotations({})))
    scaler = MetricAutoscaler(predictive, MetricFeed(metric_target("memory", 100, None, None), 60))
    scaler.tick(0.0, 1)
    for t in range(0, 20):
        scaler.record_usage(float(t), Usage(replicas=1, memory_bytes=80 * MIB))
        busy = t < 5 or t >= 15
        scaler.record(float(t), 1.0 if busy else 0.0, 1.0 if busy else 0.0)
    assert [(round(g.start), round(g.length)) for g in predictive.gaps] == [(4, 11)]
    assert "memory 80Mi per replica" in scaler.feed.describe()
