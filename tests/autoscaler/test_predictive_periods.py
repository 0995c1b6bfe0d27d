"""Period detection: daily, weekly, none; robust to spikes and gaps."""

from __future__ import annotations

import warnings

import numpy as np

from tidal.autoscaler.predictive.periods import (
    DAY,
    WEEK,
    detect_periods,
    interpolate_gaps,
    nanmedian,
)
from tidal.autoscaler.predictive.synthetic import synthetic_history


def test_daily_found_weekly_needs_two_weeks():
    _, y = synthetic_history(6, seed=1)
    assert detect_periods(y) == (DAY,)
    _, y = synthetic_history(14, seed=1)
    assert detect_periods(y) == (DAY, WEEK)


def test_no_weekly_without_a_weekly_pattern():
    _, y = synthetic_history(14, seed=2, weekend_factor=1.0)
    assert detect_periods(y) == (DAY,)


def test_none_for_white_noise_trend_and_random_walk():
    rng = np.random.default_rng(3)
    n = 14 * DAY
    assert detect_periods(rng.normal(50, 5, n)) == ()
    assert detect_periods(np.linspace(0, 100, n) + rng.normal(0, 1, n)) == ()
    assert detect_periods(100 + np.cumsum(rng.normal(0, 1, n))) == ()


def test_robust_to_spikes_and_gaps():
    _, y = synthetic_history(4, seed=4)
    y[::997] = 1e6  # spikes
    y[1000:1100] = np.nan  # a long gap
    y[3000:3010] = np.nan  # a short one
    assert detect_periods(y) == (DAY,)


def test_short_flat_and_empty_give_none():
    assert detect_periods(np.ones(3 * DAY)) == ()
    assert detect_periods(np.zeros(3 * DAY)) == ()
    assert detect_periods(np.full(3 * DAY, np.nan)) == ()
    assert detect_periods(np.arange(10.0)) == ()


def test_interpolate_gaps_fills_only_short_inner_runs():
    y = np.array([np.nan, 1, np.nan, 3, *[np.nan] * 5, 9, np.nan])
    out = interpolate_gaps(y, max_gap=2)
    assert np.isnan(out[0]) and out[2] == 2 and np.isnan(out[4:9]).all() and np.isnan(out[-1])


def test_nanmedian_gives_numpys_values_and_nan_for_empty_slices() -> None:
    rng = np.random.default_rng(7)
    for _ in range(100):
        shape = (int(rng.integers(1, 8)), int(rng.integers(1, 40)))
        x = rng.normal(size=shape)
        x[rng.random(shape) < rng.random()] = np.nan
        for axis in (0, 1):
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                expected = np.nanmedian(x, axis=axis)
            assert np.array_equal(nanmedian(x, axis), expected, equal_nan=True)
