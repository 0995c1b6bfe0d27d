"""The live account of what prediction spent against the KPA alone, and the wider budget it
unlocks for the auto price (docs/predictive.md, "The price knob and its default")."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.autoscaler.test_predictive_confirm import READY_S, TAIL_S, spec_for
from tidal.api.predictive import PredictiveAnnotations
from tidal.autoscaler.kpa import RevisionAutoscaler
from tidal.autoscaler.predictive.autoscaler import PredictiveAutoscaler
from tidal.autoscaler.predictive.kpa_cost import panic_cost, served_panic_cost
from tidal.autoscaler.predictive.ledger import Ledger
from tidal.autoscaler.predictive.policy import PredictivePolicy
from tidal.autoscaler.predictive.refit import fit_warm
from tidal.autoscaler.predictive.synthetic import MONDAY
from tidal.autoscaler.predictive.warm import HALF_LIFE_S, Gap, fit
from tidal.controller.forecasting import account_view

COLD_S = 100.0  # a cold start's price in these accounts


def test_the_kpa_alone_is_counted_only_through_its_tail():
    """The KPA underneath may keep asking for a replica past its tail (one that prediction
    holds reports to it); the KPA alone is at zero there, so the account stops counting it."""
    ledger = Ledger()
    ledger.advance(0.0, 1, 1, None, TAIL_S)  # a request in flight: both hold one
    ledger.advance(10.0, 1, 1, 10.0, TAIL_S)  # idle from 10 s: prediction keeps one warm
    ledger.advance(400.0, 0, 1, 10.0, TAIL_S)
    ledger.advance(500.0, 0, 0, 10.0, TAIL_S)
    assert ledger.spent == pytest.approx(400.0, rel=1e-3)  # (a week's half-life: ~no decay)
    assert ledger.kpa == pytest.approx(10.0 + TAIL_S, rel=1e-3)


def test_cold_starts_avoided_and_caused_are_priced_in_the_surplus():
    ledger = Ledger()
    ledger.advance(0.0, 0, 0, 0.0, TAIL_S)
    ledger.gap_ended(100.0, kpa_cold=True, ready=True)  # held past the tail: avoided
    ledger.gap_ended(200.0, kpa_cold=False, ready=False)  # released inside it: caused
    ledger.gap_ended(300.0, kpa_cold=True, ready=False)  # cold either way: neither
    ledger.gap_ended(400.0, kpa_cold=False, ready=True)  # warm either way: neither
    assert ledger.avoided == pytest.approx(1.0, rel=1e-3)
    assert ledger.caused == pytest.approx(1.0, rel=1e-3)
    assert ledger.surplus(COLD_S, 40.0) == pytest.approx(60.0, rel=1e-3)


def test_one_lucky_cold_start_does_not_pass_for_a_saving():
    """A surplus of one cold start is within the noise of the count; many clear it."""
    ledger = Ledger()
    ledger.advance(0.0, 0, 0, None, TAIL_S)
    ledger.gap_ended(1.0, kpa_cold=True, ready=True)
    assert ledger.surplus(COLD_S, COLD_S) == pytest.approx(COLD_S, rel=1e-4)
    assert not ledger.paid_for(COLD_S)
    for i in range(30):
        ledger.gap_ended(2.0 + i, kpa_cold=True, ready=True)
    assert ledger.paid_for(COLD_S)
    # ... and spending past the saving takes it back.
    ledger.advance(100.0, 1, 0, None, TAIL_S)
    ledger.advance(100.0 + 31 * COLD_S, 1, 0, None, TAIL_S)
    assert not ledger.paid_for(COLD_S)


def test_the_account_decays_with_the_gaps_half_life():
    ledger = Ledger()
    ledger.advance(0.0, 0, 0, None, TAIL_S)
    ledger.gap_ended(0.0, kpa_cold=True, ready=True)
    ledger.advance(HALF_LIFE_S, 0, 0, None, TAIL_S)
    assert ledger.avoided == pytest.approx(0.5)
    ledger.gap_ended(HALF_LIFE_S, kpa_cold=True, ready=True)  # an entry after `at` counts 1
    ledger.advance(2 * HALF_LIFE_S, 0, 0, None, TAIL_S)
    assert ledger.avoided == pytest.approx(0.75)


def wide_gaps() -> tuple[list[Gap], float]:
    """Most gaps 150-300 s, the rest long: holding through the short ones avoids cold starts
    at between 0.75 and 1.0 times the KPA's idle replica time on the held-out gaps."""
    rng = np.random.default_rng(0)
    n = 300
    lengths = np.where(rng.random(n) < 0.7, rng.uniform(150, 300, n), rng.exponential(1800, n))
    return [Gap(MONDAY + i * 4000, float(x)) for i, x in enumerate(lengths)], MONDAY + n * 4000


def test_a_spare_budget_uses_the_cheapest_price_worth_using_when_none_within_budget_is():
    gaps, now = wide_gaps()
    served = served_panic_cost(spec_for(), READY_S, TAIL_S)  # both sides' charge (fit_warm)
    strict = fit(gaps, READY_S, TAIL_S, now, panic_s=served, own_panic_s=served)
    spare = fit(gaps, READY_S, TAIL_S, now, panic_s=served, own_panic_s=served, spare=1.0)
    assert strict is not None and spare is not None
    assert not strict.useful and spare.useful
    assert spare.expected_cold_ratio <= 0.8
    # The spare budget never overrides a price the strict one already finds worth using.
    rng = np.random.default_rng(0)
    minute = [Gap(MONDAY + i * 200, float(rng.uniform(20, 130))) for i in range(400)]
    later = MONDAY + 400 * 200
    a = fit(minute, READY_S, TAIL_S, later, panic_s=served, own_panic_s=served)
    b = fit(minute, READY_S, TAIL_S, later, panic_s=served, own_panic_s=served, spare=1.0)
    assert a is not None and b is not None and a.useful and b.useful and a.price == b.price


def test_fit_warm_widens_the_budget_only_while_the_account_shows_a_saving():
    gaps, now = wide_gaps()
    spec, settings = spec_for(), PredictiveAnnotations()
    confirmed = fit_warm(gaps, READY_S, now, spec, settings, None)
    assert confirmed is not None and not confirmed.rhythm  # nothing within the 0.8 budget
    cold_s = READY_S + panic_cost(spec, READY_S, TAIL_S)
    held_s = 2 * 40 * cold_s  # more than the 40 cold starts avoided below are worth
    saved, spent = Ledger(), Ledger()
    saved.advance(now - held_s, 0, 0, None, TAIL_S)
    spent.advance(now - held_s, 1, 0, None, TAIL_S)
    for i in range(40):
        saved.gap_ended(now - 3000 + i, kpa_cold=True, ready=True)
        spent.gap_ended(now - 3000 + i, kpa_cold=True, ready=True)
    spent.advance(now, 1, 0, None, TAIL_S)  # a replica held beyond the KPA's count
    assert saved.paid_for(cold_s)
    assert not spent.paid_for(cold_s)
    # `tidal forecast` shows the same verdict the fit acts on.
    assert account_view(saved, spec, READY_S)["savingMeasured"]
    view = account_view(spent, spec, READY_S)
    assert not view["savingMeasured"] and view["coldStartsAvoided"] == pytest.approx(40, rel=1e-2)
    assert view["spentReplicaSeconds"] == pytest.approx(held_s, rel=1e-2)  # decayed a little
    first = fit_warm(gaps, READY_S, now, spec, settings, None, saved)
    assert first is not None and first.rhythm and not first.useful  # still two fits to agree
    second = fit_warm(gaps, READY_S, now + 600, spec, settings, first, saved)
    assert second is not None and second.useful
    held = fit_warm(gaps, READY_S, now + 600, spec, settings, first, spent)
    assert held is not None and not held.useful and not held.rhythm
    # An explicit price is the user's: the account does not move it.
    explicit = PredictiveAnnotations(cold_start_cost=60.0)
    fixed = fit_warm(gaps, READY_S, now, spec, explicit, None, saved)
    assert fixed is not None and fixed.price == 60.0


def warm_autoscaler(cold_start_cost: float) -> tuple[PredictiveAutoscaler, list[Gap]]:
    """A predictive autoscaler over a fresh KPA at zero, with a warm model at this price fitted
    on 100 gaps of 100 s to 600 s (and those gaps)."""
    spec = spec_for()
    settings = PredictiveAnnotations(cold_start_cost=cold_start_cost)
    rng = np.random.default_rng(0)
    gaps = [Gap(MONDAY + i * 900, float(rng.uniform(100, 600))) for i in range(100)]
    model = fit_warm(gaps, READY_S, MONDAY + 100 * 900, spec, settings, None)
    assert model is not None and model.useful
    policy = PredictivePolicy(settings)
    policy.set_warm(model, len(gaps))
    kpa = RevisionAutoscaler(spec, 0.0, ready=0, initialized=True)
    return PredictiveAutoscaler(kpa, policy, epoch_offset=MONDAY), gaps


def test_the_autoscaler_feeds_the_account_from_its_ticks_and_gaps():
    """A warm model that holds one replica through every gap: a request after the KPA's tail
    finds it ready (a cold start avoided), and the hold is spent replica time the KPA alone
    would not have spent."""
    scaler, _ = warm_autoscaler(cold_start_cost=1e5)
    ready = 0
    for t in range(0, 1000):
        busy = t < 5 or 600 <= t < 605
        scaler.record(float(t), 1.0 if busy else 0.0, 1.0 if t in (0, 600) else 0.0)
        if t % 2 == 0:
            decision = scaler.tick(float(t), ready)
            if decision.replicas is not None:
                ready = decision.replicas if t > 0 else 0
        if t == 40:
            ready = max(ready, 1)  # the first replica is up
    ledger = scaler.ledger
    assert ledger.avoided == pytest.approx(1.0, rel=1e-3)
    assert ledger.caused == 0.0
    # Prediction held one from the first request to the end; the KPA alone for its tail
    # after each request (and through the requests themselves).
    assert ledger.spent > ledger.kpa + 600.0 - 2 * (TAIL_S + 10.0)
    assert math.isfinite(ledger.surplus(COLD_S, COLD_S))


def test_a_service_handed_back_to_the_kpa_past_its_tail_starts_nothing():
    """Prediction releases the replicas right after a request, while the KPA underneath still
    holds its panic count: with none ready it records nothing and keeps that count. A refit
    then finds no rhythm and hands the service back to the KPA, long after the KPA alone
    would have reached zero: nothing is started for it (before, its stale count was)."""
    scaler, gaps = warm_autoscaler(cold_start_cost=1.0)  # holding is never worth it
    kpa, policy = scaler.reactive, scaler.policy
    ready, released_at, stale, handed_back = 0, None, 0, -1
    for t in range(0, 400):
        busy = t < 45  # one request: waits for its replica (up at 40), served by 45
        if t == 40:
            ready = scaler.replicas or 0
        if busy or ready:
            scaler.record(float(t), 1.0 if busy else 0.0, 1.0 if t == 0 else 0.0)
        if t == 300:
            policy.set_warm(None, len(gaps))  # a refit found no rhythm: run as the KPA
        if t % 2 == 0:
            decision = scaler.tick(float(t), ready)
            if decision.replicas is not None and t >= 40:
                ready = decision.replicas  # stopping is at once; starting is not needed
                if ready == 0 and released_at is None:
                    released_at = t
            if t == 298:
                stale = kpa._replicas  # what the KPA underneath still holds
            if t == 300:
                handed_back = scaler.replicas or 0
    assert released_at is not None and released_at < 60 + 30  # before the KPA's tail
    assert stale > 0
    assert handed_back == 0 and scaler.last is not None
    assert scaler.last.mode_used == "observer"


def test_a_kpa_nothing_diverged_from_is_the_kpa_alone_to_its_last_tick():
    """With no warm model the policy is the KPA underneath, count for count: the account must
    show no difference, although the KPA drops its last replica at the first decision tick
    past its tail, not at the tail itself (cut at the tail, the account charged prediction
    with that tick on every gap)."""
    spec = spec_for()
    kpa = RevisionAutoscaler(spec, 0.0, ready=0, initialized=True)
    scaler = PredictiveAutoscaler(kpa, PredictivePolicy(PredictiveAnnotations()), MONDAY)
    ready = 0
    for t in range(0, 2000):
        busy = t % 500 < 5  # a request every 500 s, in flight for 5 s
        if busy or ready:
            scaler.record(float(t), 1.0 if busy else 0.0, 1.0 if t % 500 == 0 else 0.0)
        if t % 2 == 1:  # ticks off the requests' second: the tail ends between two
            decision = scaler.tick(float(t), ready)
            if decision.replicas is not None:
                ready = decision.replicas
    ledger = scaler.ledger
    assert ledger.spent > 4 * TAIL_S  # the KPA held a replica after every request
    assert ledger.spent == pytest.approx(ledger.kpa, abs=1e-6)
