"""Robust periodicity detection on a per-minute series (docs/predictive.md).

A RobustPeriod-like test, cut down to the two periods a service's load has: a day (1,440 min)
and a week (10,080 min). The series is cleaned (short gaps interpolated, NaNs ignored),
detrended, spikes clipped at median +- 5 MAD, averaged into 10-minute bins and tested with the
autocorrelation at the period's lag. The weekly test runs on what is left after the daily
profile is removed, so a daily cycle alone is not mistaken for a weekly one.
"""

from __future__ import annotations

import functools

import numpy as np

DAY = 1440
WEEK = 7 * DAY
BIN = 10  # minutes per bin for the autocorrelation test
MIN_ACF = 0.3  # autocorrelation at the period's lag
MIN_PEAK = 0.15  # ... and this much above the autocorrelation at half the lag
MAX_GAP = 60  # minutes of missing data interpolated over; longer gaps stay NaN


def interpolate_gaps(values: np.ndarray, max_gap: int = MAX_GAP) -> np.ndarray:
    """Linearly interpolate runs of NaN no longer than `max_gap` minutes that have data on both
    sides; longer runs and the ends stay NaN."""
    y = np.asarray(values, dtype=float).copy()
    missing = np.isnan(y)
    if not missing.any() or missing.all():
        return y
    idx = np.arange(len(y))
    known = idx[~missing]
    filled = np.interp(idx, known, y[known])
    # Length of the NaN run each missing point belongs to.
    edges = np.flatnonzero(np.diff(np.concatenate(([0], missing.view(np.int8), [0]))))
    run_len = np.zeros(len(y), dtype=int)
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        inside = start > 0 and end < len(y)
        run_len[start:end] = end - start if inside else max_gap + 1
    short = missing & (run_len <= max_gap)
    y[short] = filled[short]
    return y


def nanmedian(x: np.ndarray, axis: int) -> np.ndarray:
    """`np.nanmedian` along `axis` that gives NaN for an all-NaN slice without a warning.

    Each slice's middle values are picked by a compiled quickselect
    (`series_kernels.row_medians`) instead of `np.nanmedian`, whose path for short axes goes
    through masked arrays and cost most of a forecast refit, or a sort; the values are the
    same."""
    from tidal.autoscaler.predictive import series_kernels  # numba: loaded on first use

    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    rows = x.reshape(-1, x.shape[-1])
    return series_kernels.row_medians(rows).reshape(x.shape[:-1])


def clip_spikes(values: np.ndarray, k: float = 5.0) -> np.ndarray:
    """Winsorise at median +- k robust standard deviations (MAD x 1.4826), ignoring NaN.
    The medians are `np.nanmedian`'s, picked by a compiled quickselect
    (`series_kernels.median`) instead of a partition of a copy."""
    from tidal.autoscaler.predictive import series_kernels  # numba: loaded on first use

    med = series_kernels.median(values)
    scale = 1.4826 * series_kernels.median(np.abs(values - med))
    if scale == 0:
        scale = np.nanmean(np.abs(values - med))
    return np.clip(values, med - k * scale, med + k * scale)


def detect_periods(values: np.ndarray) -> tuple[int, ...]:
    """Periods (minutes) found in a per-minute series: (1440,), (1440, 10080), (10080,) or ().

    A period is tested only with at least two full cycles of history."""
    y = interpolate_gaps(values)
    present = ~np.isnan(y)
    if present.sum() < 2 * DAY or (not _spread(y) and np.nanstd(y) == 0):
        return ()
    y = clip_spikes(y)  # before the trend fit, so spikes do not tilt it
    idx = np.arange(len(y))
    slope, intercept = _trend(y, present)
    y = clip_spikes(y - (slope * idx + intercept))
    periods = []
    if _has_period(y, DAY):
        periods.append(DAY)
        y = y - seasonal_profile(y, DAY)
    if len(y) >= 2 * WEEK and _has_period(y, WEEK):
        periods.append(WEEK)
    return tuple(periods)


def _spread(y: np.ndarray) -> bool:
    """True when `np.nanstd(y)` cannot be 0 (its cheaper half): the range is far above the
    rounding of the mean (n eps max|y|) and above what squares to an underflow, so some
    value's deviation from the mean squares to more than 0."""
    low, high = float(np.nanmin(y)), float(np.nanmax(y))
    return high - low > 1e-100 and high - low > 1e-6 * max(abs(low), abs(high))


def seasonal_profile(y: np.ndarray, period: int) -> np.ndarray:
    """The median of each phase of `period` over all cycles, laid back along `y` (NaN-aware)."""
    cycles = -(-len(y) // period)
    padded = np.full(cycles * period, np.nan)
    padded[: len(y)] = y
    profile = nanmedian(padded.reshape(cycles, period), axis=0)
    return np.tile(np.nan_to_num(profile), cycles)[: len(y)]


def _trend(y: np.ndarray, present: np.ndarray) -> np.ndarray:
    """`np.polyfit(idx[present], y[present], 1)` (slope, intercept) over minutes idx. With no
    minute missing, the scaled design matrix polyfit builds depends on the length alone
    (`_design`); the least-squares solve polyfit makes is made on it, so the result is the
    same bits (three quarters of polyfit's time was building the matrix)."""
    if not present.all() or not _exact_design(len(y)):
        return np.polyfit(np.flatnonzero(present), y[present], 1)
    lhs, scale = _design(len(y))
    coefficients = np.linalg.lstsq(lhs, y + 0.0, len(y) * np.finfo(float).eps)[0]
    return (coefficients.T / scale).T


def _exact_design(n: int) -> bool:
    """Whether every partial sum of 0^2 .. (n - 1)^2 is an integer a double holds exactly."""
    return (n - 1) * n * (2 * n - 1) // 6 < 2**53


@functools.lru_cache(maxsize=4)
def _design(n: int) -> tuple[np.ndarray, np.ndarray]:
    """np.polyfit's degree-1 design matrix for x = 0 .. n - 1, its columns [x, 1] divided by
    their norms, and the norms (read-only: shared between fits). The squared norms are sums
    of integers, exact in any order while under 2**53 (`_exact_design`): polyfit's sum gives
    the same values, and each entry is polyfit's quotient."""
    scale = np.sqrt(np.array([(n - 1) * n * (2 * n - 1) // 6, n], dtype=float))
    lhs = np.empty((n, 2))
    lhs[:, 0] = np.arange(n, dtype=float) / scale[0]
    lhs[:, 1] = 1.0 / scale[1]
    lhs.flags.writeable = scale.flags.writeable = False
    return lhs, scale


def _has_period(y: np.ndarray, period: int) -> bool:
    binned = _bin_means(y, BIN)
    lag = period // BIN
    moments = _moments(binned)
    at_lag = _acf(binned, lag, moments)
    return at_lag >= MIN_ACF and at_lag - _acf(binned, lag // 2, moments) >= MIN_PEAK


def _bin_means(y: np.ndarray, size: int) -> np.ndarray:
    """Means of `size`-minute bins aligned on the end; NaN for a bin without data."""
    bins = y[len(y) - len(y) // size * size :].reshape(-1, size)
    missing = np.isnan(bins)
    if not missing.any():  # nansum's copy would hold the same values: sum them as they are
        return bins.sum(axis=1) / size
    counts = np.count_nonzero(~missing, axis=1)
    sums = np.nansum(bins, axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _moments(x: np.ndarray) -> tuple[float, float]:
    """Mean and variance of `x`, NaN ignored (what `_acf` normalises by)."""
    mean = np.nanmean(x)
    return mean, np.nanmean((x - mean) ** 2)


def _acf(x: np.ndarray, lag: int, moments: tuple[float, float]) -> float:
    """Autocorrelation at `lag` over the pairs where both ends are present (0 when undefined);
    `moments` are `_moments(x)`."""
    a, b = x[:-lag], x[lag:]
    both = ~(np.isnan(a) | np.isnan(b))
    if both.sum() < 10:
        return 0.0
    mean, var = moments
    if var == 0:
        return 0.0
    return float(np.mean((a[both] - mean) * (b[both] - mean)) / var)
