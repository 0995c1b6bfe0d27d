"""Replica-equivalents from RT and resource use, the RT guard, and HPA's algorithm on them."""

from __future__ import annotations

import math

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.autoscaler.baselines import HPAAutoscaler
from tidal.autoscaler.kpa import RevisionAutoscaler, decider_spec
from tidal.autoscaler.signals import (
    MIB,
    MetricAutoscaler,
    MetricFeed,
    Usage,
    metric_target,
    signal_spec,
)


def spec(**annotations):
    config = AutoscalerConfig.from_mapping({"stable-window": "6s"})
    ann = parse_autoscaling_annotations(
        {f"autoscaling.knative.dev/{k.replace('_', '-')}": v for k, v in annotations.items()},
        config,
    )
    return decider_spec(config, ann, 1)


def test_targets_in_the_units_knative_and_ack_write():
    assert metric_target("cpu", 50, 0.2, None).per_replica == 0.1  # 50 % of 200m
    assert metric_target("cpu", None, 1.0, None).per_replica == 0.8  # Kubernetes' default 80 %
    assert metric_target("memory", 512, None, None).per_replica == 512 * MIB
    assert metric_target("gpu", 60, None, None).per_replica == 60
    rt = metric_target("rt", 200, None, 95)
    assert rt.per_replica == 0.2 and rt.rt_percentile == 95


def test_resource_feed_sums_usage_over_the_measured_replicas():
    feed = MetricFeed(metric_target("cpu", 50, 0.2, None), 6)
    feed.record_usage(Usage(replicas=2, cpu_cores=0.5))
    assert feed.value(0.0, 3.0, 2) == (5.0, 2)  # 0.5 cores over 0.1 per replica
    assert feed.value(1.0, 3.0, 2) == (0.0, 0)  # nothing measured this second
    feed = MetricFeed(metric_target("gpu", 50, None, None), 6)
    feed.record_usage(Usage(replicas=2, gpu_percent=190.0, gpu_replicas=2))
    assert feed.value(0.0, 0.0, 2) == (3.8, 2)


def test_rt_feed_scales_with_rt_over_target_and_holds_within_tolerance():
    feed = MetricFeed(metric_target("rt", 200, None, None), 6)
    feed.record_latency(0.0, [(0.3, 0.1), (0.3, 0.1)])
    assert math.isclose(feed.value(0.0, 4.0, 2)[0], 3.0)  # 2 x 300/200
    assert feed.value(0.0, 2.5, 2)[0] == 2.5  # never more than the requests in flight
    feed.record_latency(1.0, [(0.21, 0.1)])
    assert feed.value(1.0, 3.0, 2)[0] == 2  # 5 % over: hold
    assert feed.value(2.0, 3.0, 2)[0] == 2  # in flight, none answered: the last figure
    assert feed.value(3.0, 0.0, 2)[0] == 0  # nothing in flight or answered: no load


def test_rt_samples_count_at_their_own_tick_only():
    """A tick's answers are that stat period's RT, not the next one's too, also at epoch
    times (where a second minus 1e-9 is the second itself) and exactly a second apart."""
    epoch = 1_700_000_000.0
    feed = MetricFeed(metric_target("rt", 200, None, None), 60)
    feed.record_latency(epoch, [(0.4, 0.1)])
    assert math.isclose(feed.value(epoch, 2.0, 1)[0], 2.0)  # 400/200, one replica
    assert feed.value(epoch + 1.0, 0.0, 1)[0] == 0  # next tick: nothing in flight, none new
    feed.record_latency(4.0, [(2.0, 0.1)])
    assert feed.value(4.0, 5.0, 1)[0] == 2  # a burst of queueing: at most double


def test_rt_percentile_reads_the_tail():
    feed = MetricFeed(metric_target("rt", 200, None, 90), 6)
    feed.record_latency(0.0, [(0.1, 0.1)] * 9 + [(1.0, 0.1)])
    feed.value(0.0, 1.0, 1)
    assert 0.1 < feed.observed < 1.0 and feed.view()["percentile"] == 90


def test_rt_guard_when_the_service_time_alone_is_over_target():
    feed = MetricFeed(metric_target("rt", 200, None, None), 6, container_concurrency=1)
    feed.record_latency(0.0, [(0.6, 0.3), (0.6, 0.3)])
    value, _ = feed.value(0.0, 4.0, 1)
    assert feed.guarded and feed.view()["guarded"]
    assert math.isclose(value, 0.6 / 0.33)  # against 1.1 x the service time, not 200 ms
    assert "more replicas cannot lower RT" in feed.describe()
    feed.record_latency(1.0, [(0.34, 0.3)])
    assert feed.value(1.0, 3.0, 2)[0] == 2  # queue gone: hold, do not run to max-scale


def test_kpa_on_rt_scales_out_then_back_in():
    kpa = RevisionAutoscaler(
        signal_spec(spec(metric="rt", target="200")), 0.0, ready=1, initialized=True
    )
    scaler = MetricAutoscaler(kpa, MetricFeed(metric_target("rt", 200, None, None), 6))
    ready = 1
    for t in range(0, 12):
        # One replica queues requests to 500 ms; two serve them in 150 ms.
        scaler.record_latency(float(t), [(0.5 if ready == 1 else 0.15, 0.1)])
        scaler.record(float(t), 2.0, 4.0)
        if t % 2 == 0:
            decision = scaler.tick(float(t), ready)
            ready = decision.replicas or ready
    assert ready == 2 and "rt mean 150ms, target 200ms" in decision.reason
    for t in range(12, 40):
        scaler.record_latency(float(t), [(0.05, 0.05)])
        scaler.record(float(t), 0.5, 4.0)
        if t % 2 == 0:
            ready = scaler.tick(float(t), ready).replicas or ready
    assert ready == 1  # 2 x 50/200 = 0.5: one is enough


def drive(hpa: HPAAutoscaler, cores: float, start: int, end: int, ready: int) -> int:
    """`cores` of work spread over the ready replicas, a sample a second, a tick each 2 s."""
    for t in range(start, end):
        hpa.record_usage(float(t), Usage(replicas=ready, cpu_cores=cores))
        hpa.record(float(t), 1.0, 1.0)
        if t % 2 == 0:
            ready = hpa.tick(float(t), ready).replicas or ready
    return ready


def cpu_hpa(**kw) -> HPAAutoscaler:
    target = metric_target("cpu", 50, 0.2, None)
    return HPAAutoscaler(spec(max_scale="20"), feed=MetricFeed(target, 15), **kw)


def test_hpa_desired_is_ceil_of_current_times_observed_over_target():
    hpa = cpu_hpa(sync_s=2)
    assert drive(hpa, 0.15, 0, 10, 1) == 2  # 150 % of a 100m target: ceil(1.5), then holds
    hpa = cpu_hpa(sync_s=2)
    assert drive(hpa, 0.105, 0, 20, 1) == 1  # 5 % over: within the 10 % tolerance


def test_hpa_scale_up_rate_limit_and_scale_down_stabilization():
    hpa = cpu_hpa(sync_s=2, down_stabilization_s=20)
    assert drive(hpa, 1.0, 0, 2, 1) == 5  # wants 10: at most max(2x, +4) per sync
    assert drive(hpa, 1.0, 2, 4, 5) == 10
    ready = drive(hpa, 0.01, 4, 20, 10)
    assert ready == 10  # held for the 20 s window
    assert drive(hpa, 0.01, 20, 40, ready) == 1  # then down, never to zero


def test_hpa_without_a_cpu_request_says_so_and_holds():
    hpa = HPAAutoscaler(spec(), feed=MetricFeed(metric_target("cpu", 50, None, None), 15))
    hpa.record_usage(0.0, Usage(replicas=1, cpu_cores=2.0))
    hpa.record(0.0, 1.0, 1.0)
    decision = hpa.tick(0.0, 1)
    assert "missing request for cpu" in decision.reason
    assert hpa.tick(30.0, 1).replicas is None


def test_predictive_class_learns_and_decides_on_the_metric():
    """The predictive autoscaler under the feed: its reactive KPA and its idle-gap record see
    the replica-equivalents, and its own methods stay reachable for the planner."""
    from tidal.api.predictive import parse_predictive_annotations
    from tidal.autoscaler.predictive.autoscaler import PredictiveAutoscaler
    from tidal.autoscaler.predictive.policy import PredictivePolicy

    decider = signal_spec(spec(metric="rt", target="200"))
    kpa = RevisionAutoscaler(decider, 0.0, ready=1, initialized=True)
    policy = PredictivePolicy(parse_predictive_annotations({}), 0, 0)
    predictive = PredictiveAutoscaler(kpa, policy)
    scaler = MetricAutoscaler(predictive, MetricFeed(metric_target("rt", 200, None, None), 6))
    ready = 1
    for t in range(0, 10):
        scaler.record_latency(float(t), [(0.5 if ready == 1 else 0.15, 0.1)])
        scaler.record(float(t), 2.0, 4.0)
        if t % 2 == 0:
            ready = scaler.tick(float(t), ready).replicas or ready
    assert ready == 2
    assert predictive.observing_since == 0.0 and predictive._last_busy == 9.0
    scaler.set_plan(None)  # the planner's entry point passes through
    assert scaler.idle_since(20.0) == 9.0
