"""The auto price's two guards against a noisy held-out verdict (docs/predictive.md, "The price
knob and its default"): predictive's own expected cold starts are charged only the part of the
KPA's panic replica spent while the request waits, and a price is acted on only when two
consecutive fits both find one worth using."""

from __future__ import annotations

import numpy as np

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.predictive import PredictiveAnnotations
from tidal.autoscaler.kpa import RevisionAutoscaler, decider_spec
from tidal.autoscaler.predictive.autoscaler import PredictiveAutoscaler
from tidal.autoscaler.predictive.kpa_cost import panic_cost, served_panic_cost
from tidal.autoscaler.predictive.policy import PredictivePolicy
from tidal.autoscaler.predictive.refit import fit_warm, refit_warm
from tidal.autoscaler.predictive.synthetic import MONDAY
from tidal.autoscaler.predictive.warm import Gap, fit

READY_S = 30.0
TAIL_S = 62.0  # the KPA's defaults (kpa_cost.idle_tail): a 60 s stable window, no grace left


def spec_for(container_concurrency: int = 1):
    config = AutoscalerConfig()
    return decider_spec(config, parse_autoscaling_annotations({}, config), container_concurrency)


def minute_gaps(count: int = 400) -> list[Gap]:
    """Called about every minute: gaps of 20 s to 130 s (holding warm through them is worth it
    once the KPA's panic replica is counted)."""
    rng = np.random.default_rng(0)
    return [Gap(MONDAY + i * 200, float(rng.uniform(20, 130))) for i in range(count)]


def test_the_served_part_of_the_panic_replica_is_the_wait():
    """The replica a cold start panics the KPA into costs, while the request waits, about its
    Ready Time plus the service time; the whole panic cost is longer (held through the stable
    window). Without a panic (ten requests per replica) there is neither."""
    for ready in (10.0, 30.0, 42.0):
        served = served_panic_cost(spec_for(), ready, TAIL_S)
        assert ready <= served <= ready + 3.0, (ready, served)
        assert served < panic_cost(spec_for(), ready, TAIL_S)
    assert served_panic_cost(spec_for(10), READY_S, TAIL_S) == 0.0


def test_charging_its_own_cold_starts_the_wait_buys_a_rhythm_the_full_charge_cannot():
    """Half the gaps are 100-200 s, the rest long: holding through the short ones
    avoids many cold starts, but counted with a whole panic replica on each of predictive's
    remaining cold starts no price that does fits the budget; charged the wait, one does."""
    rng = np.random.default_rng(0)
    n = 300
    lengths = np.where(rng.random(n) < 0.5, rng.uniform(100, 200, n), rng.exponential(1800, n))
    gaps = [Gap(MONDAY + i * 4000, float(x)) for i, x in enumerate(lengths)]
    now = MONDAY + n * 4000
    panic, served = (
        panic_cost(spec_for(), READY_S, TAIL_S),
        served_panic_cost(spec_for(), READY_S, TAIL_S),
    )
    full = fit(gaps, READY_S, TAIL_S, now, panic_s=panic)
    light = fit(gaps, READY_S, TAIL_S, now, panic_s=panic, own_panic_s=served)
    assert full is not None and light is not None
    assert not full.useful
    assert light.useful and light.expected_cold_ratio <= 0.7 and light.price > full.price


def test_auto_acts_on_a_price_only_when_the_previous_fit_found_one_too():
    settings, gaps, now = PredictiveAnnotations(), minute_gaps(), MONDAY + 400 * 200
    first = fit_warm(gaps, READY_S, now, spec_for(), settings, None)
    assert first is not None and first.rhythm and not first.useful
    second = fit_warm(gaps, READY_S, now + 600, spec_for(), settings, first)
    assert second is not None and second.rhythm and second.useful
    # A previous fit that found nothing does not confirm.
    rng = np.random.default_rng(1)
    memoryless = [Gap(MONDAY + i * 900, float(rng.exponential(120))) for i in range(400)]
    none = fit_warm(memoryless, READY_S, MONDAY + 400 * 900, spec_for(), settings, None)
    assert none is not None and not none.rhythm and not none.useful
    third = fit_warm(gaps, READY_S, now + 1200, spec_for(), settings, none)
    assert third is not None and third.rhythm and not third.useful
    # `tidal describe` says which: a price waiting for its second fit, or no rhythm at all.
    policy = PredictivePolicy(settings)
    policy.set_warm(first, len(gaps))
    waiting = policy.decide(now, 1, 1)
    assert waiting.mode_used == "observer" and "used once the next fit agrees" in waiting.reason
    policy.set_warm(none, len(memoryless))
    assert "no rhythm to exploit" in policy.decide(now + 1, 1, 1).reason


def test_an_explicit_price_is_used_from_the_first_fit():
    settings = PredictiveAnnotations(cold_start_cost=300.0)
    model = fit_warm(minute_gaps(), READY_S, MONDAY + 400 * 200, spec_for(), settings, None)
    assert model is not None and model.useful and model.price == 300.0


def test_refit_warm_confirms_with_the_model_in_use_or_the_one_handed_in():
    """The simulator refits its own autoscaler (the model in use is its policy's); the live
    controller refits a copy and hands the model in use in: both confirm the same way."""
    spec, settings = spec_for(), PredictiveAnnotations()
    gaps = minute_gaps()
    now = gaps[-1].start + gaps[-1].length + 60.0

    def autoscaler() -> PredictiveAutoscaler:
        a = PredictiveAutoscaler(
            RevisionAutoscaler(spec, 0.0, ready=0, initialized=True), PredictivePolicy(settings)
        )
        a.gaps, a.observing_since = list(gaps), MONDAY
        return a

    history = np.zeros(60)
    replayed = autoscaler()
    first = refit_warm(replayed, history, now, spec, settings, READY_S)
    second = refit_warm(replayed, history, now + 300, spec, settings, READY_S)
    assert first is not None and not first.useful
    assert second is not None and second.useful and replayed.policy.warm is second
    shadow = autoscaler()  # a copy without the model in use
    live = refit_warm(shadow, history, now + 300, spec, settings, READY_S, first)
    assert live is not None and live.useful and live.price == second.price
