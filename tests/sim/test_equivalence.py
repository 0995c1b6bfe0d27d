"""The event-skipping replay gives exactly the per-second replay's results, for every policy, on
traces of different shapes (sparse clusters, a busy diurnal day, whole-second timestamps, a
fleet sharing a small pool, a GPU service with slow starts, a fleet starved of capacity, one
whose replicas ahead of demand yield to waiting requests, a service scaling on response
time)."""

from __future__ import annotations

from dataclasses import replace

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


def delays() -> Trace:
    """Bursts of a few to a hundred requests over 3 s to 90 s, between gaps that end inside
    a 30 s look-back, inside the 600 s downscale delays, or just after them: replicas scaled
    up wait out their delays idle, and bursts land right after skips."""
    rng = np.random.default_rng(21)
    gaps = [12.0, 25.0, 33.0, 120.0, 400.0, 590.0, 604.0, 612.0, 631.0, 900.0]
    t, arrivals = 5.0, []
    while t < 7200.0:
        size = int(rng.integers(2, 120))
        arrivals += list(t + np.sort(rng.random(size) * rng.choice([3.0, 20.0, 90.0])))
        t = arrivals[-1] + float(rng.choice(gaps)) + float(rng.choice([0.0, 0.5, rng.random()]))
    return Trace("delays", np.asarray(arrivals), arrivals[-1] + 900.0, 1_700_000_000.0)


GPU_POOLS = [
    {"name": "gpu", "capacity": {"nvidia.com/gpu": [0, 1]}},
    {"name": "spill", "startupDelay": "20s", "capacity": {"nvidia.com/gpu": [2, 3]}},
]
# One reserved GPU, then GPUs that take 30 s more to start: panics and replicas starting while
# idle (CC 1).
SLOW_POOLS = [
    {"name": "reserved", "capacity": {"nvidia.com/gpu": [0]}},
    {"name": "elastic", "startupDelay": "30s", "capacity": {"nvidia.com/gpu": [1, 2, 3]}},
]
# Two GPUs for six services: requests queue for capacity until it is freed or they time out.
STARVED_POOLS = [{"name": "gpu", "capacity": {"nvidia.com/gpu": [0, 1]}}]
# Cases whose services take one GPU each: their containerConcurrency and pools.
SETUP = {
    "gpu-slow-start": (1, SLOW_POOLS),
    "fleet-starved": (2, STARVED_POOLS),
    "fleet-idle-starved": (2, STARVED_POOLS),
    "fleet-ahead": (1, STARVED_POOLS),
}

CASES = {
    "sparse": (sparse_trace(days=0.3, mean_rps=0.05, seed=3), None),
    "gpu-slow-start": (sparse_trace(days=0.15, mean_rps=0.06, seed=12), None),
    "fleet-starved": (sparse_trace(days=0.06, mean_rps=0.3, seed=11, services=6), None),
    "diurnal": (synthetic_trace(days=0.1, mean_rps=3.0, seed=4), None),
    "whole-seconds": (whole_seconds(), {"autoscaling.knative.dev/window": "20s"}),
    "delays": (delays(), None),
    "fleet": (sparse_trace(days=0.2, mean_rps=0.08, seed=6, services=4), None),
    "fleet-busy": (sparse_trace(days=0.15, mean_rps=0.2, seed=9, services=3), None),
    # Thirty services for two GPUs, most without a request for many minutes: they wait for
    # capacity with nothing queued (the KPA until its activation times out).
    "fleet-idle-starved": (sparse_trace(days=0.03, mean_rps=0.02, seed=13, services=30), None),
    # Three services for two GPUs, one request per replica: predictive's replicas ahead of
    # demand are taken back for requests that wait (tidal/scheduler/placement.py).
    "fleet-ahead": (sparse_trace(days=0.3, mean_rps=0.2, seed=9, services=3), None),
    # Scaling on response time (cc 0): idle skips go through the metric wrapper to the KPA.
    "rt-metric": (sparse_trace(days=0.3, mean_rps=0.05, seed=3), None),
}
# Cases that scale on a measured metric instead of concurrency.
METRIC = {"rt-metric": metric_target("rt", 800.0, None, None)}


def build(case: str, policy: str, skip: bool) -> Simulation:
    trace, annotations = CASES[case]
    pools = parse_pools(None)
    services: ServiceModel | list[ServiceModel] = model(annotations=annotations)
    if case in SETUP:
        cc, spec = SETUP[case]
        pools = parse_pools(spec)
        names = trace.services or ("svc",)
        services = [model(name, cc=cc, gpus=1) for name in names]
    elif trace.services:
        pools = parse_pools(GPU_POOLS)
        services = [model(name, gpus=1) for name in trace.services]
    if case in METRIC:
        services = replace(model(cc=0, annotations=annotations), metric=METRIC[case])
    times = parse_distribution("exp:2").sample(len(trace), np.random.default_rng(1))
    startup = parse_distribution("uniform:5,40")
    return Simulation(trace, services, policy, pools, times, startup, skip=skip)


def replay(case: str, policy: str, skip: bool):
    return build(case, policy, skip).run()


def same_result_with_fewer_decisions(case: str, policy: str) -> tuple[int, int]:
    """Replay `case` skipping and ticking every second; assert the same result and return
    how many decisions each made."""
    decided = {True: 0, False: 0}
    sims = {skip: build(case, policy, skip) for skip in (True, False)}
    for skip, sim in sims.items():
        for svc in sim.services:
            tick = svc.autoscaler.tick

            def counted(now, ready, reachable=True, tick=tick, skip=skip):
                decided[skip] += 1
                return tick(now, ready, reachable)

            svc.autoscaler.tick = counted
            replicas = svc.tick_replicas  # the replay's own decisions (a tick's replicas)

            def counted_replicas(now, ready, replicas=replicas, skip=skip):
                decided[skip] += 1
                return replicas(now, ready)

            svc.tick_replicas = counted_replicas
    a, b = sims[True].run(), sims[False].run()
    assert np.array_equal(a.latency, b.latency, equal_nan=True)
    assert np.array_equal(a.status, b.status)
    assert np.array_equal(a.ready, b.ready) and np.array_equal(a.replicas, b.replicas)
    assert a.service_usage == b.service_usage
    return decided[True], decided[False]


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

    def counting(function):
        def counted(*args, **kwargs):
            calls[mode["skip"]] += 1
            return function(*args, **kwargs)

        return counted

    # A placement asks whether there is room for one more (answered once per change of the
    # pools' usage), then `place`.
    monkeypatch.setattr(sim_model, "place", counting(sim_model.place))
    room_for = sim_model.Simulation._room_for
    monkeypatch.setattr(sim_model.Simulation, "_room_for", counting(room_for))
    fast = replay("fleet-busy", "kpa", True)
    mode["skip"] = False
    slow = replay("fleet-busy", "kpa", False)
    assert 0 < calls[True] < calls[False]
    assert np.array_equal(fast.status, slow.status)
    assert np.array_equal(fast.latency, slow.latency, equal_nan=True)
    assert fast.service_usage == slow.service_usage


def test_kpa_skips_while_in_panic_starting_or_starved_and_changes_nothing(monkeypatch):
    """The skips beyond plain idleness happen on these traces: idle ticks skipped while the KPA
    is in panic or a replica is still starting, ticks of services whose requests wait for
    capacity skipped (their autoscaler fed the same stats in one go), and placements retried
    when capacity is freed without waking them. The replay is still the per-second one."""
    import tidal.sim.model as sim_model

    seen = {"panic": 0, "starting": 0, "steady": 0, "retry": 0}
    quiet = sim_model.Simulation._quiet_ticks
    steady = sim_model.Simulation._steady_ticks
    retry = sim_model.Simulation._retry

    def quiet_ticks(self, svc, k, end_k):
        resume = quiet(self, svc, k, end_k)
        if resume > k + 1 and not svc.open:
            seen["panic"] += svc.autoscaler.decider.in_panic
            seen["starting"] += len(svc.state) > svc.ready
        return resume

    def steady_ticks(self, svc, k, end_k):
        resume = steady(self, svc, k, end_k)
        seen["steady"] += resume > k + 1
        return resume

    def retried(self, svc, k, chain):
        seen["retry"] += svc.steady is not None
        return retry(self, svc, k, chain)

    monkeypatch.setattr(sim_model.Simulation, "_quiet_ticks", quiet_ticks)
    monkeypatch.setattr(sim_model.Simulation, "_steady_ticks", steady_ticks)
    monkeypatch.setattr(sim_model.Simulation, "_retry", retried)
    for case in ("gpu-slow-start", "fleet-starved"):
        skipping, every_second = same_result_with_fewer_decisions(case, "kpa")
        assert skipping < 0.75 * every_second, (case, skipping, every_second)
    assert all(seen.values()), seen


def test_recording_a_run_of_seconds_at_once_equals_recording_each():
    """`skip_steady`'s one-pass recording leaves the windows as `record` called every second
    does: after data, after a gap, on a window never written, on a one-bucket window."""
    from tidal.autoscaler.kpa import _record_each
    from tidal.autoscaler.metrics import TimedFloat64Buckets

    rng = np.random.default_rng(3)
    for window, history in ((60.0, 90), (6.0, 3), (60.0, 0), (1.0, 5)):
        one, each = TimedFloat64Buckets(window), TimedFloat64Buckets(window)
        for t in range(history):
            value = float(rng.random() * 5)
            one.record(1000.0 + t, value)
            each.record(1000.0 + t, value)
        start = 1000.0 + history + (0 if history % 2 else 30)
        times = [start + t for t in range(150)]
        _record_each(one, times, 0, len(times), 3.0)
        for t in times:
            each.record(t, 3.0)
        assert vars(one) == vars(each)


@pytest.mark.parametrize("policy", POLICIES)
def test_starved_services_skip_and_change_nothing(monkeypatch, policy):
    """On fleets starved of capacity, a service without a replica whose missing ones cannot
    be placed skips its ticks: with requests queued (the same stats every second), and with
    none (nothing recorded; e.g. a KPA activating, or a baseline holding a replica without
    traffic). Fewer decisions, the per-second replay's result."""
    import tidal.sim.model as sim_model

    seen = {"queued": 0, "empty": 0}
    steady = sim_model.Simulation._steady_ticks

    def steady_ticks(self, svc, k, end_k):
        resume = steady(self, svc, k, end_k)
        if resume > k + 1:
            seen["queued" if svc.open else "empty"] += 1
        return resume

    monkeypatch.setattr(sim_model.Simulation, "_steady_ticks", steady_ticks)
    for case, kind in [("fleet-starved", "queued"), ("fleet-idle-starved", "empty")]:
        before = seen[kind]
        skipping, every_second = same_result_with_fewer_decisions(case, policy)
        assert seen[kind] > before, (case, seen)
        assert skipping < 0.75 * every_second, (case, skipping, every_second)


@pytest.mark.parametrize("policy", ["ray", "hpa", "keepalive", "hybrid-histogram", "peak"])
def test_baselines_skip_their_delays_and_change_nothing(policy):
    """Replicas held idle by a baseline's delay (ray's 600 s downscale, HPA's stabilization
    between syncs, keep-alive, the histogram's windows) are skipped, not ticked through, with
    the per-second replay's result."""
    skipping, every_second = same_result_with_fewer_decisions("delays", policy)
    assert skipping < 0.3 * every_second, (skipping, every_second)


def daily_history(amplitude: float, phase_minutes: int, days: int = 3) -> np.ndarray:
    """Per-minute mean concurrency with a daily rhythm, for predictive to plan on."""
    minutes = np.arange(days * 1440)
    return np.maximum(0.0, amplitude * (1 + np.sin(2 * np.pi * (minutes - phase_minutes) / 1440)))


@pytest.mark.parametrize(
    ("seed", "services", "days", "gpus", "annotations", "timeouts", "history"),
    [
        # Both plan six replicas for three GPUs: each one's needed count grows in turn.
        (2, 2, 0.05, 3, {"tidal.dev/mode": "proactive"}, (120, 300), (1.877, 1042)),
        # One service starts to wait on the placement that took the last free GPU, while
        # another, skipping ticks, holds a replica ahead of demand.
        (30, 5, 0.2, 4, {"tidal.dev/cold-start-cost": "10m"}, (120, 30, 300, 30, 30), (0.754, 327)),
    ],
)
def test_replicas_ahead_of_demand_yield_at_the_tick_they_would_every_second(
    seed, services, days, gpus, annotations, timeouts, history
):
    """Found by a random search over predictive fleets with a planned rhythm on a few GPUs:
    the skipping replay let a replica ahead of demand run a decision tick too long (a needed
    count that grew at an unchanged desired count was taken for a placement that failed
    before; a service that skipped ticks missed the moment another started to wait)."""
    trace = sparse_trace(days=days, mean_rps=0.1, seed=seed, services=services)
    predictive = parse_predictive_annotations(
        {"tidal.dev/min-history": "1h", "tidal.dev/stabilization-window": "300s", **annotations}
    )
    config = AutoscalerConfig()
    spec = decider_spec(config, parse_autoscaling_annotations({}, config), 1)
    models = [
        ServiceModel(name, spec, 1, timeout_s=timeout, demand=Demand(gpus=1), predictive=predictive)
        for name, timeout in zip(trace.services, timeouts, strict=True)
    ]
    pools = parse_pools(
        [
            {"name": "reserved", "capacity": {"nvidia.com/gpu": [0]}},
            {
                "name": "elastic",
                "startupDelay": "20s",
                "capacity": {"nvidia.com/gpu": list(range(1, gpus))},
            },
        ]
    )
    times = parse_distribution("const:5").sample(len(trace), np.random.default_rng(1))
    fast, slow = (
        Simulation(
            trace,
            models,
            "predictive",
            pools,
            times,
            parse_distribution("3"),
            skip=skip,
            prior_history=daily_history(*history),
        ).run()
        for skip in (True, False)
    )
    assert slow.replicas.max() == gpus  # the GPUs are all taken at times
    assert np.array_equal(fast.latency, slow.latency, equal_nan=True)
    assert np.array_equal(fast.replicas, slow.replicas)
    assert fast.service_usage == slow.service_usage


def test_a_replica_ready_after_the_kpas_tail_is_released_when_skipping_too():
    """A service whose lone request timed out waiting for the GPU another holds gets its
    replica once that one leaves, well past the KPA's tail. Its KPA (initial-scale 2 over
    max-scale 1) then asks for another count than predictive holds, so the KPA alone reads as
    zero from the next tick on (`PredictiveAutoscaler._kpa_alone`) and the replica goes. The
    skipping replay held it to the end of the trace (found by a random search over starved
    fleets): the idle skip did not know that tick was due."""
    config = AutoscalerConfig()

    def service(name: str, annotations: dict[str, str], timeout: float) -> ServiceModel:
        spec = decider_spec(config, parse_autoscaling_annotations(annotations, config), 1)
        return ServiceModel(name, spec, 1, timeout_s=timeout, demand=Demand(gpus=1))

    busy = np.arange(0.5, 300.0, 2.0)
    arrivals = np.concatenate([busy, [5.0]])
    owners = np.concatenate([np.zeros(len(busy), dtype=np.int64), [1]])
    order = np.argsort(arrivals, kind="stable")
    trace = Trace(
        "t",
        arrivals[order],
        900.0,
        1_700_000_000.0,
        services=("busy", "late"),
        service_of=owners[order],
    )
    late = {"autoscaling.knative.dev/max-scale": "1", "autoscaling.knative.dev/initial-scale": "2"}
    models = [service("busy", {}, 300.0), service("late", late, 10.0)]
    pools = parse_pools([{"name": "gpu", "capacity": {"nvidia.com/gpu": [0]}}])
    times = np.full(len(trace), 1.0)
    fast, slow = (
        Simulation(
            trace, models, "predictive", pools, times, parse_distribution("3"), skip=skip
        ).run()
        for skip in (True, False)
    )
    assert slow.service_usage["late"]["gpu"].replica_seconds < 10.0  # ready, then released
    assert fast.service_usage == slow.service_usage
    assert np.array_equal(fast.replicas, slow.replicas)
