"""The event-skipping replay against the per-second one on seeded random configurations: trace
shape, pools, containerConcurrency, autoscaling annotations, time-out, service and start-up
times, and the metric scaled on. tests/sim/test_equivalence.py holds the hand-picked cases;
these cover the combinations nobody picked (a search like this over a few hundred of them found
the RT feed's idle skip, now a case there), and starved fleets of six services on a few GPUs."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.pools import parse_pools
from tidal.api.predictive import parse_predictive_annotations
from tidal.autoscaler.kpa import decider_spec
from tidal.autoscaler.signals import metric_target
from tidal.scheduler.placement import Demand
from tidal.sim import POLICIES, ServiceModel, Simulation
from tidal.sim.dists import parse_distribution
from tidal.sim.traces import Trace, sparse_trace

KPA = "autoscaling.knative.dev/"
ANNOTATIONS: dict[str, tuple[str, ...]] = {
    "window": ("6s", "20s", "120s"),
    "scale-to-zero-pod-retention-period": ("0s", "10s", "90s"),
    "target": ("1", "3"),
    "panic-threshold-percentage": ("110", "400"),
    "min-scale": ("0", "1"),
    "max-scale": ("1", "3"),
    "initial-scale": ("1", "2"),
}
POOLS: tuple[Any, ...] = (
    None,
    [{"name": "gpu", "capacity": {"nvidia.com/gpu": [0, 1]}}],
    [
        {"name": "reserved", "capacity": {"nvidia.com/gpu": [0]}},
        {"name": "elastic", "startupDelay": "30s", "capacity": {"nvidia.com/gpu": [1, 2]}},
    ],
)
METRICS = (
    None,
    None,
    ("rt", 800.0, None, None),
    ("rt", 800.0, None, 90.0),
    ("cpu", 50.0, 1.0, None),
    ("gpu", 80.0, None, None),
)


def bursts(rng: random.Random) -> Trace:
    """Bursts of tens of requests a few hundred ms apart between gaps of 30 s to 20 min."""
    gaps: list[float] = []
    for _ in range(30):
        gaps += [rng.expovariate(3.0) for _ in range(rng.randint(2, 20))]
        gaps.append(rng.uniform(30.0, 1200.0))
    arrivals = np.cumsum(gaps) + 1.0
    return Trace("bursts", arrivals, float(arrivals[-1]) + 300.0, 1_700_000_000.0)


def configuration(seed: int) -> tuple[Trace, list[ServiceModel], Any, str, str]:
    rng = random.Random(seed)
    if rng.random() < 0.5:
        services = rng.choice([1, 3, 8])
        trace = sparse_trace(days=0.05, mean_rps=0.2, seed=seed, services=services)
    else:
        trace = bursts(rng)
    config = AutoscalerConfig()
    annotations = {KPA + k: rng.choice(v) for k, v in ANNOTATIONS.items() if rng.random() < 0.3}
    cc = rng.choice([0, 1, 2, 4])
    pools = rng.choice(POOLS)
    metric = rng.choice(METRICS)
    predictive = parse_predictive_annotations(
        {"tidal.dev/min-history": "1h", "tidal.dev/stabilization-window": "30s"}
    )
    spec = decider_spec(config, parse_autoscaling_annotations(annotations, config), cc)
    models = [
        ServiceModel(
            name,
            spec,
            cc,
            timeout_s=rng.choice([10.0, 60.0, 300.0]),
            demand=Demand(gpus=0 if pools is None else 1),
            predictive=predictive,
            metric=None if metric is None else metric_target(*metric),
            memory_per_replica=2e8,
        )
        for name in trace.services or ("svc",)
    ]
    return trace, models, pools, rng.choice(["exp:2", "const:5"]), rng.choice(["uniform:5,40", "3"])


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("policy", POLICIES)
def test_random_configurations_replay_the_same_with_and_without_skipping(seed, policy):
    trace, models, pools, service_time, startup = configuration(seed)
    times = parse_distribution(service_time).sample(len(trace), np.random.default_rng(1))
    fast, slow = (
        Simulation(
            trace,
            models if len(models) > 1 else models[0],
            policy,
            parse_pools(pools),
            times,
            parse_distribution(startup),
            skip=skip,
        ).run()
        for skip in (True, False)
    )
    assert np.array_equal(fast.latency, slow.latency, equal_nan=True)
    assert np.array_equal(fast.status, slow.status)
    assert np.array_equal(fast.cold, slow.cold)
    assert np.array_equal(fast.ready, slow.ready)
    assert np.array_equal(fast.replicas, slow.replicas)
    assert fast.service_usage == slow.service_usage


def starved_fleet(seed: int) -> tuple[Trace, list[ServiceModel], Any, np.ndarray | None]:
    """Several services on one to four GPUs, each with its own annotations, containerConcurrency,
    time-out and pending cap, predictive with or without a daily history to plan on."""
    rng = random.Random(seed)
    trace = sparse_trace(days=0.03, mean_rps=rng.choice([0.3, 1.0]), seed=seed, services=6)
    gpus = rng.choice([1, 2, 4])
    pools = rng.choice(
        [
            [{"name": "gpu", "capacity": {"nvidia.com/gpu": list(range(gpus))}}],
            [
                {"name": "reserved", "capacity": {"nvidia.com/gpu": [0]}},
                {
                    "name": "elastic",
                    "startupDelay": rng.choice(["0s", "30s"]),
                    "capacity": {"nvidia.com/gpu": list(range(1, gpus + 1))},
                },
            ],
        ]
    )
    metric = rng.choice(METRICS)
    predictive = {"tidal.dev/min-history": "1h", "tidal.dev/stabilization-window": "300s"}
    if rng.random() < 0.5:
        predictive["tidal.dev/mode"] = rng.choice(["proactive", "auto"])
    config = AutoscalerConfig()
    models = []
    for name in trace.services:
        annotations = {KPA + k: rng.choice(v) for k, v in ANNOTATIONS.items() if rng.random() < 0.3}
        cc = rng.choice([0, 1, 2, 4])
        models.append(
            ServiceModel(
                name,
                decider_spec(config, parse_autoscaling_annotations(annotations, config), cc),
                cc,
                timeout_s=rng.choice([10.0, 60.0, 300.0]),
                demand=Demand(gpus=1),
                predictive=parse_predictive_annotations(predictive),
                metric=None if metric is None else metric_target(*metric),
                pending_cap_default=rng.choice([5, 10_000]),
            )
        )
    history = None
    if rng.random() < 0.5:
        minutes = np.arange(3 * 1440)
        phase = rng.randint(0, 1440)
        history = rng.uniform(0.5, 4) * (1 + np.sin(2 * np.pi * (minutes - phase) / 1440))
    return trace, models, pools, history


# Seeds 19, 24 and 30 are three of those (the first 40 seeds pass, at about two seconds each).
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5, 19, 24, 30])
@pytest.mark.parametrize("policy", POLICIES)
def test_starved_fleets_replay_the_same_with_and_without_skipping(seed, policy):
    """Requests wait for GPUs other services hold: placements fail and are retried, replicas
    ahead of demand yield (a search like this over a few hundred fleets found two ways the
    skipping replay let them yield late, and one where an idle skip held a replica)."""
    trace, models, pools, history = starved_fleet(seed)
    times = parse_distribution("exp:5").sample(len(trace), np.random.default_rng(1))
    fast, slow = (
        Simulation(
            trace,
            models,
            policy,
            parse_pools(pools),
            times,
            parse_distribution("uniform:5,40"),
            skip=skip,
            prior_history=history,
        ).run()
        for skip in (True, False)
    )
    assert slow.cold.any()  # requests did wait for a replica
    assert np.array_equal(fast.latency, slow.latency, equal_nan=True)
    assert np.array_equal(fast.status, slow.status)
    assert np.array_equal(fast.replicas, slow.replicas)
    assert fast.service_usage == slow.service_usage
