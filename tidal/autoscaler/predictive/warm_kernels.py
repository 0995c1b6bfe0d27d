"""Compiled loops of the warm model (`warm.py`): the backward induction over the steps of a gap
and the walk of each table's path over a gap.

Both are sequential in the step, so NumPy could only vectorise them across the 126 (price,
slice) chains, paying several calls of its per-call overhead on each of ~480 steps; compiled,
a fit's solves and path walk take a fraction of that. The arithmetic is the one the NumPy
version did, operation for operation in the same order (no fused multiply-add, no fast-math),
so the tables are the same bits (tests/autoscaler/test_predictive_warm_solver.py and
test_predictive_fast_paths.py check them against plain transcriptions). numba is imported with
this module, which `warm` loads on its first fit, so importing `tidal` does not pay for it;
`cache=True` keeps the machine code between processes.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np


def _compiled(function: Callable) -> Callable:
    """`function` compiled, its machine code cached on disk where numba finds a writable place
    (beside this file, NUMBA_CACHE_DIR, or the user's cache directory). tidal's image runs as a
    user without a home on a read-only file system: there numba refuses `cache=True` outright,
    so the code is compiled once per process instead."""
    try:
        return numba.njit(cache=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(function)


@_compiled
def induct(
    hazard: np.ndarray, prices: np.ndarray, ready_s: float, m: int, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """(hold, start), each (steps, slices, prices), of the programme `warm._solve` documents.

    A start begun at step k is ready m steps later; its value is affine in the warm value
    then, `a + b * warm[k + m]`, with `a` (per price) and `b` summed over its m steps first.
    Past the horizon every value is a cold arrival. Each step updates all (price, slice)
    chains, which are independent, so the processor overlaps them."""
    slices, steps = hazard.shape
    n = prices.shape[0]
    hold = np.empty((steps, slices, n), dtype=np.bool_)
    start = np.empty((steps, slices, n), dtype=np.bool_)
    arrival = np.empty(n)  # a cold arrival: the price and the Ready Time
    for p in range(n):
        arrival[p] = prices[p] + ready_s
    priced = np.empty((m, n))  # what an arrival costs in step i of a start, the step not yet
    for i in range(m):
        for p in range(n):
            priced[i, p] = prices[p] + (m - 1 - i) * step
    warms = np.empty((steps + m, slices, n))
    cold = np.empty((slices, n))  # the value at zero one step on
    for j in range(slices):
        for p in range(n):
            cold[j, p] = arrival[p]
            for i in range(m):
                warms[steps + i, j, p] = arrival[p]
    q = np.empty(m)  # the hazards of a start's m steps
    ahead = np.empty(m)  # P(no arrival before step i of a start)
    total = np.empty(n)  # per price, what a start's m steps cost, summed step by step
    for k in range(steps - 1, -1, -1):
        for j in range(slices):
            factor_b = 1.0
            for i in range(m):
                q[i] = hazard[j, k + i] if k + i < steps else 1.0
                ahead[i] = factor_b
                beyond = i > 0 and k >= steps - i
                factor_b = factor_b * (0.0 if beyond else 1.0 - q[i])
            h = hazard[j, k]
            miss = 1.0 - h
            # Step k + i of a start, m - 1 - i steps still to come; the prices side by side.
            total[:] = 0.0
            for i in range(m):
                weight = ahead[i]
                if i > 0 and k >= steps - i:  # beyond the horizon: a cold arrival
                    for p in range(n):
                        total[p] = total[p] + arrival[p] * weight
                else:
                    hazard_i = q[i]
                    for p in range(n):
                        total[p] = total[p] + (hazard_i * priced[i, p] + step) * weight
            for p in range(n):
                begin = factor_b * warms[k + m, j, p] + total[p]  # start one now
                stay = miss * cold[j, p] + h * arrival[p]  # stay at zero
                keep = miss * warms[k + 1, j, p] + step  # keep one warm
                value = stay if stay < begin else begin
                cold[j, p] = value
                warms[k, j, p] = keep if keep < value else value
                hold[k, j, p] = keep <= value
                start[k, j, p] = begin < stay
    return hold, start


@_compiled
def walk(
    hold: np.ndarray, start: np.ndarray, m: int, ready_s: float, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """`warm._per_bin` for rows of tables: each row's path over a gap that begins warm, and per
    step (index `steps`: beyond the horizon) what a gap ending in it cost (the replica time
    paid before it, plus what an arrival in it then costs on top) and whether that arrival is
    cold (1.0) or not (0.0). All sums are of whole steps, exact in any order."""
    rows, steps = hold.shape
    cost = np.empty((rows, steps + 1))
    cold = np.ones((rows, steps + 1))
    for t in range(rows):
        state = 1  # 0 cold, 1 warm, j >= 2: starting, j - 1 steps until ready
        spent = 0.0  # replica time paid before step k
        for k in range(steps):
            if state == 1:
                if hold[t, k]:
                    cost[t, k] = spent
                    cold[t, k] = 0.0
                    spent += step
                else:
                    cost[t, k] = spent + ready_s
                    state = 0
            elif state == 0:
                if start[t, k]:
                    cost[t, k] = spent + step * (m - 1)
                    spent += step
                    state = m
                else:
                    cost[t, k] = spent + ready_s
            else:
                cost[t, k] = spent + step * (state - 2)
                spent += step
                state -= 1
        # Beyond the horizon: warm, still starting (no wait counted) or cold.
        if state == 0:
            cost[t, steps] = spent + ready_s
        else:
            cost[t, steps] = spent
            if state == 1:
                cold[t, steps] = 0.0
    return cost, cold


@_compiled
def pairwise_sum(a: np.ndarray, begin: int, n: int) -> float:
    """`np.sum` of the `n` values from `a[begin]` as NumPy adds them (0.0, plus its pairwise
    summation: blocks of at most 128 summed in eight lanes, halved on multiples of 8), so the
    result is the same bits."""
    return 0.0 + _pairwise(a, begin, n)


@_compiled
def _pairwise(a: np.ndarray, begin: int, n: int) -> float:
    """NumPy's `pairwise_sum`, its recursion walked with explicit stacks (numba's cache does
    not keep recursive functions)."""
    if n <= 128:
        return _block(a, begin, n)
    begins = np.empty(128, dtype=np.int64)  # pending halves; a combine is a negative length
    lengths = np.empty(128, dtype=np.int64)
    values = np.empty(128)
    tasks, kept = 1, 0
    begins[0], lengths[0] = begin, n
    while tasks:
        tasks -= 1
        at, size = begins[tasks], lengths[tasks]
        if size < 0:  # both halves are summed: add them
            kept -= 1
            values[kept - 1] = values[kept - 1] + values[kept]
        elif size <= 128:
            values[kept] = _block(a, at, size)
            kept += 1
        else:
            half = size // 2
            half -= half % 8
            begins[tasks], lengths[tasks] = at, -1
            begins[tasks + 1], lengths[tasks + 1] = at + half, size - half
            begins[tasks + 2], lengths[tasks + 2] = at, half
            tasks += 3
    return values[0]


@_compiled
def _block(a: np.ndarray, begin: int, n: int) -> float:
    """A leaf of `pairwise_sum`: under 8 values in order, else eight lanes then the rest."""
    if n < 8:
        total = 0.0
        for i in range(begin, begin + n):
            total = total + a[i]
        return total
    r0, r1, r2, r3 = a[begin], a[begin + 1], a[begin + 2], a[begin + 3]
    r4, r5, r6, r7 = a[begin + 4], a[begin + 5], a[begin + 6], a[begin + 7]
    i = 8
    while i < n - n % 8:
        j = begin + i
        r0, r1, r2, r3 = r0 + a[j], r1 + a[j + 1], r2 + a[j + 2], r3 + a[j + 3]
        r4, r5, r6, r7 = r4 + a[j + 4], r5 + a[j + 5], r6 + a[j + 6], r7 + a[j + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total = total + a[begin + i]
        i += 1
    return total


@_compiled
def hazard(
    bins: np.ndarray, own: np.ndarray, recency: np.ndarray, slices: int, other: float, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """`warm._hazard`: per slice, the gaps' weights (1 in their own slice, `other` elsewhere,
    times their recency) summed by length bin in gap order, one pseudo-gap beyond the horizon,
    normalised, smoothed by `warm._smooth`'s box, then survival and hazard; each sum in the
    order NumPy's `bincount`, `sum` (`pairwise_sum`, or in order over a column-major array) and
    `cumsum` take, so the same bits."""
    n = bins.shape[0]
    width = steps + 1
    mass = np.zeros((slices, width))
    squares = np.empty(n)
    for s in range(slices):
        for i in range(n):
            w = (1.0 if own[i] == s else other) * recency[i]
            mass[s, bins[i]] += w
            squares[i] = w * w
        total = pairwise_sum(mass[s], 0, width)
        n_eff = total * total / max(pairwise_sum(squares, 0, n), 1e-300)
        mass[s, steps] += total / max(n_eff, 1.0)
    survival = np.empty((slices, width + 1))
    out = np.empty((slices, steps))
    cumulative = np.empty(width)  # running sums: the box averages' ends, then the survival
    smooth = np.empty(width)
    for s in range(slices):
        row = mass[s]
        norm = pairwise_sum(row, 0, width)
        for k in range(width):
            row[k] = row[k] / norm
        # The box average over the first `steps` columns (the beyond column is kept).
        running = 0.0
        for k in range(steps):
            running = row[k] if k == 0 else running + row[k]
            cumulative[k] = running
        for k in range(steps):
            half = max(1, k // 32)
            lo, hi = max(k - half, 0), min(k + half + 1, steps)
            upper = cumulative[hi - 1]
            lower = 0.0 if lo == 0 else cumulative[lo - 1]
            smooth[k] = (upper - lower) / float(hi - lo)
        # NumPy lays the box averages out column-major, so their sum is taken in order.
        summed = 0.0
        for k in range(steps):
            summed = summed + smooth[k]
        factor = pairwise_sum(row, 0, steps) / max(summed, 1e-300)
        for k in range(steps):
            smooth[k] = smooth[k] * factor
        smooth[steps] = row[steps]
        survival[s, 0] = 1.0
        running = 0.0
        for k in range(width):
            running = smooth[k] if k == 0 else running + smooth[k]
            survival[s, k + 1] = _clip01(1.0 - running)
        for k in range(steps):
            below = survival[s, k]
            value = smooth[k] / below if below > 1e-12 else 0.0
            out[s, k] = _clip01(value)
    return out, survival


@_compiled
def _clip01(x: float) -> float:
    """`np.clip(x, 0.0, 1.0)` as NumPy computes it (NaN kept)."""
    if np.isnan(x):
        return x
    x = x if x > 0.0 else 0.0
    return x if x < 1.0 else 1.0
