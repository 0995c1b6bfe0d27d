"""The event-skipping replay gives exactly the per-second replay's results, for every policy, on
traces of different shapes (sparse clusters, a busy diurnal day, whole-second timestamps, a
fleet sharing a small pool)."""

from __future__ import annotations

import numpy as np
import pytest

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.pools import parse_pools
from tidal.api.predictive import parse_predictive_annotations
from tidal.autoscaler.kpa import decider_spec
from tidal.scheduler.placement import Demand
from tidal.sim import POLICIES, ServiceModel, Simulation
from tidal.sim.dists import parse_distribution
from tidal.sim.traces import Trace, sparse_trace, synthetic_trace

PREDICTIVE = {"tidal.dev/min-history": "2h", "tidal.dev/stabilization-window": "120s"}


def model(name="svc", cc=2, annotations=None, gpus=0) -> ServiceModel:
    config = AutoscalerConfig()
    ann = parse_autoscaling_annotations(annotations or {}, config)
    return ServiceModel(
        name,
        decider_spec(config, ann, cc),
        cc,
        timeout_s=60.0,
        demand=Demand(gpus=gpus),
        predictive=parse_predictive_annotations(PREDICTIVE),
    )


def whole_seconds() -> Trace:
    """Arrivals on whole seconds, so requests and ticks share instants."""
    rng = np.random.default_rng(5)
    gaps = rng.choice([1, 2, 30, 61, 200, 900], size=300, p=[0.4, 0.2, 0.2, 0.1, 0.07, 0.03])
    arrivals = np.cumsum(gaps).astype(float)
    return Trace("whole", arrivals, float(arrivals[-1]) + 600.0, 1_700_000_000.0)


CASES = {
    "sparse": (sparse_trace(days=0.3, mean_rps=0.05, seed=3), None),
    "diurnal": (synthetic_trace(days=0.1, mean_rps=3.0, seed=4), None),
    "whole-seconds": (whole_seconds(), {"autoscaling.knative.dev/window": "20s"}),
    "fleet": (sparse_trace(days=0.2, mean_rps=0.08, seed=6, services=4), None),
    "fleet-busy": (sparse_trace(days=0.15, mean_rps=0.2, seed=9, services=3), None),
}


def replay(case: str, policy: str, skip: bool):
    trace, annotations = CASES[case]
    pools = parse_pools(None)
    services: ServiceModel | list[ServiceModel] = model(annotations=annotations)
    if trace.services:
        pools = parse_pools(
            [
                {"name": "gpu", "capacity": {"nvidia.com/gpu": [0, 1]}},
                {"name": "spill", "startupDelay": "20s", "capacity": {"nvidia.com/gpu": [2, 3]}},
            ]
        )
        services = [model(name, gpus=1) for name in trace.services]
    times = parse_distribution("exp:2").sample(len(trace), np.random.default_rng(1))
    startup = parse_distribution("uniform:5,40")
    sim = Simulation(trace, services, policy, pools, times, startup, skip=skip)
    return sim.run()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("policy", POLICIES)
def test_event_skipping_matches_ticking_every_second(case, policy):
    fast, slow = replay(case, policy, True), replay(case, policy, False)
    assert np.array_equal(fast.latency, slow.latency, equal_nan=True)
    assert np.array_equal(fast.status, slow.status)
    assert np.array_equal(fast.cold, slow.cold)
    assert fast.cold_starts == slow.cold_starts
    assert np.array_equal(fast.ready, slow.ready)
    assert np.array_equal(fast.replicas, slow.replicas)
    assert fast.usage == slow.usage
    assert fast.service_usage == slow.service_usage


def test_blocked_placement_is_not_retried_and_changes_nothing(monkeypatch):
    """Four services on four GPUs: some wait for capacity. The skipping replay asks the
    scheduler less often (a placement that failed is retried once capacity is freed) and still
    gives the per-second replay's result."""
    import tidal.sim.model as sim_model

    calls = {True: 0, False: 0}
    mode = {"skip": True}

    def counting(*args, **kwargs):
        calls[mode["skip"]] += 1
        return place(*args, **kwargs)

    place = sim_model.place
    monkeypatch.setattr(sim_model, "place", counting)
    fast = replay("fleet-busy", "kpa", True)
    mode["skip"] = False
    slow = replay("fleet-busy", "kpa", False)
    assert 0 < calls[True] < calls[False]
    assert np.array_equal(fast.status, slow.status)
    assert np.array_equal(fast.latency, slow.latency, equal_nan=True)
    assert fast.service_usage == slow.service_usage
