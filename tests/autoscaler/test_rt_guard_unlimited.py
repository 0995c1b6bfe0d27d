"""The RT guard with unlimited concurrency (containerConcurrency 0): nothing queues in the
gateway, and the time on a replica includes sharing it, so more replicas help until every
request in flight has a replica of its own, and not after (docs/autoscaling.md#response-time)."""

from __future__ import annotations

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.autoscaler.kpa import RevisionAutoscaler, decider_spec
from tidal.autoscaler.signals import MetricAutoscaler, MetricFeed, metric_target, signal_spec


def feed() -> MetricFeed:
    return MetricFeed(metric_target("rt", 200, None, None), 6, container_concurrency=0)


def test_sharing_a_replica_is_not_mistaken_for_service_time():
    """Four requests share one replica and each takes 600 ms on it (RT = service time, no
    gateway queue): with CC 0 that is contention more replicas remove, so scale out."""
    f = feed()
    f.record_latency(0.0, [(0.6, 0.6)] * 4)
    value, _ = f.value(0.0, 4.0, 1)
    assert value == 2.0  # 3x over target, at most doubled per second
    assert not f.guarded and not f.view()["guarded"]
    assert "cannot lower RT" not in f.describe()


def test_with_a_replica_per_request_and_rt_still_over_target_it_says_so_and_holds():
    f = feed()
    f.record_latency(0.0, [(0.3, 0.3)] * 4)
    value, _ = f.value(0.0, 4.0, 4)
    assert value == 4.0  # never more replicas than requests in flight
    assert f.guarded and f.view()["guarded"]
    assert "already has a replica of its own" in f.describe()
    assert "more replicas cannot lower RT" in f.describe()
    # Fewer requests: it scales in with them, still guarded.
    f.record_latency(1.0, [(0.3, 0.3)] * 2)
    assert f.value(1.0, 2.0, 4)[0] == 2.0 and f.guarded
    # Under target: no longer guarded.
    f.record_latency(2.0, [(0.15, 0.15)] * 2)
    f.value(2.0, 2.0, 2)
    assert not f.guarded


def test_kpa_on_rt_with_cc_0_stops_at_one_replica_per_request_not_max_scale():
    """300 ms of service time against a 200 ms target, 3 requests always in flight, max-scale
    10: the KPA scales to 3 (one per request), RT stays 300 ms, and it goes no further."""
    config = AutoscalerConfig.from_mapping({"stable-window": "6s"})
    ann = parse_autoscaling_annotations(
        {"autoscaling.knative.dev/metric": "rt", "autoscaling.knative.dev/max-scale": "10"},
        config,
    )
    kpa = RevisionAutoscaler(signal_spec(decider_spec(config, ann, 0)), 0.0, ready=1)
    scaler = MetricAutoscaler(kpa, feed())
    ready, most = 1, 1
    for t in range(0, 120):
        share = max(3 / ready, 1.0)  # requests per replica: each one's time stretches with it
        scaler.record_latency(float(t), [(0.3 * share, 0.3 * share)] * 3)
        scaler.record(float(t), 3.0, 10.0)
        if t % 2 == 0:
            ready = scaler.tick(float(t), ready).replicas or ready
            most = max(most, ready)
    assert ready == 3 and most == 3
    assert "already has a replica of its own" in scaler.tick(120.0, ready).reason
