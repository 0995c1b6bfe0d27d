"""Forecast a per-minute series with a quantile band, choosing the method by held-out error
(docs/predictive.md).

Three candidates: seasonal-naive (the same minute one period ago: a week, else a day; with
under a day of history, the last value), a seasonal-median profile (below) and the recent level
(EWMA). Each is scored (mean absolute error) on up to five (two when a day long) held-out
windows of
`min(horizon, 1 d)` minutes at the end of the history, fitted on what precedes each; a method
other than seasonal-naive is chosen only when it is at least 10 % better on average and no
worse in any window (choosing on the average alone picked the smoother method just before
level shifts it then missed), and the choice is refitted on the whole history. With too little
history to hold a window out: the profile when periods are found, else seasonal-naive.

With periods: a seasonal-median profile. Each minute of the period (a day, or a week when a
weekly period was found) is forecast as the median of that minute +- `WINDOW` minutes over all
past cycles, so spikes and gaps do not bend it. With a daily period and more than a week of
history, each forecast day is scaled by the level of the same weekday last week relative to
the profile (a weekly dip shows before two weeks exist to prove the weekly period). The band
is `upper(t) = mean(t) + s(hour(t)) * Q_q(r / s)`: s is a robust (MAD) scale of the in-sample
residuals r per hour of the day, so the band follows load, and the quantile is pooled over
the day, so a burst that fell in the same hour twice does not widen that hour alone. It beat
STL/MSTL (statsmodels) in the walk-forward backtest at a fraction of the cost (numbers in
`backtest.py`).

Without periods, or with too little history: the recent level (EWMA, half-life 30 min, or a
quarter of a shorter horizon) plus
the q-quantile of its one-step errors over the last day, flat over the horizon (and the reactive
path dominates).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np

from tidal.autoscaler.predictive.periods import (
    DAY,
    WEEK,
    detect_periods,
    interpolate_gaps,
    nanmedian,
)

WINDOW = 10  # minutes either side pooled into a phase's median
MAX_CYCLES = 4  # weeks (or 28 days) of history used at most
HALF_LIFE = 30.0  # minutes, EWMA for a day's horizon; a quarter of a shorter horizon
PROFILE = "seasonal-median"
EWMA = "ewma"
SEASONAL_NAIVE = "seasonal-naive"
NONE = "none"
MIN_HOLDOUT = 10  # minutes: shorter held-out spans are not worth choosing on
HOLDOUTS = 5  # held-out windows (rolling origin) a choice is made on
DAY_HOLDOUTS = 2
MARGIN = 0.9  # another method must beat seasonal-naive's held-out error by 10 % to be chosen
MEMO_SIZE = 256  # fits kept for reuse: a day of hourly plans' (see `_mean_of`)


@dataclass(frozen=True)
class ForecastResult:
    """Per-minute `mean` and `upper` (the quantile) demand for the horizon after the history."""

    mean: np.ndarray
    upper: np.ndarray
    periods: tuple[int, ...]
    method: str
    reason: str


def forecast(
    history: np.ndarray,
    quantile: float,
    horizon: int = DAY,
    periods: tuple[int, ...] | None = None,
) -> ForecastResult:
    """Forecast `horizon` minutes after a per-minute `history` (NaN = no data) with the method
    that did best on its last `min(horizon, 1 d)` minutes. `periods` are detected when not
    given."""
    y = np.array(history, dtype=float)  # a copy: fits on its prefixes are kept for reuse
    hold = min(horizon, DAY)
    known = int(np.count_nonzero(~np.isnan(y)))
    if periods is None:  # once, on the whole history, for every candidate and window
        periods = detect_periods(interpolate_gaps(y))
    # A day-long window costs a profile fit each; two days of evidence keep a plan under 1 s.
    windows = min(HOLDOUTS if hold < DAY else DAY_HOLDOUTS, len(y) // hold - 2)
    if hold < MIN_HOLDOUT or windows < 1 or known == 0:
        if known and not periods:
            return seasonal_naive(y, quantile, horizon)
        return _fixed(y, quantile, horizon, periods)
    errors, by_window = {}, {}
    for method in (SEASONAL_NAIVE, PROFILE, EWMA):
        scores = []
        for w in range(1, windows + 1):
            test = y[len(y) - w * hold :][:hold]
            err = np.abs(test - _mean_of(method, y[: len(y) - w * hold], quantile, hold, periods))
            scores.append(_mean_error(err))
        errors[method], by_window[method] = float(np.mean(scores)), np.array(scores)
    # Seasonal-naive unless another method is clearly better out of sample, in every held-out
    # window: choosing on a few windows is noisy, and a near-tie is not worth it.
    best = min(errors, key=lambda m: errors[m])
    naive = by_window[SEASONAL_NAIVE]
    if errors[best] > MARGIN * errors[SEASONAL_NAIVE] or (by_window[best] > naive).any():
        best = SEASONAL_NAIVE
    result = _by_method(best, y, quantile, horizon, periods)
    _remember((best, quantile, horizon, tuple(periods), len(y)), y, result.mean)
    scores_text = ", ".join(f"{m} {e:.3g}" for m, e in errors.items())
    return replace(result, reason=f"{result.reason}; chosen by held-out error ({scores_text})")


def _mean_error(err: np.ndarray) -> float:
    """The mean of the finite errors (`np.nanmean`; infinity when there are none). With every
    error finite, their plain mean: nanmean's own sum of the same values, without its copy."""
    finite = np.isfinite(err)
    if finite.all() and len(err):
        return float(err.mean())
    return float(np.nanmean(err)) if finite.any() else np.inf


_memo: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()
_memo_lock = threading.Lock()


def _mean_of(
    method: str, train: np.ndarray, quantile: float, horizon: int, periods: tuple[int, ...]
) -> np.ndarray:
    """`_by_method(...).mean`, reused when the same fit was made before on the same values:
    hourly plans hold out their last days, each of which an earlier plan fitted on (a plan's
    windows end where plans of 1 and 2 days ago began), so most of a plan's fits repeat."""
    key = (method, quantile, horizon, tuple(periods), len(train))
    with _memo_lock:
        kept = _memo.get(key)
    if kept is not None and np.array_equal(kept[0].view(np.int64), train.view(np.int64)):
        return kept[1]  # bit for bit the same input: the same (pure) fit
    mean = _by_method(method, train, quantile, horizon, periods, False).mean
    _remember(key, train, mean)
    return mean


def _remember(key: tuple, train: np.ndarray, mean: np.ndarray) -> None:
    """Keep a fit's mean for `_mean_of` (`train` is a private copy's prefix: never written)."""
    mean = mean.copy()
    mean.flags.writeable = False
    with _memo_lock:
        _memo[key] = (train, mean)
        _memo.move_to_end(key)
        while len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)


def _by_method(
    method: str,
    y: np.ndarray,
    quantile: float,
    horizon: int,
    periods: tuple[int, ...] | None,
    band: bool = True,
) -> ForecastResult:
    """The forecast of `method`; without `band`, only its mean (`upper` is the mean: held-out
    scoring reads nothing else, and the band's quantiles cost as much as the fit)."""
    if method == SEASONAL_NAIVE:
        result = seasonal_naive(y, quantile, horizon, band)
        seasonal = "last value" not in result.reason
        return replace(result, periods=tuple(periods or ()) if seasonal else ())
    if method == EWMA:
        clean = interpolate_gaps(y)
        if not np.count_nonzero(~np.isnan(clean)):
            zeros = np.zeros(horizon)
            return ForecastResult(zeros, zeros, (), NONE, "no history: forecast 0")
        return _ewma_forecast(clean, quantile, horizon, "recent level (EWMA) + quantile", band)
    return _fixed(y, quantile, horizon, periods, band)


def seasonal_naive(
    history: np.ndarray, quantile: float, horizon: int, band: bool = True
) -> ForecastResult:
    """The same minute one period ago (a week with a week and a day of history, else a day),
    the last value with under a day; the band from its own in-sample errors (none without
    `band`: `upper` is the mean)."""
    y = filled(history)
    period = WEEK if len(y) >= WEEK + DAY else DAY if len(y) >= DAY + 60 else 0
    if period:
        mean = np.resize(y[-period:], horizon)
        errors = y[period:] - y[:-period]
        name = "same minute last week" if period == WEEK else "same minute yesterday"
    else:
        mean = np.full(horizon, y[-1] if len(y) else 0.0)
        errors = np.diff(y)
        name = "last value"
    width = max(float(np.quantile(errors, quantile)), 0.0) if band and len(errors) else 0.0
    return ForecastResult(mean, mean + width, (), SEASONAL_NAIVE, f"seasonal-naive: {name}")


def filled(history: np.ndarray) -> np.ndarray:
    """A gap-free series: every gap interpolated, 0 where there is no data at all."""
    y = np.asarray(history, dtype=float)
    ok = ~np.isnan(y)
    if ok.all():  # what the interpolation gives at its own points (exactly: tested)
        return y.copy()
    if not ok.any():
        return np.zeros(len(y))
    return np.interp(np.arange(len(y)), np.flatnonzero(ok), y[ok])


def _fixed(
    history: np.ndarray,
    quantile: float,
    horizon: int,
    periods: tuple[int, ...] | None,
    band: bool = True,
) -> ForecastResult:
    """The profile when periods are found, else the EWMA level."""
    y = interpolate_gaps(np.asarray(history, dtype=float))
    if periods is None:
        periods = detect_periods(y)
    if periods:
        return _profile_forecast(y, quantile, horizon, periods, band)
    present = int(np.count_nonzero(~np.isnan(y)))
    if present == 0:
        zeros = np.zeros(horizon)
        return ForecastResult(zeros, zeros, (), NONE, "no history: forecast 0")
    why = "no daily or weekly period" if present >= 2 * DAY else "under 2 days of history"
    return _ewma_forecast(y, quantile, horizon, f"{why}: recent level (EWMA) + quantile", band)


def _profile_forecast(
    y: np.ndarray, quantile: float, horizon: int, periods: tuple[int, ...], band: bool = True
) -> ForecastResult:
    period = max(periods)
    cycles = min(-(-len(y) // period), MAX_CYCLES * WEEK // period)
    # Rows are cycles aligned on the end of the history, so column j is phase j of the horizon.
    grid = np.full(cycles * period, np.nan)
    tail = y[-len(grid) :]
    grid[len(grid) - len(tail) :] = tail
    grid = grid.reshape(cycles, period)
    profile = _phase_medians(grid, len(y))
    if not np.isfinite(profile).all():  # a phase without data: the median of all
        profile = np.nan_to_num(profile, nan=float(np.nanmedian(y)))
    steps = np.arange(horizon)
    level = _weekday_level(y, profile, horizon) if period == DAY else np.ones(horizon)
    mean = np.clip(profile[steps % period], 0.0, None) * level
    upper = mean + _band(grid - profile, quantile)[(steps % DAY) // 60] * level if band else mean
    names = "+".join("1w" if p == WEEK else "1d" for p in periods)
    return ForecastResult(
        mean, upper, periods, PROFILE, f"periods {names}: seasonal-median profile"
    )


_pools: list[tuple[np.ndarray, int, np.ndarray]] = []  # (grid, history length, medians)
_pools_lock = threading.Lock()
POOLS_KEPT = 4  # a plan's final fit and its held-out windows' are separate chains


def _phase_medians(grid: np.ndarray, length: int) -> np.ndarray:
    """Per phase j of the cycles in `grid` (rows aligned on the end of a history of `length`
    minutes), the median of phases j - WINDOW .. j + WINDOW over every cycle, NaN ignored.

    An hourly plan's history is the last one's plus `s` new minutes: its grid is the last
    grid moved `s` cells on (checked: the same bits), so phase j pools what phase j + s
    pooled, except the phases within WINDOW of the `s` cells that came in (and the `s` that
    went out, in the same phases). Only those are computed again; the rest are taken over."""
    from tidal.autoscaler.predictive import series_kernels  # numba: loaded on first use

    period = grid.shape[1]
    grid.flags.writeable = False  # kept for the next call
    bits = grid.ravel().view(np.int64)
    with _pools_lock:
        kept = list(_pools)
    for old, old_length, medians in reversed(kept):
        shift = length - old_length
        if (
            old.shape == grid.shape
            and 0 < shift < period - 2 * WINDOW
            and np.array_equal(bits[: bits.size - shift], old.ravel().view(np.int64)[shift:])
        ):
            profile = np.empty(period)
            profile[WINDOW : period - shift - WINDOW] = medians[WINDOW + shift : period - WINDOW]
            redo = np.r_[0:WINDOW, period - shift - WINDOW : period]
            profile[redo] = series_kernels.pool_medians(grid, redo, WINDOW)
            break
    else:
        profile = series_kernels.pool_medians(grid, np.arange(period), WINDOW)
    profile.flags.writeable = False
    with _pools_lock:
        _pools.append((grid, length, profile))
        del _pools[:-POOLS_KEPT]
    return profile


def _band(residual: np.ndarray, quantile: float) -> np.ndarray:
    """Per hour of the day: a robust scale of that hour's residuals (MAD) times the q-quantile
    of all residuals in those units. Noise grows with load, but a burst that happened to fall
    in the same hour twice does not widen that hour alone."""
    by_hour = residual.reshape(-1, 24, 60).transpose(1, 0, 2).reshape(24, -1)
    centre = np.nan_to_num(nanmedian(by_hour, axis=1))[:, None]
    deviation = np.abs(by_hour - centre)
    scale = np.nan_to_num(1.4826 * nanmedian(deviation, axis=1))
    # Mostly-constant hours (MAD 0, e.g. idle with rare requests): the mean deviation.
    mean_deviation = np.nansum(deviation, axis=1) / np.maximum((~np.isnan(deviation)).sum(1), 1)
    scale = np.where(scale > 0, scale, mean_deviation)
    with np.errstate(all="ignore"):
        z = by_hour / np.where(scale > 0, scale, np.nan)[:, None]
    z = z[np.isfinite(z)]
    if z.size == 0:
        return np.zeros(24)
    return max(float(np.quantile(z, quantile)), 0.0) * scale


def _weekday_level(y: np.ndarray, profile: np.ndarray, horizon: int) -> np.ndarray:
    """Per horizon minute, the level of the same day last week relative to the daily profile
    (1 where last week is not in the history)."""
    level = np.ones(horizon)
    for start in range(0, horizon, DAY):
        begin = len(y) + start - WEEK
        if begin < 0:
            continue
        last_week = y[begin : begin + DAY]
        expected = profile[: len(last_week)]
        known = ~np.isnan(last_week)
        total = expected[known].sum()
        if known.sum() >= DAY // 2 and total > 0:
            level[start : start + DAY] = last_week[known].sum() / total
    return level


def _ewma_forecast(
    y: np.ndarray, quantile: float, horizon: int, reason: str, band: bool = True
) -> ForecastResult:
    from tidal.autoscaler.predictive import series_kernels  # numba: loaded on first use

    recent = y[~np.isnan(y)][-DAY:]
    half_life = min(HALF_LIFE, max(horizon / 4.0, 1.0))
    alpha = 1.0 - 0.5 ** (1.0 / half_life)
    errors, level = series_kernels.ewma_steps(recent, alpha)
    level = max(float(level), 0.0)
    width = max(float(np.quantile(errors, quantile)), 0.0) if band and len(recent) > 1 else 0.0
    mean = np.full(horizon, level)
    return ForecastResult(mean, mean + width, (), EWMA, reason)
