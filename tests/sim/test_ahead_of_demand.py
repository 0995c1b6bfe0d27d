"""Replicas held ahead of demand yield to requests that wait for room (docs/pools.md,
"Replicas ahead of demand"): in the simulator, a predictive service's warm replica gives its GPU
to another service's request instead of keeping it waiting."""

from __future__ import annotations

import numpy as np

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.pools import parse_pools
from tidal.api.predictive import parse_predictive_annotations
from tidal.autoscaler.kpa import decider_spec
from tidal.scheduler.placement import Demand
from tidal.sim import ServiceModel, Simulation
from tidal.sim.dists import parse_distribution
from tidal.sim.traces import Trace

ONE_GPU = [{"name": "gpu", "capacity": {"nvidia.com/gpu": [0]}}]
# A day of history with a request every three minutes: hundreds of idle gaps to price the warm
# decision on at once, and a dear price (a day of replica time per cold start).
HISTORY = np.tile([1.0, 0.0, 0.0], 480)
HOLD = {"tidal.dev/cold-start-cost": "1d", "tidal.dev/min-history": "1d"}


def gpu_service(name: str) -> ServiceModel:
    config = AutoscalerConfig()
    spec = decider_spec(config, parse_autoscaling_annotations({}, config), 1)
    return ServiceModel(
        name,
        spec,
        1,
        timeout_s=300.0,
        demand=Demand(gpus=1),
        predictive=parse_predictive_annotations(HOLD),
    )


def two_services(skip: bool = True) -> Simulation:
    """`a` is called at 100 s, `b` at 320 s, with one GPU between them. Each new revision
    starts one replica (Knative's initial scale) that the KPA keeps for a minute or so: a's
    until 76 s, then b's until 150 s, so a's request waits for b's. Then a's warm decision,
    priced on gaps of about 150 s, releases its replica and pre-warms one at 284 s for the
    next request it expects: a replica ahead of demand, on the GPU b's request needs."""
    arrivals = np.array([100.0, 320.0])
    trace = Trace(
        "two", arrivals, 2000.0, 1_700_000_000.0, services=("a", "b"), service_of=np.array([0, 1])
    )
    return Simulation(
        trace,
        [gpu_service("a"), gpu_service("b")],
        "predictive",
        parse_pools(ONE_GPU),
        np.array([1.0, 1.0]),
        parse_distribution("const:10"),
        skip=skip,
        prior_history=HISTORY,
    )


def test_a_warm_replica_gives_its_gpu_to_a_waiting_request():
    result = two_services().run()
    assert result.status.tolist() == [0, 0]
    # a's request waited for b's initial replica: the KPA's own, not ahead of demand.
    assert result.wait()[0] > 40.0
    # a's pre-warmed replica was ready when b's request came ...
    assert result.ready[300] == 1
    # ... and was stopped for it at once: b waited only for its own replica's 10 s start-up,
    # not until a's warm decision let go of the GPU (at 344 s).
    assert 10.0 <= result.wait()[1] < 11.0
    assert result.cold.tolist() == [True, True]


def test_yielding_matches_the_per_second_replay():
    fast, slow = two_services(skip=True).run(), two_services(skip=False).run()
    assert np.array_equal(fast.latency, slow.latency, equal_nan=True)
    assert np.array_equal(fast.ready, slow.ready)
    assert fast.service_usage == slow.service_usage
