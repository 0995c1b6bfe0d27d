"""The simulator scales on RT and CPU as the live platform does (tidal.autoscaler.signals fed from
the replay): RT from the gateway's view of each request, CPU from the requests in service."""

from __future__ import annotations

import numpy as np

from tidal.api.autoscaling import CPU, RT, AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.pools import parse_pools
from tidal.autoscaler.kpa import decider_spec
from tidal.autoscaler.signals import MetricTarget
from tidal.sim import ServiceModel, Simulation
from tidal.sim.dists import parse_distribution
from tidal.sim.traces import Trace

FAST = {"stable-window": "6s", "scale-to-zero-grace-period": "1s"}


def model(metric: MetricTarget | None, cc: int = 1, annotations=None) -> ServiceModel:
    config = AutoscalerConfig.from_mapping(FAST)
    ann = parse_autoscaling_annotations(annotations or {}, config)
    return ServiceModel("svc", decider_spec(config, ann, cc), cc, 300.0, metric=metric)


def replay(svc: ServiceModel, policy: str, rate: float = 8.0, seconds: float = 120.0):
    """Poisson arrivals at `rate`/s (seeded) of 100 ms requests."""
    gaps = np.random.default_rng(7).exponential(1.0 / rate, int(rate * seconds * 1.2))
    arrivals = np.cumsum(gaps)
    arrivals = arrivals[arrivals < seconds]
    trace = Trace("steady", arrivals, seconds + 30)
    times = np.full(len(arrivals), 0.1)
    sim = Simulation(trace, svc, policy, parse_pools(None), times, parse_distribution("1"))
    return sim.run()


def test_rt_metric_adds_replicas_until_rt_is_under_target():
    """8 requests/s of 100 ms at CC=1: one replica is 80 % busy and queues; a 120 ms RT target
    needs a second replica, after which RT is the service time."""
    result = replay(model(MetricTarget(RT, 0.120)), "kpa")
    late = result.arrivals > 60
    assert result.replicas[60:120].max() >= 2
    assert np.nanmean(result.latency[late]) < 0.120
    # Concurrency alone at target 1 (CC=1) would run about one replica per request in flight;
    # RT asks for no more than it needs.
    assert result.replicas[60:120].max() <= 3


def test_rt_target_under_service_time_does_not_run_to_max_scale():
    """A 50 ms target under 100 ms requests: the guard scales only to remove the queue."""
    svc = model(MetricTarget(RT, 0.050), annotations={"autoscaling.knative.dev/max-scale": "10"})
    result = replay(svc, "kpa")
    assert result.replicas[60:120].max() <= 3


def test_hpa_on_simulated_cpu_scales_with_work_not_with_queue_length():
    """One core per request in service, a 1-core request at 50 %: 0.8 cores of work at CC=1
    needs two replicas, however long the queue grows."""
    svc = model(MetricTarget(CPU, 0.5), cc=1)
    result = replay(svc, "hpa")
    assert 2 <= result.replicas[60:120].max() <= 3


def test_event_skipping_changes_nothing_when_scaling_on_rt_or_cpu():
    """Bursts with idle gaps between them: skipping the idle ticks gives the same replay."""
    rng = np.random.default_rng(1)
    arrivals = np.sort(np.concatenate([rng.uniform(s, s + 60, 400) for s in (0, 600, 1500)]))
    for metric, policy in ((MetricTarget(RT, 0.12), "kpa"), (MetricTarget(CPU, 0.5), "hpa")):
        runs = []
        for skip in (True, False):
            trace = Trace("bursts", arrivals, 2400.0)
            times = np.full(len(arrivals), 0.1)
            pools, startup = parse_pools(None), parse_distribution("1")
            sim = Simulation(trace, model(metric), policy, pools, times, startup, skip=skip)
            result = sim.run()
            runs.append((result.replicas.tolist(), np.nan_to_num(result.latency).tolist()))
        assert runs[0] == runs[1], policy
