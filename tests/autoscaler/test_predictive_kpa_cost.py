"""What a cold start costs the KPA, measured by replaying it (`kpa_cost.panic_cost`), and the auto
price scored with it: a service whose gaps are mostly shorter than the KPA's tail, with a long
tail of its own, is worth holding warm once the KPA's panic replica is counted."""

from __future__ import annotations

import numpy as np

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.pools import parse_pools
from tidal.api.predictive import PredictiveAnnotations
from tidal.autoscaler.kpa import decider_spec
from tidal.autoscaler.predictive import warm
from tidal.autoscaler.predictive.bounds import Bounds
from tidal.autoscaler.predictive.kpa_cost import LIMIT_S, idle_tail, panic_cost
from tidal.autoscaler.predictive.refit import build_models
from tidal.autoscaler.predictive.synthetic import MONDAY
from tidal.autoscaler.predictive.warm import BUDGET, Gap, fit
from tidal.scheduler.placement import Demand
from tidal.sim.dists import parse_distribution
from tidal.sim.model import ServiceModel, simulate
from tidal.sim.traces import Trace

READY_S = 30.0
TAIL_S = 90.0  # a simple model's tail: 60 s stable window + 30 s grace


def spec_for(annotations: dict[str, str] | None = None, container_concurrency: int = 1):
    config = AutoscalerConfig()
    ann = parse_autoscaling_annotations(annotations or {}, config)
    return decider_spec(config, ann, container_concurrency)


def test_a_lone_cold_request_panics_the_kpa_into_two_replicas_for_its_stable_window():
    """One request at zero waits a Ready Time at concurrency 1, over the 0.7 target: the KPA
    asks for two replicas and holds both until a stable window after the panic (about
    2 x (Ready Time + 60 s) in all), where the simple model says Ready Time + 90 s."""
    for ready in (10.0, 30.0, 42.0):
        extra = panic_cost(spec_for(), ready, TAIL_S)
        total = ready + 1.0 + TAIL_S + extra  # the simple model plus what it misses
        assert abs(total - 2 * (ready + 60.0)) <= 8.0, (ready, extra)
    # A longer stable window holds the panic replica longer.
    longer = panic_cost(spec_for({"autoscaling.knative.dev/window": "120s"}), 30.0, 150.0)
    assert longer > panic_cost(spec_for(), 30.0, TAIL_S) + 30.0


def test_no_panic_no_extra_cost():
    """With ten requests per replica one waiting request is under the panic threshold: the
    simple model is right, and the replay says so."""
    assert panic_cost(spec_for(container_concurrency=10), READY_S, TAIL_S) == 0.0


def minute_gaps(count: int = 400) -> list[Gap]:
    """Called about every minute: gaps of 20 s to 130 s, about a third longer than the KPA's
    90 s tail, so the KPA cold-starts on about one in three."""
    rng = np.random.default_rng(0)
    return [Gap(MONDAY + i * 200, float(rng.uniform(20, 130))) for i in range(count)]


def test_counting_the_kpas_panic_replica_lets_auto_hold_through_short_gaps():
    """Holding one replica through every gap costs more idle time than the KPA's 90 s tail,
    so against the simple model auto cannot afford it; counted with the panic replica the KPA
    starts after each of its cold starts, it can, and then avoids nearly all of them."""
    gaps, now = minute_gaps(), MONDAY + 400 * 200
    simple = fit(gaps, READY_S, TAIL_S, now)
    panic = panic_cost(spec_for(), READY_S, TAIL_S)
    priced = fit(gaps, READY_S, TAIL_S, now, panic_s=panic)
    assert simple is not None and priced is not None
    assert not simple.useful or simple.expected_cold_ratio > 0.5
    assert priced.useful and priced.expected_cold_ratio <= 0.1
    assert priced.expected_cost_ratio <= BUDGET


def test_memoryless_gaps_still_run_as_the_kpa_with_the_panic_cost():
    rng = np.random.default_rng(1)
    gaps = [Gap(MONDAY + i * 900, float(rng.exponential(120))) for i in range(400)]
    panic = panic_cost(spec_for(), READY_S, TAIL_S)
    model = fit(gaps, READY_S, TAIL_S, MONDAY + 400 * 900, panic_s=panic)
    assert model is not None and not model.useful


def test_refits_price_with_the_services_own_kpa():
    """`build_models` (the live controller's and the simulator's refit) measures the panic
    cost from the service's KPA settings: with one request per replica the minute-called
    service is held warm; with ten per replica the KPA does not panic, and it is not."""
    gaps, now = minute_gaps(), MONDAY + 400 * 200
    history = np.zeros(60)
    for cc, useful in ((1, True), (10, False)):
        spec = spec_for(container_concurrency=cc)
        model = None
        for _ in range(2):  # auto acts once two fits agree (test_predictive_confirm.py)
            _, model, _ = build_models(
                history, now, spec, PredictiveAnnotations(), 1, READY_S, Bounds(0, 0), gaps,
                MONDAY, model,
            )  # fmt: skip
        assert model is not None and model.useful is useful, cc


def test_auto_needs_the_budget_on_each_held_out_window_not_only_on_their_sum():
    """The older half of the held-out gaps has the minute rhythm; in the newer half a third of
    the gaps are two to three minutes, where holding through costs more than the KPA's tail. Summed,
    holding warm looks affordable; on the newer window it is not, so auto does not buy it."""
    rng = np.random.default_rng(2)
    count = 400
    held = int(0.3 * count)
    gaps = minute_gaps(count)
    for i in range(count - held // 2, count):
        if rng.random() < 0.3:
            gaps[i] = Gap(gaps[i].start, float(rng.uniform(120, 200)))
    now = MONDAY + count * 200
    panic = panic_cost(spec_for(), READY_S, TAIL_S)
    model = fit(gaps, READY_S, TAIL_S, now, panic_s=panic)
    assert model is not None
    one = warm.WINDOWS
    try:
        warm.WINDOWS = 1
        summed = fit(gaps, READY_S, TAIL_S, now, panic_s=panic)
    finally:
        warm.WINDOWS = one
    assert summed is not None and summed.useful
    assert model.price < summed.price or not model.useful


def test_the_kpas_idle_tail_is_its_stable_window_when_the_gateway_already_holds_its_requests():
    """Knative's last replica goes a stable window after the last request, plus the
    scale-to-zero grace only where the gateway has not been holding requests for the revision
    that long already (docs/autoscaling.md, "Going to zero"). With the default target burst
    capacity a one-replica service is always behind the gateway: 62 s, not 60 + 30."""
    assert idle_tail(spec_for()) == 62.0
    assert idle_tail(spec_for(container_concurrency=0)) == 62.0
    no_burst = {"autoscaling.knative.dev/target-burst-capacity": "0"}  # the gateway leaves
    assert idle_tail(spec_for(no_burst)) == 90.0
    assert idle_tail(spec_for({"autoscaling.knative.dev/window": "120s"})) == 122.0
    retention = {"autoscaling.knative.dev/scale-to-zero-pod-retention-period": "5m"}
    assert idle_tail(spec_for(retention)) == 360.0  # inactive at 60 s, then kept 5 min
    assert idle_tail(spec_for({"autoscaling.knative.dev/min-scale": "1"})) == LIMIT_S


def test_the_simulated_kpa_releases_its_last_replica_one_idle_tail_after_the_last_request():
    """The warm decision scores the KPA with `idle_tail`; the replay of the same KPA agrees."""
    spec = spec_for()
    model = ServiceModel("svc", spec, 1, demand=Demand(gpus=1))
    arrivals = np.array([100.0, 1100.0, 1130.0, 3000.0])
    trace = Trace("lone", arrivals, 4000.0)
    pools = parse_pools([{"name": "gpu", "capacity": {"nvidia.com/gpu": ["0", "1", "2"]}}])
    result = simulate(
        trace, model, ("kpa",), pools, parse_distribution("const:1"),
        parse_distribution("const:5"),
    )["kpa"]  # fmt: skip
    live = result.replicas
    for last in (100.0, 1130.0):  # the last request of each busy spell
        done = last + float(result.latency[arrivals == last][0])
        zero = int(np.flatnonzero(live[int(done) :] == 0)[0]) + int(done)
        assert abs(zero - (done + idle_tail(spec))) <= 3.0, (last, zero - done)
