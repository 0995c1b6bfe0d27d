"""Baseline autoscalers: each rule they claim, driven as the scaling loop drives them."""

from __future__ import annotations

import pytest

from tidal.api.autoscaling import HPA, AutoscalerConfig, parse_autoscaling_annotations
from tidal.autoscaler.baselines import (
    HPAAutoscaler,
    HybridHistogramAutoscaler,
    make_autoscaler,
    policy_for_class,
)
from tidal.autoscaler.kpa import RevisionAutoscaler, decider_spec
from tidal.autoscaler.signals import Usage


def spec(cc=1, **annotations):
    config = AutoscalerConfig()
    ann = parse_autoscaling_annotations(
        {f"autoscaling.knative.dev/{k.replace('_', '-')}": v for k, v in annotations.items()},
        config,
    )
    return decider_spec(config, ann, cc)


def drive(scaler, concurrency, start, end, ready=None):
    """Record `concurrency` every second and tick every 2 s over [start, end); returns the
    replica count after each tick (ready follows the count when not given)."""
    counts = []
    current = scaler.replicas or 0
    for t in range(start, end):
        if isinstance(scaler, HPAAutoscaler) and current:
            # CPU as the simulator models it: the requests in service (at most CC per
            # replica) each burn one core; a queue burns nothing.
            busy = min(concurrency, current * scaler.spec.total_value)
            scaler.record_usage(float(t), Usage(replicas=current, cpu_cores=busy))
        scaler.record(float(t), concurrency, concurrency)
        if t % 2 == 0:
            decision = scaler.tick(float(t), current if ready is None else ready)
            if decision.replicas is not None:
                current = decision.replicas
            counts.append(current)
    return counts


def test_hpa_syncs_every_15s_never_goes_to_zero_and_stabilises_scale_down():
    hpa = make_autoscaler("hpa", spec(cc=1), 0.0)
    assert not hpa.poke(0.0, 1.0)
    up = drive(hpa, 4.0, 0, 60)
    assert up[0] == 1 and max(up) > 1
    # CPU is that of requests in service, so at CC=1 one replica shows 1 core against a target
    # of 0.8: x1.25 per sync, not a jump to 4/0.8.
    assert up[8] <= 2
    peak = up[-1]
    down = drive(hpa, 0.0, 60, 400)
    assert down[: 290 // 2].count(peak) == len(down[: 290 // 2])  # held for 300 s
    assert down[-1] == 1


def test_ray_waits_30s_up_600s_down_and_leaves_zero_at_once():
    ray = make_autoscaler("ray", spec(cc=1), 0.0)
    assert drive(ray, 0.0, 0, 4) == [0, 0]
    ray.record(4.0, 1.0, 1.0)
    assert ray.poke(4.0, 1.0)
    assert ray.tick(4.0, 0).replicas == 1
    up = drive(ray, 3.0, 5, 60)
    first_up = next(i for i, n in enumerate(up) if n > 1)
    assert 15 <= first_up <= 22  # 30 s of same-direction decisions, after the 10 s metric lag
    down = drive(ray, 0.0, 60, 800)
    assert down[280] > 1 and down[-1] < up[-1]


def test_keepalive_keeps_replicas_ten_minutes_after_use():
    keep = make_autoscaler("keepalive", spec(cc=1), 0.0)
    assert drive(keep, 2.0, 0, 10)[-1] == 3  # ceil(2 / 0.7)
    idle = drive(keep, 0.0, 10, 700)
    assert idle[590 // 2 - 5] == 3 and idle[-1] == 0


def test_hybrid_histogram_prewarms_a_regular_app():
    hybrid = HybridHistogramAutoscaler(spec(cc=1))
    # Uncertain at first: kept for the whole 4 h range.
    drive(hybrid, 0.5, 0, 4)
    assert drive(hybrid, 0.0, 4, 40)[-1] == 1
    # A request every ~10 minutes: the histogram becomes representative; after a call the
    # replica is unloaded and comes back just before the next (p5 x 0.9 = 9 min x 0.9).
    t = 40
    for _ in range(30):
        drive(hybrid, 0.5, t, t + 4)
        drive(hybrid, 0.0, t + 4, t + 10)
        t += 600
    drive(hybrid, 0.5, t, t + 4)
    counts = drive(hybrid, 0.0, t + 4, t + 600)
    assert counts[10] == 0  # unloaded after the execution
    assert counts[500 // 2 - 2] == 1  # pre-warmed at ~8.1 min after the idle start


def test_peak_is_fixed():
    peak = make_autoscaler("peak", spec(), 0.0, peak_replicas=3)
    assert drive(peak, 0.0, 0, 20) == [3] * 10


def test_factory_and_classes():
    assert isinstance(make_autoscaler("kpa", spec(), 0.0), RevisionAutoscaler)
    assert policy_for_class(HPA) == "hpa"
    with pytest.raises(ValueError, match="unknown autoscaler"):
        make_autoscaler("nope", spec(), 0.0)
    with pytest.raises(ValueError, match="unknown autoscaler class"):
        policy_for_class("x.example.com")


def test_sweep_knobs_are_settings_the_baselines_take():
    from tidal.autoscaler.baselines import SETTINGS
    from tidal.sim.sweep import SWEEPS, settings_for

    for policy, knobs in SWEEPS.items():
        for knob in knobs:
            assert "/" in knob or knob in SETTINGS[policy], (policy, knob)
        for point in settings_for(policy)[1:]:
            if point.settings:
                scaler = make_autoscaler(policy, spec(), 0.0, settings=point.settings)
                for name, value in point.settings.items():
                    assert getattr(scaler, name) == value
    with pytest.raises(ValueError, match="keepalive has no setting tail"):
        make_autoscaler("keepalive", spec(), 0.0, settings={"tail": 0.9})
