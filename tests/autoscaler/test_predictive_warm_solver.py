"""The warm model's fast solver and evaluator against a plain step-by-step transcription of the
same dynamic programme and state machine: identical tables, the same costs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tidal.autoscaler.predictive.warm import PRICES, STEP_S, _evaluate, _solve


def reference_solve(hazard: np.ndarray, prices: np.ndarray, ready_s: float):
    """Backward induction one step and one (price, slice) at a time; a start is a pipeline of
    m steps, an arrival while starting is cold and the rest of the start is paid."""
    slices, steps = hazard.shape
    m = max(1, math.ceil(ready_s / STEP_S))
    hold = np.zeros((len(prices), slices, steps), dtype=bool)
    start = np.zeros_like(hold)
    for p, c in enumerate(prices):
        arrival = c + ready_s
        for s in range(slices):
            warm = cold = arrival
            pipe = [arrival] * m  # pipe[j]: starting, j + 1 steps until ready
            for k in range(steps - 1, -1, -1):
                q = hazard[s, k]
                nxt = [warm, *pipe[:-1]]
                pipe = [STEP_S + q * (c + j * STEP_S) + (1 - q) * nxt[j] for j in range(m)]
                stay = q * arrival + (1 - q) * cold
                start[p, s, k] = pipe[m - 1] < stay
                cold = min(stay, pipe[m - 1])
                keep = STEP_S + (1 - q) * warm
                hold[p, s, k] = keep <= cold
                warm = min(keep, cold)
    return hold, start


def reference_evaluate(hold, start, bins, own, weights, ready_s):
    """Play every gap through its slice's tables from a warm replica."""
    m = max(1, math.ceil(ready_s / STEP_S))
    steps = hold.shape[2]
    cost = np.zeros(hold.shape[0])
    cold = np.zeros(hold.shape[0])
    for p in range(hold.shape[0]):
        for b, s, w in zip(bins, own, weights, strict=True):
            state, spent = 1, 0.0  # 0 cold, 1 warm, j >= 2 starting
            for k in range(b):
                if state == 1:
                    state, spent = (1, spent + STEP_S) if hold[p, s, k] else (0, spent)
                elif state == 0:
                    state, spent = (m, spent + STEP_S) if start[p, s, k] else (0, spent)
                else:
                    state, spent = state - 1, spent + STEP_S
            if b < steps:
                if state == 1 and hold[p, s, b]:
                    extra, is_cold = 0.0, False
                elif state == 0 and start[p, s, b]:
                    extra, is_cold = (m - 1) * STEP_S, True
                elif state >= 2:
                    extra, is_cold = (state - 2) * STEP_S, True
                else:
                    extra, is_cold = ready_s, True
            else:
                extra, is_cold = (ready_s if state == 0 else 0.0), state != 1
            cost[p] += w * (spent + extra)
            cold[p] += w * is_cold
    return cost, cold


def hazards(kind: str, rng: np.random.Generator, slices: int, steps: int) -> np.ndarray:
    if kind == "flat":
        return np.full((slices, steps), rng.uniform(0.001, 0.05))
    if kind == "timer":
        h = rng.uniform(0, 1e-3, (slices, steps))
        h[:, rng.integers(5, steps - 5)] = 0.9
        return h
    if kind == "bursty":
        return np.exp(-np.arange(steps) / 8.0)[None, :] * rng.uniform(0.05, 0.5, (slices, 1))
    return rng.uniform(0, 0.08, (slices, steps))


@pytest.mark.parametrize("kind", ["flat", "timer", "bursty", "noise"])
@pytest.mark.parametrize("ready_s", [10.0, 40.0, 100.0])
def test_fast_solver_and_evaluator_match_the_step_by_step_programme(kind, ready_s):
    rng = np.random.default_rng(hash((kind, ready_s)) % 2**32)
    slices, steps = 2, 60
    hazard = hazards(kind, rng, slices, steps)
    prices = PRICES[::4]
    hold, start = _solve(hazard, prices, ready_s)
    ref_hold, ref_start = reference_solve(hazard, prices, ready_s)
    assert np.array_equal(hold, ref_hold) and np.array_equal(start, ref_start)
    assert hold.any() and (~hold).any()  # the prices span both decisions
    n = 300
    bins = rng.integers(0, steps + 1, n)
    own = rng.integers(0, slices, n)
    weights = rng.uniform(0.1, 1.0, n)
    cost, cold = _evaluate(hold, start, bins, own, weights, ready_s, steps)
    ref_cost, ref_cold = reference_evaluate(hold, start, bins, own, weights, ready_s)
    np.testing.assert_allclose(cost, ref_cost, rtol=1e-9)
    np.testing.assert_allclose(cold, ref_cold, rtol=1e-9)


@pytest.mark.parametrize("kind", ["flat", "timer", "bursty", "noise"])
@pytest.mark.parametrize("ready_s", [10.0, 40.0, 100.0])
def test_single_price_solver_matches_the_vectorised_one_bit_for_bit(kind, ready_s):
    """A fit's final tables come from the one-price path (Python floats); each price's row of
    the all-prices path (NumPy) must be the same tables."""
    rng = np.random.default_rng(hash((kind, ready_s, 1)) % 2**32)
    hazard = hazards(kind, rng, 6, 480)
    prices = PRICES[::3]
    hold, start = _solve(hazard, prices, ready_s)
    assert hold.any() and (~hold).any()
    for p, price in enumerate(prices):
        one_hold, one_start = _solve(hazard, np.array([price]), ready_s)
        assert one_hold.shape == (1, 6, 480) and one_hold.dtype == bool
        assert np.array_equal(one_hold[0], hold[p]) and np.array_equal(one_start[0], start[p])
