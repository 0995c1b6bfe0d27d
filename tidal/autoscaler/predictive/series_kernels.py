"""Compiled loops of the forecast: medians (`periods.nanmedian` and `clip_spikes`, the
seasonal profile's pooled phases), each slice's middle order statistics picked by quickselect
instead of a sort, and the EWMA's steps.

A median is a pick of one or two of the row's own values, `(low + high) / 2`, whatever the
order they are found in, so the results are the bits the sort gave; the EWMA makes the
Python loop's operations in its order, no fused multiply-add (tested in
tests/autoscaler/test_predictive_periods.py and test_predictive_series_kernels.py). Loaded
on the first forecast that needs one, so importing `tidal` does not pay for numba (as
`warm_kernels`)."""

from __future__ import annotations

import numpy as np

from tidal.autoscaler.predictive.warm_kernels import _compiled


@_compiled
def row_medians(x: np.ndarray) -> np.ndarray:
    """The median of each row of `x`, NaN ignored (NaN for a row without a value)."""
    rows, n = x.shape
    out = np.empty(rows)
    buffer = np.empty(n)
    for r in range(rows):
        kept = 0
        for i in range(n):
            value = x[r, i]
            if not np.isnan(value):
                buffer[kept] = value
                kept += 1
        out[r] = _median(buffer, kept)
    return out


@_compiled
def pool_medians(grid: np.ndarray, phases: np.ndarray, window: int) -> np.ndarray:
    """For each phase j of `phases`, the median of the columns j - window .. j + window of
    every row of `grid` (columns taken around the row's ends), NaN ignored: the seasonal
    profile's pooled phases (`forecast._phase_medians`)."""
    rows, period = grid.shape
    out = np.empty(phases.shape[0])
    buffer = np.empty(rows * (2 * window + 1))
    for at in range(phases.shape[0]):
        kept = 0
        for r in range(rows):
            for d in range(-window, window + 1):
                value = grid[r, (phases[at] + d) % period]
                if not np.isnan(value):
                    buffer[kept] = value
                    kept += 1
        out[at] = _median(buffer, kept)
    return out


@_compiled
def median(values: np.ndarray) -> float:
    """`np.nanmedian` of a 1-D array, to the bit: its middle values averaged as `np.mean`
    does (0.0 plus their sum, over their count)."""
    buffer = np.empty(values.shape[0])
    kept = 0
    for value in values:
        if not np.isnan(value):
            buffer[kept] = value
            kept += 1
    if kept == 0:
        return np.nan
    low, high = _middle(buffer, kept)
    if kept % 2:
        return 0.0 + low
    return (0.0 + (low + high)) / 2.0


@_compiled
def _median(a: np.ndarray, n: int) -> float:
    """`(sorted[(n - 1) // 2] + sorted[n // 2]) / 2` of `a[:n]` (reordered), NaN when n is 0."""
    if n == 0:
        return np.nan
    low, high = _middle(a, n)
    return (low + high) / 2


@_compiled
def _middle(a: np.ndarray, n: int) -> tuple[float, float]:
    """`sorted[(n - 1) // 2]` and `sorted[n // 2]` of `a[:n]` (n > 0; `a` is reordered).

    Quickselect with a three-way partition: the values equal to the pivot are set aside in
    one pass, so a row that is mostly one value (an idle service's zeros) takes one pass. A
    range still unsettled after 2 log2(n) + 8 passes (an adversarial order) is sorted."""
    k = (n - 1) // 2
    lo, hi = 0, n  # a[:lo] is below a[lo:hi], a[hi:] above it; the k-th lies in a[lo:hi]
    rounds = 2 * int(np.log2(n + 1)) + 8  # then sort what is left: never worse than a sort
    while True:
        rounds -= 1
        if rounds < 0:
            _heapsort(a, lo, hi)
            if n % 2:
                return a[k], a[k]
            if k + 1 < hi:
                return a[k], a[k + 1]
            return a[k], _least(a, hi, n)
        quarter = (hi - lo) >> 2
        first, middle, last = a[lo + quarter], a[(lo + hi - 1) >> 1], a[hi - 1 - quarter]
        if first > middle:
            first, middle = middle, first
        pivot = middle if middle < last else (last if first < last else first)
        below, i, above = lo, lo, hi
        while i < above:
            value = a[i]
            if value < pivot:
                a[i] = a[below]
                a[below] = value
                below += 1
                i += 1
            elif value > pivot:
                above -= 1
                a[i] = a[above]
                a[above] = value
            else:
                i += 1
        if k < below:
            hi = below
        elif k >= above:
            lo = above
        else:
            break
    if n % 2 or k + 1 < above:  # odd, or the next value is the pivot again
        return pivot, pivot
    return pivot, _least(a, above, n)  # all from `above` on exceed the pivot


@_compiled
def _heapsort(a: np.ndarray, lo: int, hi: int) -> None:
    """Sort `a[lo:hi]` in place (heapsort: n log n whatever the order; numba's own sort took
    most of this module's compile time)."""
    n = hi - lo
    for root in range(n // 2 - 1, -1, -1):
        _sift(a, lo, root, n)
    for end in range(n - 1, 0, -1):
        a[lo], a[lo + end] = a[lo + end], a[lo]
        _sift(a, lo, 0, end)


@_compiled
def _sift(a: np.ndarray, lo: int, root: int, n: int) -> None:
    """Move `a[lo + root]` down the max-heap `a[lo:lo + n]` to its place."""
    while True:
        child = 2 * root + 1
        if child >= n:
            return
        if child + 1 < n and a[lo + child] < a[lo + child + 1]:
            child += 1
        if not a[lo + root] < a[lo + child]:
            return
        a[lo + root], a[lo + child] = a[lo + child], a[lo + root]
        root = child


@_compiled
def _least(a: np.ndarray, begin: int, end: int) -> float:
    """The least of `a[begin:end]` (not empty)."""
    least = a[begin]
    for j in range(begin + 1, end):
        if a[j] < least:
            least = a[j]
    return least


@_compiled
def ewma_steps(values: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """The EWMA's one-step errors over `values` (starting at the first value) and its final
    level: `step = value - level; level += alpha * step`, value by value."""
    steps = np.empty(values.shape[0])
    if values.shape[0] == 0:
        return steps, 0.0
    level = values[0]
    for i in range(values.shape[0]):
        step = values[i] - level
        steps[i] = step
        level += alpha * step
    return steps, level
