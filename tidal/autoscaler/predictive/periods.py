"""Robust periodicity detection on a per-minute series (docs/predictive.md).

A RobustPeriod-like test, cut down to the two periods a service's load has: a day (1,440 min)
and a week (10,080 min). The series is cleaned (short gaps interpolated, NaNs ignored),
detrended, spikes clipped at median +- 5 MAD, averaged into 10-minute bins and tested with the
autocorrelation at the period's lag. The weekly test runs on what is left after the daily
profile is removed, so a daily cycle alone is not mistaken for a weekly one.
"""

from __future__ import annotations

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


def nanmedian(x: np.ndarray, axis: int, scratch: bool = False) -> np.ndarray:
    """`np.nanmedian` along `axis` that gives NaN for an all-NaN slice without a warning.

    Sorted once instead of through `np.nanmedian`, whose path for short axes goes through
    masked arrays and cost most of a forecast refit; the values are the same. `scratch`: `x`
    is a float array the caller no longer needs, sorted in place instead of copied."""
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    if scratch:
        x.sort(axis=-1)  # NaN sorts last
        ordered = x
    else:
        ordered = np.sort(x, axis=-1)
    n = ordered.shape[-1]
    if n and not np.isnan(ordered[..., -1]).any():  # no NaN anywhere (it would sort last)
        return (ordered[..., (n - 1) // 2] + ordered[..., n // 2]) / 2
    present = np.count_nonzero(~np.isnan(ordered), axis=-1)
    low = np.take_along_axis(ordered, np.maximum((present - 1) // 2, 0)[..., None], -1)[..., 0]
    high = np.take_along_axis(ordered, (present // 2)[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore"):
        return np.where(present == 0, np.nan, (low + high) / 2)


def clip_spikes(values: np.ndarray, k: float = 5.0) -> np.ndarray:
    """Winsorise at median +- k robust standard deviations (MAD x 1.4826), ignoring NaN."""
    med = np.nanmedian(values)
    scale = 1.4826 * np.nanmedian(np.abs(values - med))
    if scale == 0:
        scale = np.nanmean(np.abs(values - med))
    return np.clip(values, med - k * scale, med + k * scale)


def detect_periods(values: np.ndarray) -> tuple[int, ...]:
    """Periods (minutes) found in a per-minute series: (1440,), (1440, 10080), (10080,) or ().

    A period is tested only with at least two full cycles of history."""
    y = interpolate_gaps(values)
    present = ~np.isnan(y)
    if present.sum() < 2 * DAY or np.nanstd(y) == 0:
        return ()
    y = clip_spikes(y)  # before the trend fit, so spikes do not tilt it
    idx = np.arange(len(y))
    slope, intercept = np.polyfit(idx[present], y[present], 1)
    y = clip_spikes(y - (slope * idx + intercept))
    periods = []
    if _has_period(y, DAY):
        periods.append(DAY)
        y = y - seasonal_profile(y, DAY)
    if len(y) >= 2 * WEEK and _has_period(y, WEEK):
        periods.append(WEEK)
    return tuple(periods)


def seasonal_profile(y: np.ndarray, period: int) -> np.ndarray:
    """The median of each phase of `period` over all cycles, laid back along `y` (NaN-aware)."""
    cycles = -(-len(y) // period)
    padded = np.full(cycles * period, np.nan)
    padded[: len(y)] = y
    profile = nanmedian(padded.reshape(cycles, period), axis=0)
    return np.tile(np.nan_to_num(profile), cycles)[: len(y)]


def _has_period(y: np.ndarray, period: int) -> bool:
    binned = _bin_means(y, BIN)
    lag = period // BIN
    return _acf(binned, lag) >= MIN_ACF and _acf(binned, lag) - _acf(binned, lag // 2) >= MIN_PEAK


def _bin_means(y: np.ndarray, size: int) -> np.ndarray:
    """Means of `size`-minute bins aligned on the end; NaN for a bin without data."""
    bins = y[len(y) - len(y) // size * size :].reshape(-1, size)
    counts = np.count_nonzero(~np.isnan(bins), axis=1)
    sums = np.nansum(bins, axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _acf(x: np.ndarray, lag: int) -> float:
    """Autocorrelation at `lag` over the pairs where both ends are present (0 when undefined)."""
    a, b = x[:-lag], x[lag:]
    both = ~(np.isnan(a) | np.isnan(b))
    if both.sum() < 10:
        return 0.0
    mean = np.nanmean(x)
    var = np.nanmean((x - mean) ** 2)
    if var == 0:
        return 0.0
    return float(np.mean((a[both] - mean) * (b[both] - mean)) / var)
