"""Keep one replica warm while a service is idle, or not: decided with prices (docs/predictive.md).

When a service's last request ends, an idle gap begins. Whether the next request is a cold start
depends only on whether a replica is warm (or started at least one Ready Time earlier) when it
comes. This module learns the distribution of a service's idle gaps (from the autoscaler's own
observations, plus gaps read off the per-minute history for the time before), by slice of the
day and weighted toward recent gaps, and solves a small dynamic programme over "seconds since the
gap began" for each slice:

- warm: hold one replica for the next step (costs a step of replica time) or release it;
- cold: stay at zero (an arrival costs one cold start plus the Ready Time of the replica the
  reactive path then starts) or start a replica now (costs replica time from now on, ready one
  Ready Time later).

A cold start is priced at `cold_start_cost` replica-seconds. By default ("auto") that price is
chosen per fit as the highest one whose expected replica time over the observed gaps stays under
`BUDGET` times what the KPA's fixed tail (stable window + scale-to-zero grace) would spend on the
same gaps (the margin covers the optimism of scoring on the gaps it was fitted on): the policy
buys as few cold starts as the KPA's own budget allows, or, if a cheaper price already expects
to avoid three in four of the KPA's cold starts, that cheaper price. If even that price
expects no real gain over the KPA on the gaps seen (memoryless arrivals: the KPA's fixed tail
is then already on the cost/cold-start frontier), the service runs as the KPA. With an increasing
hazard (a timer) the programme releases at once and pre-warms one Ready Time before the expected
arrival; with a decreasing one (bursts) it holds for as long as an arrival is likely; with a
flat one it is a keep-alive window sized by the price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

STEP_S = 15.0  # decision grid
HORIZON_S = 2 * 3600.0  # gaps longer than this are "long"; the programme's last step
SLICES = 6  # 4-hour slices of the day
OTHER_SLICE_WEIGHT = 0.1  # how much gaps from other slices count in a slice's histogram
HALF_LIFE_S = 7 * 86_400.0  # recency weighting of gaps (drift)
MIN_GAPS = 30  # fewer observed idle gaps: run as the KPA
MIN_GAP_S = 2.0  # shorter pauses are part of a busy period
MAX_GAPS = 5000  # most recent gaps kept
BUDGET = 0.8  # auto price: expected idle replica time <= BUDGET x the KPA's on the same gaps
GAIN = 0.8  # ... and used only if it expects <= GAIN x the KPA's cold starts on them
ENOUGH = 0.25  # a price that expects <= ENOUGH x the KPA's cold starts need not be outbid
PRICES = np.geomspace(1.0, 1e5, 21)  # candidate cold-start prices (replica-seconds)
AUTO = None


@dataclass(frozen=True)
class Gap:
    start: float  # epoch seconds the service went idle
    length: float  # seconds until the next request


def gaps_from_minutes(history: np.ndarray, start: float, until: float | None = None) -> list[Gap]:
    """Idle gaps read off a per-minute series (minute i covers `start + 60 i`): runs of minutes
    without demand between minutes with demand, each taken as its expected length (the gap
    starts and ends somewhere inside the busy minutes around it). Only gaps ending before
    `until` are returned."""
    y = np.nan_to_num(np.asarray(history, dtype=float))
    active = np.flatnonzero(y > 0)
    if active.size < 2:
        return []
    runs = np.diff(active)
    keep = runs > 1
    begins = start + 60.0 * (active[:-1][keep] + 1)
    lengths = 60.0 * (runs[keep] - 1) + 30.0
    out = [Gap(float(b), float(g)) for b, g in zip(begins, lengths, strict=True)]
    return [g for g in out if until is None or g.start + g.length <= until]


def slice_of(epoch: float) -> int:
    return int((epoch % 86_400.0) // (86_400.0 / SLICES))


@dataclass(frozen=True)
class WarmModel:
    """Per slice of the day, what to do at each step of an idle gap: `hold[s, k]` (warm: keep
    one replica) and `start[s, k]` (cold: start one now)."""

    hold: np.ndarray
    start: np.ndarray
    price: float  # replica-seconds one cold start is worth
    auto_price: bool
    ready_s: float
    gaps: int
    kpa_tail_s: float
    expected_cost_ratio: float  # expected idle replica time vs the KPA's, on the fitted gaps
    expected_cold_ratio: float  # expected cold starts vs the KPA's, on the fitted gaps
    useful: bool  # False: no affordable price beats the KPA's tail on these gaps; run as KPA
    survival: np.ndarray = field(repr=False)  # P(gap > k steps) per slice

    def action(self, idle_since: float, now: float, warm: bool) -> tuple[bool, str]:
        """(keep or have one replica, why) for a gap that began at `idle_since`."""
        s, k = slice_of(idle_since), self._step(now - idle_since)
        p_soon = self.arrival_within(idle_since, now, self.ready_s + STEP_S)
        odds = f"P(request within {self.ready_s + STEP_S:.0f}s) {p_soon:.2f}"
        if warm:
            keep = bool(self.hold[s, k])
            verb = "keep 1 warm" if keep else "release"
        else:
            keep = bool(self.start[s, k])
            verb = "pre-warm 1" if keep else "stay at 0"
        return keep, (
            f"idle {now - idle_since:.0f}s: {verb} ({odds}; a cold start priced "
            f"{self.price:.0f} replica-s{' (auto)' if self.auto_price else ''})"
        )

    def next_change(self, idle_since: float, now: float, warm: bool) -> float | None:
        """Epoch second when `action` next changes if nothing arrives (None: never)."""
        s, k = slice_of(idle_since), self._step(now - idle_since)
        row = self.hold[s] if warm else self.start[s]
        flips = np.flatnonzero(row[k:] != row[k])
        return None if not flips.size else idle_since + (k + int(flips[0])) * STEP_S

    def arrival_within(self, idle_since: float, now: float, seconds: float) -> float:
        """P(the gap ends within `seconds` after `now`, given it lasted until `now`)."""
        sv = self.survival[slice_of(idle_since)]
        k, j = self._step(now - idle_since), self._step(now - idle_since + seconds)
        return 0.0 if sv[k] <= 0 else float(1.0 - sv[j] / sv[k])

    def _step(self, seconds: float) -> int:
        return min(max(int(seconds // STEP_S), 0), self.hold.shape[1] - 1)


def kpa_tail(stable_window: float, grace: float) -> float:
    """How long the KPA keeps a replica after the last request (stable window, then grace)."""
    return stable_window + grace


def fit(
    gaps: list[Gap],
    ready_s: float,
    kpa_tail_s: float,
    now: float,
    cold_start_cost: float | None = AUTO,
) -> WarmModel | None:
    """The warm/cold tables from observed gaps; None with fewer than MIN_GAPS of them."""
    gaps = [g for g in gaps if g.length >= MIN_GAP_S][-MAX_GAPS:]
    if len(gaps) < MIN_GAPS:
        return None
    begins = np.array([g.start for g in gaps])
    lengths = np.array([g.length for g in gaps])
    steps = int(HORIZON_S // STEP_S)
    recency = 0.5 ** (np.clip(now - begins, 0, None) / HALF_LIFE_S)
    own = np.array([slice_of(b) for b in begins])
    weights = np.where(own[None, :] == np.arange(SLICES)[:, None], 1.0, OTHER_SLICE_WEIGHT)
    weights = weights * recency[None, :]  # (slices, gaps)
    bins = np.minimum((lengths // STEP_S).astype(np.int64), steps)  # `steps` = beyond horizon
    mass = np.zeros((SLICES, steps + 1))
    for s in range(SLICES):
        mass[s] = np.bincount(bins, weights=weights[s], minlength=steps + 1)
    mass = _smooth(mass / mass.sum(axis=1, keepdims=True))
    # survival[s, k] = P(gap > k steps); hazard[s, k] = P(ends in step k | lasted k steps)
    survival = np.concatenate((np.ones((SLICES, 1)), 1.0 - np.cumsum(mass, axis=1)), axis=1)
    survival = np.clip(survival, 0.0, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        hazard = np.where(survival[:, :-1] > 1e-12, mass / survival[:, :-1], 1.0)
    hazard = np.clip(hazard[:, :steps], 0.0, 1.0)
    prices = PRICES if cold_start_cost is AUTO else np.array([float(cold_start_cost)])
    hold, start = _solve(hazard, prices, ready_s)  # (prices, slices, steps)
    cost, cold = _evaluate(hold, start, bins, own, recency, ready_s, steps)
    kpa_cost, kpa_cold = _kpa(lengths, recency, kpa_tail_s, ready_s)
    useful = True
    if cold_start_cost is AUTO:
        affordable = np.flatnonzero(cost <= BUDGET * kpa_cost)
        pick = int(affordable[-1]) if affordable.size else 0
        enough = affordable[cold[affordable] <= ENOUGH * kpa_cold]
        if enough.size:  # the cheapest price that already avoids most cold starts
            pick = int(enough[0])
        useful = bool(affordable.size) and bool(cold[pick] <= GAIN * kpa_cold)
    else:
        pick = 0
    return WarmModel(
        hold=hold[pick],
        start=start[pick],
        price=float(prices[pick]),
        auto_price=cold_start_cost is AUTO,
        ready_s=ready_s,
        gaps=len(gaps),
        kpa_tail_s=kpa_tail_s,
        expected_cost_ratio=float(cost[pick] / kpa_cost) if kpa_cost else math.inf,
        expected_cold_ratio=float(cold[pick] / kpa_cold) if kpa_cold else 0.0,
        useful=useful,
        survival=survival,
    )


def _smooth(mass: np.ndarray) -> np.ndarray:
    """A box average whose width grows with the gap length (about +-3 %), so a few hundred gaps
    give a usable hazard and a timer stays sharp; the beyond-horizon column is left alone."""
    body = mass[:, :-1]
    steps = body.shape[1]
    k = np.arange(steps)
    width = np.maximum(1, k // 32)
    lo, hi = np.clip(k - width, 0, steps), np.clip(k + width + 1, 0, steps)
    total = np.concatenate((np.zeros((mass.shape[0], 1)), np.cumsum(body, axis=1)), axis=1)
    smooth = (total[:, hi] - total[:, lo]) / (hi - lo)
    smooth *= body.sum(axis=1, keepdims=True) / np.maximum(
        smooth.sum(axis=1, keepdims=True), 1e-300
    )
    return np.concatenate((smooth, mass[:, -1:]), axis=1)


def _solve(hazard: np.ndarray, prices: np.ndarray, ready_s: float) -> tuple[np.ndarray, ...]:
    """Backward induction over the steps of a gap, for every price and slice at once.
    Costs are in replica-seconds; an arrival ends the gap."""
    slices, steps = hazard.shape
    c = prices[:, None]  # (prices, 1) broadcast over slices
    m = max(1, math.ceil(ready_s / STEP_S))  # steps a start takes
    cold_arrival = c + ready_s
    v_cold = np.broadcast_to(cold_arrival, (len(prices), slices)).copy()  # beyond the horizon
    v_warm = v_cold.copy()
    v_start = np.broadcast_to(v_cold[..., None], (len(prices), slices, m)).copy()
    # v_start[..., j]: starting, j + 1 steps until ready
    hold = np.zeros((len(prices), slices, steps), dtype=bool)
    start = np.zeros((len(prices), slices, steps), dtype=bool)
    left = STEP_S * np.arange(m)  # start time still to pay after this step, by steps left
    for k in range(steps - 1, -1, -1):
        q = hazard[:, k][None, :]
        nxt = np.concatenate((v_warm[..., None], v_start[..., :-1]), axis=2)
        # An arrival while starting is a cold start, and the rest of the start is still paid.
        v_start = STEP_S + q[..., None] * (c[..., None] + left) + (1 - q[..., None]) * nxt
        stay = q * cold_arrival + (1 - q) * v_cold
        begin = v_start[..., m - 1]
        start[:, :, k] = begin < stay
        v_cold = np.minimum(stay, begin)
        keep = STEP_S + (1 - q) * v_warm
        hold[:, :, k] = keep <= v_cold
        v_warm = np.minimum(keep, v_cold)
    return hold, start


def _evaluate(
    hold: np.ndarray,
    start: np.ndarray,
    bins: np.ndarray,
    own: np.ndarray,
    weights: np.ndarray,
    ready_s: float,
    steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted total idle replica-seconds and cold starts of each price's tables over the gaps
    (each gap played in its own slice, starting warm)."""
    prices = hold.shape[0]
    m = max(1, math.ceil(ready_s / STEP_S))
    # Walk the state machine once per (price, slice): 0 cold, 1 warm, j >= 2 starting (ready
    # after j - 1 more steps).
    state = np.ones((prices, SLICES), dtype=np.int64)
    spent = np.zeros((prices, SLICES, steps + 1))  # replica time spent before step k
    cold_at = np.zeros((prices, SLICES, steps + 1), dtype=bool)  # an arrival in step k is cold
    ready_at = np.zeros((prices, SLICES, steps + 1))  # replica time an arrival then costs
    for k in range(steps):
        warm = state == 1
        starting = state >= 2
        cold = state == 0
        keep = np.where(warm, hold[:, :, k], False)
        begin = np.where(cold, start[:, :, k], False)
        now_warm = keep | starting | begin
        cold_at[:, :, k] = ~(keep)
        ready_at[:, :, k] = np.where(
            cold & ~begin | warm & ~keep,
            ready_s,
            np.where(begin, (m - 1) * STEP_S, np.where(starting, (state - 2) * STEP_S, 0.0)),
        )
        spent[:, :, k + 1] = spent[:, :, k] + np.where(now_warm, STEP_S, 0.0)
        state = np.where(keep, 1, np.where(begin, m, np.where(starting, state - 1, 0)))
    cold_at[:, :, steps] = state != 1
    ready_at[:, :, steps] = np.where(state == 0, ready_s, 0.0)
    spent_g = spent[:, own, bins]  # (prices, gaps)
    cost = (spent_g + ready_at[:, own, bins]) @ weights
    cold = cold_at[:, own, bins].astype(float) @ weights
    return cost, cold


def _kpa(
    lengths: np.ndarray, weights: np.ndarray, tail_s: float, ready_s: float
) -> tuple[float, float]:
    """The KPA's idle replica time and cold starts on the same gaps: a fixed tail."""
    long = lengths > tail_s
    cost = (np.minimum(lengths, tail_s) + np.where(long, ready_s, 0.0)) @ weights
    return float(cost), float(long.astype(float) @ weights)
