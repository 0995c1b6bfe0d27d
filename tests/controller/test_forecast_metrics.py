"""The live forecaster plans on the metric a predictive revision scales on, from the stored
per-minute history (docs/autoscaling.md#predictive-on-every-metric)."""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.predictive import parse_predictive_annotations
from tidal.autoscaler.kpa import decider_spec
from tidal.autoscaler.signals import metric_target, planning_spec
from tidal.controller.forecasting import Forecaster, demand_history
from tidal.store.history import MetricHistory, MinuteRollup

DAY = 1440


def rollup(minute: int, revision: str, **fields: float) -> MinuteRollup:
    base = dict(requests=60.0, avg_concurrency=1.0, peak_concurrency=2.0, p95_latency=None)
    return MinuteRollup("default", "svc", revision, minute, **{**base, **fields})


def test_forecaster_plans_on_stored_cpu_cores_over_the_cpu_target(tmp_path):
    """Four days of stored minutes whose CPU use follows the hour (2.4 cores 09-17 UTC, 0.3
    otherwise) while concurrency stays at 1: the plan is 8 replicas by day (2.4 cores over
    60 % of a 500m request), not what concurrency would ask."""
    history = MetricHistory(tmp_path / "state.db")
    end = int(time.time() // 60)
    rows = []
    for minute in range(end - 4 * DAY, end):
        hour = (minute % DAY) / 60.0
        cores = 2.4 if 9 <= hour < 17 else 0.3
        rows.append(rollup(minute, "svc-00001", cpu_cores=cores, ready_replicas=1.0))
    history.add(rows)
    config = AutoscalerConfig.from_mapping({})
    ann = parse_autoscaling_annotations(
        {
            "autoscaling.knative.dev/class": "predictive.tidal.dev",
            "autoscaling.knative.dev/metric": "cpu",
            "autoscaling.knative.dev/target": "60",
        },
        config,
    )
    spec = planning_spec(decider_spec(config, ann, 0), metric_target("cpu", 60, 0.5, None))
    plan = asyncio.run(
        Forecaster(history).build("default", "svc", spec, parse_predictive_annotations({}))
    )
    assert plan.periods and math.isclose(plan.target_per_replica, 0.3)
    minutes = (plan.start // 60 + np.arange(len(plan.replicas))) % DAY
    day = (minutes >= 10 * 60) & (minutes < 16 * 60)
    night = (minutes < 8 * 60) | (minutes >= 18 * 60)
    assert set(plan.replicas[day].tolist()) == {8}
    assert set(plan.replicas[night].tolist()) == {1}
    history.close()


def test_gpu_and_rt_history_are_weighted_by_each_revisions_replicas(tmp_path):
    """Two revisions in one minute: GPU % and RT are per-replica means in the history, so the
    demand adds each revision's mean times its ready replicas."""
    history = MetricHistory(tmp_path / "state.db")
    minute = int(time.time() // 60) - 1
    history.add(
        [
            rollup(minute, "svc-00001", ready_replicas=2.0, gpu_percent=50.0, mean_rt=0.3),
            rollup(minute, "svc-00002", ready_replicas=1.0, gpu_percent=90.0, mean_rt=0.1),
        ]
    )
    now = (minute + 1) * 60.0
    gpu, _ = demand_history(history, "default", "svc", "gpu", now)
    rt, _ = demand_history(history, "default", "svc", "rt", now)
    assert gpu[-1] == 2 * 50 + 90
    assert math.isclose(rt[-1], 1000 * (2 * 0.3 + 0.1))
    history.close()
