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
`BUDGET` times what the KPA's fixed tail (its stable window, and the scale-to-zero grace where
that applies: measured on the KPA's code, `kpa_cost.idle_tail`) would spend on the same gaps
(the margin covers the optimism of scoring on the gaps it was fitted on; each expected cold
start, the KPA's and its own, also pays the part of the replica the KPA panics into that is
spent while the request waits, `kpa_cost.served_panic_cost`): the policy buys as few cold starts
as the KPA's own budget allows, or, if a cheaper price already expects to avoid six in ten of
the KPA's cold starts, that cheaper price. Both sides hold as many replicas as they really would:
the KPA its count as the gap began through its tail, prediction that count capped at the last
hour's need while it holds within the tail, one beyond it (`Gap.kpa_replicas`,
`Gap.hold_replicas`). If even that price expects no real gain over the KPA
on the gaps seen (memoryless arrivals: the KPA's fixed tail is then already on the
cost/cold-start frontier), the service runs as the KPA. With an increasing
hazard (a timer) the programme releases at once and pre-warms one Ready Time before the expected
arrival; with a decreasing one (bursts) it holds for as long as an arrival is likely; with a
flat one it is a keep-alive window sized by the price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from operator import attrgetter, is_

import numpy as np

STEP_S = 15.0  # decision grid
HORIZON_S = 2 * 3600.0  # gaps longer than this are "long"; the programme's last step
STEPS = int(HORIZON_S // STEP_S)  # the programme's steps
SLICES = 6  # 4-hour slices of the day
OTHER_SLICE_WEIGHT = 0.1  # how much gaps from other slices count in a slice's histogram
HALF_LIFE_S = 7 * 86_400.0  # recency weighting of gaps (drift)
# Fewer observed idle gaps: run as the KPA. The auto price holds out MIN_HELD_OUT of them, so
# this leaves the tables at least 40 to be fitted on (six slices of the day, each with a
# histogram of its gaps); from 30, a function called 41 times a day fitted ten and held out
# twenty, and spent 1.024x the KPA's replica time for no fewer cold starts.
MIN_GAPS = 60
MIN_GAP_S = 2.0  # shorter pauses are part of a busy period
MAX_GAPS = 5000  # most recent gaps kept
BUDGET = 0.75  # auto price: expected idle replica time <= BUDGET x the KPA's on the same gaps
GAIN = 0.8  # ... and used only if it expects <= GAIN x the KPA's cold starts on them
HELD_OUT = 0.3  # auto price: chosen on this most recent share of the gaps, fitted on the rest
WINDOWS = 2  # ... split into this many consecutive windows, each within the budget
MIN_HELD_OUT = 20  # ... and on at least this many
ENOUGH = 0.4  # a price that expects <= ENOUGH x the KPA's cold starts need not be outbid
PRICES = np.geomspace(1.0, 1e5, 21)  # candidate cold-start prices (replica-seconds)
AUTO = None


@dataclass(frozen=True, slots=True)  # slots: a fit reads thousands of them, fields inline
class Gap:
    start: float  # epoch seconds the service went idle
    length: float  # seconds until the next request
    # Replicas as the gap began: the KPA's count, which it holds through its tail, and what
    # prediction holds within that tail when it keeps the service warm (the KPA's count, at
    # most the last hour's need). 1 where unknown (gaps read off the per-minute history).
    kpa_replicas: int = 1
    hold_replicas: int = 1


_FIELDS = tuple(map(attrgetter, ("start", "length", "kpa_replicas", "hold_replicas")))
# starts, lengths, length bins, slices, the KPA's replicas, prediction's held replicas
_Columns = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_NONE = np.empty(0)
_read: tuple[list[Gap], _Columns] = ([], (_NONE, _NONE, _NONE, _NONE, _NONE, _NONE))


def _columns(gaps: list[Gap]) -> _Columns:
    """The starts and lengths of `gaps` as arrays, with each gap's length bin (`bins`) and
    slice of the day (`own`), then its replica counts. Consecutive fits of a service see the
    same Gap objects (frozen) shifted by a few and followed by new ones: the part read last
    time whose objects are identical is taken from then, only the new ones are read
    (thousands of gaps lie scattered in memory after a long run; reading them cost more than
    solving)."""
    global _read
    old, old_columns = _read  # one tuple: consistent when fits run in threads
    shift = _shift(old, gaps)
    kept = len(old) - shift if shift is not None else 0
    new = gaps[kept:]
    starts, lengths, kpa, hold = (np.fromiter(map(get, new), float, len(new)) for get in _FIELDS)
    columns = (starts, lengths, _bins(lengths), _slices(starts), kpa, hold)
    if kept:
        columns = tuple(
            np.concatenate((before[shift:], after))
            for before, after in zip(old_columns, columns, strict=True)
        )
    _read = (gaps, columns)
    return columns


def _bins(lengths: np.ndarray) -> np.ndarray:
    """Each gap's step of the programme (STEPS: beyond the horizon)."""
    return np.minimum((lengths // STEP_S).astype(np.int64), STEPS)


def _slices(starts: np.ndarray) -> np.ndarray:
    """Each gap's slice of the day."""
    return ((starts % 86_400.0) // (86_400.0 / SLICES)).astype(np.int64)


def _shift(old: list[Gap], gaps: list[Gap], reach: int = 256) -> int | None:
    """d < reach such that `gaps` begins with the very objects `old[d:]` (None: no such d).
    Between two fits of a service a few gaps at most leave the front of its newest MAX_GAPS;
    a search bounded by `reach` keeps a miss (fits of other services in turn) cheap."""
    if not old or not gaps:
        return None
    first = gaps[0]
    for d in range(min(len(old), reach)):
        if old[d] is first:
            n = len(old) - d
            if n <= len(gaps) and all(map(is_, old[d:], gaps[:n])):
                return d
            return None
    return None


def gaps_from_minutes(history: np.ndarray, start: float, until: float | None = None) -> list[Gap]:
    """Idle gaps read off a per-minute series (minute i covers `start + 60 i`): runs of minutes
    without demand between minutes with demand, each taken as its expected length (the gap
    starts and ends somewhere inside the busy minutes around it). Only gaps ending before
    `until` are returned."""
    if until is not None and until < start + 90.0:  # none ends that early (a minute, then 30 s)
        return []
    y = np.asarray(history, dtype=float)
    if until is not None:  # a gap ending by `until` ends in a busy minute before this one
        y = y[: math.floor((until - start + 30.0) / 60.0) + 2]
    y = np.nan_to_num(y)
    active = np.flatnonzero(y > 0)
    if active.size < 2:
        return []
    runs = np.diff(active)
    keep = runs > 1
    begins = start + 60.0 * (active[:-1][keep] + 1)
    lengths = 60.0 * (runs[keep] - 1) + 30.0
    if until is not None:
        ended = begins + lengths <= until
        begins, lengths = begins[ended], lengths[ended]
    return [Gap(b, g) for b, g in zip(begins.tolist(), lengths.tolist(), strict=True)]


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
    # The held-out test found a price worth using. `useful` may still be False for the auto
    # price until a second fit agrees (refit.fit_warm: one fit's verdict can be noise).
    rhythm: bool = True
    # The auto price's held-out gaps include one the KPA would meet with a cold start, or span
    # more than one slice of the day; without, no price can be shown to beat it (and
    # `expected_cold_ratio` means nothing).
    evidence: bool = True
    # The newest gaps were all shorter than the KPA's tail, so the auto price was also scored
    # on one gap past the horizon (`fit`); `expected_cold_ratio` counts it.
    long_gap_scored: bool = False

    def action(self, idle_since: float, now: float, warm: bool) -> tuple[bool, str]:
        """(keep or have one replica, why) for a gap that began at `idle_since`."""
        s, k = slice_of(idle_since), self._step(now - idle_since)
        p_soon = self.arrival_within(idle_since, now, self.ready_s + STEP_S)
        odds = f"P(request within {self.ready_s + STEP_S:.0f}s) {p_soon:.2f}"
        beyond = now - idle_since >= HORIZON_S  # longer than the model sees: as the KPA, none
        if warm:
            keep = bool(self.hold[s, k]) and not beyond
            verb = "keep 1 warm" if keep else "release"
        else:
            keep = bool(self.start[s, k]) and not beyond
            verb = "pre-warm 1" if keep else "stay at 0"
        return keep, (
            f"idle {now - idle_since:.0f}s: {verb} ({odds}; a cold start priced "
            f"{self.price:.0f} replica-s{' (auto)' if self.auto_price else ''})"
        )

    def next_change(self, idle_since: float, now: float, warm: bool) -> float | None:
        """Epoch second when `action` next changes if nothing arrives (None: never)."""
        if now - idle_since >= HORIZON_S:
            return None
        s, k = slice_of(idle_since), self._step(now - idle_since)
        flip = self._flips()[0 if warm else 1][s][k]
        if flip >= 0:
            return idle_since + flip * STEP_S
        row = self.hold[s] if warm else self.start[s]
        return idle_since + HORIZON_S if row[k] else None

    def _flips(self) -> tuple[list[list[int]], list[list[int]]]:
        """Per table (hold, start), slice and step k: the first step from k on whose entry
        differs from step k's (-1: none). Built on the first ask (a replay asks at every
        wake) and kept on the model, which is frozen."""
        flips = self.__dict__.get("_flip_tables")
        if flips is None:
            flips = tuple(_first_flips(table) for table in (self.hold, self.start))
            object.__setattr__(self, "_flip_tables", flips)
        return flips

    def arrival_within(self, idle_since: float, now: float, seconds: float) -> float:
        """P(the gap ends within `seconds` after `now`, given it lasted until `now`)."""
        sv = self.survival[slice_of(idle_since)]
        k, j = self._step(now - idle_since), self._step(now - idle_since + seconds)
        return 0.0 if sv[k] <= 0 else float(1.0 - sv[j] / sv[k])

    def _step(self, seconds: float) -> int:
        return min(max(int(seconds // STEP_S), 0), self.hold.shape[1] - 1)


def _first_flips(table: np.ndarray) -> list[list[int]]:
    """Per row of `table` and step k, the first step j >= k where the row differs from its
    step k (-1 when it never does again)."""
    rows = []
    for row in table:
        changes = np.flatnonzero(row[1:] != row[:-1]) + 1  # steps that differ from the last
        after = np.searchsorted(changes, np.arange(len(row)), side="right")
        rows.append(np.append(changes, -1)[after].tolist())
    return rows


def fit(
    gaps: list[Gap],
    ready_s: float,
    kpa_tail_s: float,
    now: float,
    cold_start_cost: float | None = AUTO,
    panic_s: float = 0.0,
    own_panic_s: float | None = None,
    spare: float | None = None,
) -> WarmModel | None:
    """The warm/cold tables from observed gaps; None with fewer than MIN_GAPS of them.

    With the auto price, the price is chosen out of sample: tables fitted on the older gaps are
    scored on the most recent HELD_OUT share against the KPA's fixed tail on those same gaps,
    and a service whose tables do not beat the KPA there runs as the KPA. The tables used are
    the ones scored; an explicit price's are fitted on all the gaps. `panic_s` is what a cold
    start costs beyond its Ready Time in that model, added for every expected cold start on
    either side (`refit.fit_warm` gives the auto price `kpa_cost.served_panic_cost`, the part of
    the KPA's panic replica spent while the request waits, and an explicit price the whole
    `kpa_cost.panic_cost`); `own_panic_s`, when given, charges predictive's own cold starts that
    instead in the auto price's budget. `spare` (`refit.fit_warm`: while the live account shows
    prediction spending less than the KPA): where no price within BUDGET is worth using, the
    cheapest one within `spare` x the KPA's idle replica time that is."""
    # The newest MAX_GAPS are the ones kept unless some are too short: read only those then.
    columns = _columns(gaps[-MAX_GAPS:])
    if not (columns[1] >= MIN_GAP_S).all():
        if len(columns[0]) < len(gaps):
            columns = _columns(gaps)
        long_enough = columns[1] >= MIN_GAP_S
        columns = tuple(column[long_enough][-MAX_GAPS:] for column in columns)
    begins, lengths, bins, own, kpa_replicas, hold_replicas = columns
    if len(begins) < MIN_GAPS:
        return None
    steps = STEPS
    recency = 0.5 ** (np.clip(now - begins, 0, None) / HALF_LIFE_S)
    useful = evidence = True
    unseen_long = False
    tail_bin = min(int(kpa_tail_s // STEP_S), steps)  # the KPA's tail, on the length bins
    if cold_start_cost is AUTO:
        held = max(MIN_HELD_OUT, int(HELD_OUT * len(begins)))
        train = slice(0, len(begins) - held)
        held_out = np.arange(len(begins) - held, len(begins))
        hazard, _ = _hazard(bins[train], own[train], recency[train], steps)
        hold, start = _solve(hazard, PRICES, ready_s)  # (prices, slices, steps)
        # Scored on each of WINDOWS consecutive parts of the held-out gaps: a price must stay
        # within the budget on every one of them, not only on their sum.
        per_bin = _per_bin(hold, start, ready_s, steps)
        charge = panic_s if own_panic_s is None else own_panic_s
        parts = np.array_split(held_out, WINDOWS)
        kpa_parts = [
            _kpa(lengths[part], recency[part], kpa_tail_s, ready_s, kpa_replicas[part])
            for part in parts
        ]
        # Held-out gaps all shorter than the KPA's tail cannot tell the prices apart on cold
        # starts (none has any there), and the cheapest "that avoids most of them" would be
        # taken. Unseen is not impossible (as in `_hazard`): each window is then also scored
        # on one gap past the horizon, so a price is affordable only if it can pay for
        # meeting the next long gap too, and worth using only if it meets it warm.
        unseen_long = not any(kpa_cold for _, kpa_cold in kpa_parts)
        windows = []
        for part, (kpa_cost, kpa_cold) in zip(parts, kpa_parts, strict=True):
            within_tail = (hold_replicas[part], tail_bin)
            cost, cold = _score(per_bin, bins[part], own[part], recency[part], within_tail)
            if unseen_long:
                weight = float(recency[part].mean())
                cost = cost + weight * per_bin[0][:, own[part], steps].mean(axis=1)
                cold = cold + weight * per_bin[1][:, own[part], steps].mean(axis=1)
                kpa_cost, kpa_cold = kpa_cost + weight * (kpa_tail_s + ready_s), weight
            windows.append((cost, cold, kpa_cost + panic_s * kpa_cold, kpa_cold))
        within = np.all([c + charge * n <= BUDGET * k for c, n, k, _ in windows], axis=0)
        cost, cold, kpa_cost, kpa_cold = (sum(w[i] for w in windows) for i in range(4))
        cost = cost + panic_s * cold  # the expected ratio is reported at the full charge
        affordable = np.flatnonzero(within)
        pick = int(affordable[-1]) if affordable.size else 0
        enough = affordable[cold[affordable] <= ENOUGH * kpa_cold]
        if enough.size:  # the cheapest price that already avoids most cold starts
            pick = int(enough[0])
        # A held-out share of one burst's short gaps is no evidence: the KPA has no cold start
        # there to beat, any table that holds a few seconds passes them, and the tables of
        # every other slice of the day go untested (a sparse service was priced at one
        # replica-second so, and released replicas 3 s into its next bursts). Short gaps
        # spread over the day are (a function called every minute holds through them).
        evidence = not unseen_long or np.unique(own[held_out]).size > 1
        useful = evidence and bool(affordable.size) and bool(cold[pick] <= GAIN * kpa_cold)
        if not useful and evidence and spare is not None:
            wider = np.all([c + charge * n <= spare * k for c, n, k, _ in windows], axis=0)
            worth = np.flatnonzero(wider & (cold <= GAIN * kpa_cold))
            if worth.size:
                pick, useful = int(worth[0]), True
        price = float(PRICES[pick])
        cost_ratio = float(cost[pick] / kpa_cost) if kpa_cost else math.inf
        cold_ratio = float(cold[pick] / kpa_cold) if kpa_cold else 0.0
    hazard, survival = _hazard(bins, own, recency, steps)
    if cold_start_cost is AUTO:
        # The tables the held-out test scored, not a refit on all the gaps at that price: near
        # a price where holding and releasing cost about the same, the newest gaps flip the
        # slices they fall in, and a function whose scored tables held through every gap
        # (0.00x the KPA's cold starts expected) ran refitted ones that released at once
        # (1.38x the KPA's cold-start requests). The held-out share moves on with every fit.
        hold, start = hold[pick : pick + 1], start[pick : pick + 1]
    else:  # fitted on all the gaps, and scored on them
        price = float(cold_start_cost)
        hold, start = _solve(hazard, np.array([price]), ready_s)
        within_tail = (hold_replicas, tail_bin)
        cost, cold = _evaluate(hold, start, bins, own, recency, ready_s, steps, within_tail)
        kpa_cost, kpa_cold = _kpa(lengths, recency, kpa_tail_s, ready_s, kpa_replicas)
        cost, kpa_cost = cost + panic_s * cold, kpa_cost + panic_s * kpa_cold
        cost_ratio = float(cost[0] / kpa_cost) if kpa_cost else math.inf
        cold_ratio = float(cold[0] / kpa_cold) if kpa_cold else 0.0
    return WarmModel(
        hold=hold[0],
        start=start[0],
        price=price,
        auto_price=cold_start_cost is AUTO,
        ready_s=ready_s,
        gaps=len(begins),
        kpa_tail_s=kpa_tail_s,
        expected_cost_ratio=cost_ratio,
        expected_cold_ratio=cold_ratio,
        useful=useful,
        survival=survival,
        rhythm=useful,
        evidence=evidence,
        long_gap_scored=unseen_long,
    )


def _hazard(
    bins: np.ndarray, own: np.ndarray, recency: np.ndarray, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per slice of the day, the hazard of each step of a gap (the chance it ends in step k,
    given it lasted k steps) and the survival P(gap > k steps), from gaps binned by length.

    Each gap weighs its recency in its own slice and OTHER_SLICE_WEIGHT times that in the
    others. Unseen is not impossible: one more (average-weight) gap longer than the horizon is
    added, so the hazard past the longest gap seen is low, not certain (a few quiet nights must
    not read as "a request is due now", which would pre-warm a replica and hold it all night).
    The distribution is then smoothed by a box whose width grows with the gap length (about
    +-3 %), so a few hundred gaps give a usable hazard and a timer stays sharp (the
    beyond-horizon column is left alone). Computed in one compiled pass
    (`warm_kernels.hazard`: the same sums in the same order as the NumPy expression of it in
    tests/autoscaler/test_predictive_warm_kernels.py)."""
    from tidal.autoscaler.predictive import warm_kernels  # numba: loaded on the first fit

    return warm_kernels.hazard(
        np.ascontiguousarray(bins, dtype=np.int64),
        np.ascontiguousarray(own, dtype=np.int64),
        np.ascontiguousarray(recency, dtype=float),
        SLICES,
        OTHER_SLICE_WEIGHT,
        steps,
    )


def _solve(hazard: np.ndarray, prices: np.ndarray, ready_s: float) -> tuple[np.ndarray, ...]:
    """Backward induction over the steps of a gap, for every price and slice: (hold, start),
    each (prices, slices, steps). Costs are in replica-seconds; an arrival ends the gap.

    Starting a replica at step k commits it for the m steps it takes to be ready, so its value
    is affine in the warm value m steps later: `begin[k] = a[k] + b[k] * v_warm[k + m]`, with
    `a` and `b` built from the hazards alone. That leaves two recurrences per step, walked in
    compiled code (`warm_kernels.induct`)."""
    from tidal.autoscaler.predictive import warm_kernels  # numba: loaded on the first fit

    m = max(1, math.ceil(ready_s / STEP_S))  # steps a start takes
    hold, start = warm_kernels.induct(
        np.ascontiguousarray(hazard, dtype=float),
        np.ascontiguousarray(prices, dtype=float),
        float(ready_s),
        m,
        STEP_S,
    )
    return (
        np.ascontiguousarray(hold.transpose(2, 1, 0)),
        np.ascontiguousarray(start.transpose(2, 1, 0)),
    )


def _evaluate(
    hold: np.ndarray,
    start: np.ndarray,
    bins: np.ndarray,
    own: np.ndarray,
    weights: np.ndarray,
    ready_s: float,
    steps: int,
    held: tuple[np.ndarray, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted total idle replica-seconds and cold starts of each price's tables over the gaps
    (each gap played in its own slice, starting warm; `held` as in `_score`)."""
    return _score(_per_bin(hold, start, ready_s, steps), bins, own, weights, held)


def _per_bin(
    hold: np.ndarray, start: np.ndarray, ready_s: float, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per (price, slice, length bin): the idle replica-seconds and whether it is a cold start,
    for a gap of that length played on the tables from its start (a warm spell until the next
    release, at zero until the next start, starting for m steps, warm again, ...; walked in
    compiled code, `warm_kernels.walk`). It depends on the tables only, so it is computed once
    for all the gaps scored on them."""
    from tidal.autoscaler.predictive import warm_kernels  # numba: loaded on the first fit

    prices, slices = hold.shape[:2]
    m = max(1, math.ceil(ready_s / STEP_S))
    cost, cold = warm_kernels.walk(
        np.ascontiguousarray(hold).reshape(-1, steps),
        np.ascontiguousarray(start).reshape(-1, steps),
        m,
        float(ready_s),
        STEP_S,
    )
    shape = (prices, slices, steps + 1)
    return cost.reshape(shape), cold.reshape(shape)


def _score(
    per_bin: tuple[np.ndarray, np.ndarray],
    bins: np.ndarray,
    own: np.ndarray,
    weights: np.ndarray,
    held: tuple[np.ndarray, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`_evaluate` from `_per_bin`'s tables: the gaps summed by (slice, length bin) first.
    `held`: each gap's replicas held while warm within the KPA's tail, and the tail's length
    bin; the replicas beyond one are paid for the part of the gap's walk within the tail
    (the walk of a gap cut at the tail), one replica after it."""
    cost_at, cold_at = per_bin
    mass = np.zeros(cost_at.shape[1:])  # weight of the gaps by (own slice, length bin)
    np.add.at(mass, (own, bins), weights)
    cost = np.einsum("psk,sk->p", cost_at, mass)
    cold = np.einsum("psk,sk->p", cold_at, mass)
    if held is not None:
        replicas, tail_bin = held
        extra = np.zeros(cost_at.shape[1:])
        np.add.at(extra, (own, np.minimum(bins, tail_bin)), weights * (replicas - 1.0))
        cost = cost + np.einsum("psk,sk->p", cost_at, extra)
    return cost, cold


def _kpa(
    lengths: np.ndarray,
    weights: np.ndarray,
    tail_s: float,
    ready_s: float,
    replicas: np.ndarray | float = 1.0,
) -> tuple[float, float]:
    """The KPA's idle replica time and cold starts on the same gaps: a fixed tail, with the
    count each gap began with (`replicas`) held through it."""
    long = lengths > tail_s
    cost = (replicas * np.minimum(lengths, tail_s) + np.where(long, ready_s, 0.0)) @ weights
    return float(cost), float(long.astype(float) @ weights)
