"""Robust decomposition forecast with a quantile band (research/predictive.md §1.4 steps 3-4).

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

Without periods, or with too little history: the recent level (EWMA, half-life 30 min) plus
the q-quantile of its one-step errors over the last day, flat over the horizon (§1.4 step 4:
"fall back to EWMA plus residual quantile and let the reactive path dominate").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tidal.autoscaler.predictive.periods import (
    DAY,
    WEEK,
    detect_periods,
    interpolate_gaps,
    nanmedian,
)

WINDOW = 10  # minutes either side pooled into a phase's median
MAX_CYCLES = 4  # weeks (or 28 days) of history used at most
HALF_LIFE = 30.0  # minutes, fallback EWMA
PROFILE = "seasonal-median"
EWMA = "ewma"
NONE = "none"


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
    """Forecast `horizon` minutes after a per-minute `history` (NaN = no data). `periods` are
    detected when not given."""
    y = interpolate_gaps(np.asarray(history, dtype=float))
    if periods is None:
        periods = detect_periods(y)
    if periods:
        return _profile_forecast(y, quantile, horizon, periods)
    present = int(np.count_nonzero(~np.isnan(y)))
    if present == 0:
        zeros = np.zeros(horizon)
        return ForecastResult(zeros, zeros, (), NONE, "no history: forecast 0")
    why = "no daily or weekly period" if present >= 2 * DAY else "under 2 days of history"
    return _ewma_forecast(y, quantile, horizon, f"{why}: recent level (EWMA) + quantile")


def _profile_forecast(
    y: np.ndarray, quantile: float, horizon: int, periods: tuple[int, ...]
) -> ForecastResult:
    period = max(periods)
    cycles = min(-(-len(y) // period), MAX_CYCLES * WEEK // period)
    # Rows are cycles aligned on the end of the history, so column j is phase j of the horizon.
    grid = np.full(cycles * period, np.nan)
    tail = y[-len(grid) :]
    grid[len(grid) - len(tail) :] = tail
    grid = grid.reshape(cycles, period)
    wrapped = np.concatenate((grid[:, -WINDOW:], grid, grid[:, :WINDOW]), axis=1)
    pooled = sliding_window_view(wrapped, 2 * WINDOW + 1, axis=1)  # (cycles, period, window)
    pooled = pooled.transpose(1, 0, 2).reshape(period, -1)
    profile = nanmedian(pooled, axis=1)
    profile = np.nan_to_num(profile, nan=float(np.nanmedian(y)))
    band = _band(grid - profile, quantile)
    steps = np.arange(horizon)
    level = _weekday_level(y, profile, horizon) if period == DAY else np.ones(horizon)
    mean = np.clip(profile[steps % period], 0.0, None) * level
    upper = mean + band[(steps % DAY) // 60] * level
    names = "+".join("1w" if p == WEEK else "1d" for p in periods)
    return ForecastResult(
        mean, upper, periods, PROFILE, f"periods {names}: seasonal-median profile"
    )


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


def _ewma_forecast(y: np.ndarray, quantile: float, horizon: int, reason: str) -> ForecastResult:
    recent = y[~np.isnan(y)][-DAY:]
    alpha = 1.0 - 0.5 ** (1.0 / HALF_LIFE)
    level = recent[0]
    errors = np.empty(len(recent))
    for i, value in enumerate(recent):
        errors[i] = value - level
        level += alpha * (value - level)
    level = max(float(level), 0.0)
    band = max(float(np.quantile(errors, quantile)), 0.0) if len(recent) > 1 else 0.0
    mean = np.full(horizon, level)
    return ForecastResult(mean, mean + band, (), EWMA, reason)
