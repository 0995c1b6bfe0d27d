"""The forecast's fast paths against what they replace, bit for bit: the compiled medians
(`nanmedian` along either axis, `np.nanmedian` of a series, the seasonal profile's pooled
phases computed afresh or taken over from the previous hour's plan) and the trend fit with
its kept design matrix (`periods._trend`, np.polyfit)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from tidal.autoscaler.predictive import forecast, periods, series_kernels
from tidal.autoscaler.predictive.forecast import WINDOW, _phase_medians
from tidal.autoscaler.predictive.periods import DAY, WEEK, nanmedian


def _sorted_nanmedian(x, axis):
    """The median as the sorted slice's middle values (NaN sorts last)."""
    ordered = np.sort(np.moveaxis(np.asarray(x, dtype=float), axis, -1), axis=-1)
    present = np.count_nonzero(~np.isnan(ordered), axis=-1)
    low = np.take_along_axis(ordered, np.maximum((present - 1) // 2, 0)[..., None], -1)[..., 0]
    high = np.take_along_axis(ordered, (present // 2)[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore"):
        return np.where(present == 0, np.nan, (low + high) / 2)


def _sorted_pools(grid):
    """The profile's pooled phases as they were computed: every cycle's phases j - WINDOW ..
    j + WINDOW (around the ends) laid out as one row per phase, and sorted."""
    cycles = grid.shape[0]
    wrapped = np.concatenate((grid[:, -WINDOW:], grid, grid[:, :WINDOW]), axis=1)
    by_phase = np.ascontiguousarray(wrapped.T).ravel()
    pooled = sliding_window_view(by_phase, (2 * WINDOW + 1) * cycles)[::cycles]
    return _sorted_nanmedian(pooled, 1)


def _values(rng, shape, kind):
    if kind == "ordered":  # sorted, reversed, organ pipe, sawtooth: bad pivots for a quickselect
        n = int(np.prod(shape))
        ramp = np.arange(n, dtype=float)
        pattern = [ramp, ramp[::-1], np.minimum(ramp, ramp[::-1]), ramp % 17, -(ramp % 5)]
        return pattern[int(rng.integers(len(pattern)))].reshape(shape)
    if kind == "sparse":  # mostly zeros, a few levels: many ties
        x = np.where(rng.random(shape) < 0.85, 0.0, rng.integers(1, 4, shape) / 60.0)
    elif kind == "dense":
        x = rng.gamma(2.0, 3.0, shape)
    else:  # signed, with NaN
        x = rng.normal(size=shape)
        x[rng.random(shape) < rng.random()] = np.nan
    return x


@pytest.mark.parametrize("kind", ["sparse", "dense", "nan", "ordered"])
def test_nanmedian_equals_the_sorted_middle(kind):
    rng = np.random.default_rng(11)
    for _ in range(60):
        shape = (int(rng.integers(1, 30)), int(rng.integers(1, 700)))
        x = _values(rng, shape, kind)
        for axis in (0, 1):
            got, want = nanmedian(x, axis), _sorted_nanmedian(x, axis)
            assert got.tobytes() == want.tobytes()


def _grid(y, period):
    cycles = -(-len(y) // period)
    grid = np.full(cycles * period, np.nan)
    grid[len(grid) - len(y) :] = y
    return grid.reshape(cycles, period)


@pytest.mark.parametrize("kind", ["sparse", "dense", "nan"])
@pytest.mark.parametrize("period", [DAY, WEEK])
def test_phase_medians_taken_over_hour_by_hour_equal_fresh_ones(kind, period, monkeypatch):
    monkeypatch.setattr(forecast, "_pools", [])
    partial = []
    compute = series_kernels.pool_medians
    monkeypatch.setattr(
        series_kernels,
        "pool_medians",
        lambda grid, phases, w: (
            partial.append(len(phases) < grid.shape[1]) or compute(grid, phases, w)
        ),
    )
    rng = np.random.default_rng(period)
    history = _values(rng, 4 * period, kind)
    length = 2 * period - 200  # crosses into a third cycle (a row more: computed afresh)
    for _ in range(40):
        y = history[:length]
        got = _phase_medians(_grid(y, period), len(y))
        assert got.tobytes() == _sorted_pools(_grid(y, period)).tobytes(), length
        length += int(rng.choice([60, 60, 60, 1, 7, 2 * WINDOW + 3]))
    assert sum(partial) > 20 and not all(partial)


def test_a_history_that_changed_is_not_taken_over(monkeypatch):
    monkeypatch.setattr(forecast, "_pools", [])
    rng = np.random.default_rng(2)
    y = _values(rng, 2 * DAY + 300, "dense")
    _phase_medians(_grid(y[:-60], DAY), len(y) - 60)
    changed = y.copy()
    changed[DAY + 500] += 100.0  # a revised minute in the middle of the shared part
    got = _phase_medians(_grid(changed, DAY), len(changed))
    assert got.tobytes() == _sorted_pools(_grid(changed, DAY)).tobytes()
    # Unchanged, the same extension gives the fresh values too (taken over this time).
    got = _phase_medians(_grid(y, DAY), len(y))
    assert got.tobytes() == _sorted_pools(_grid(y, DAY)).tobytes()


@pytest.mark.parametrize("kind", ["sparse", "dense", "nan", "ordered"])
def test_median_is_numpys_nanmedian_to_the_bit(kind):
    rng = np.random.default_rng(3)
    for n in [*range(1, 40), 599, 600, 40_260]:
        x = _values(rng, n, kind)
        if kind == "sparse":
            x[rng.random(n) < 0.3] = -0.0  # signed zeros: numpy's mean adds them to 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice
            want = np.nanmedian(x)
        assert np.float64(series_kernels.median(x)).tobytes() == want.tobytes(), n


@pytest.mark.parametrize("missing", [False, True])
def test_trend_is_numpys_polyfit_to_the_bit(missing):
    rng = np.random.default_rng(4)
    for n in (2, 3, 2 * DAY, 2 * DAY + 1, 3 * DAY + 77, 40_260, 200_001):
        y = rng.gamma(0.3, 2.0, n) + np.linspace(0.0, rng.normal(), n)
        present = rng.random(n) > 0.1 if missing else np.ones(n, dtype=bool)
        for _ in range(2):  # afresh, then with the kept design matrix
            got = periods._trend(y, present)
            want = np.polyfit(np.arange(n)[present], y[present], 1)
            assert got.tobytes() == want.tobytes()


def test_ewma_steps_are_the_python_loops():
    rng = np.random.default_rng(6)
    for n in (1, 2, 17, 1440):
        values = rng.gamma(0.5, 3.0, n)
        for alpha in (1.0 - 0.5 ** (1.0 / 30.0), 1.0 - 0.5 ** (1.0 / 2.5)):
            level, steps = float(values[0]), []
            for value in values.tolist():
                steps.append(value - level)
                level += alpha * steps[-1]
            got_steps, got_level = series_kernels.ewma_steps(values, alpha)
            assert got_steps.tobytes() == np.array(steps).tobytes()
            assert got_level == level


def test_a_series_without_gaps_is_filled_with_itself():
    """`forecast.filled` returns a gap-free series as it is: what np.interp gives at its own
    points, to the bit (signed zeros included)."""
    rng = np.random.default_rng(8)
    y = _values(rng, 5000, "sparse")
    y[rng.random(5000) < 0.1] = -0.0
    y[-1] = -0.0
    want = np.interp(np.arange(len(y)), np.arange(len(y)), y)
    assert forecast.filled(y).tobytes() == want.tobytes()
    with_gaps = y.copy()
    with_gaps[[3, 4, 900]] = np.nan
    got = forecast.filled(with_gaps)
    assert not np.isnan(got).any() and got[5:900].tobytes() == y[5:900].tobytes()


def test_bin_means_of_a_series_without_gaps_are_the_nan_aware_ones():
    rng = np.random.default_rng(12)

    def nan_aware(y):
        bins = y[len(y) - len(y) // 10 * 10 :].reshape(-1, 10)
        counts = np.count_nonzero(~np.isnan(bins), axis=1)
        sums = np.nansum(bins, axis=1)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

    for n in (10, 95, 40_260):
        y = _values(rng, n, "dense")
        assert periods._bin_means(y, 10).tobytes() == nan_aware(y).tobytes()
        y[-10:] = np.nan  # and with gaps (a bin without data), the NaN-aware path
        y[0] = np.nan
        assert periods._bin_means(y, 10).tobytes() == nan_aware(y).tobytes()


def test_the_design_matrix_is_polyfits():
    for n in (2, 9, 1440, 40_321, 208_000):
        lhs = np.vander(np.arange(n) + 0.0, 2)
        scale = np.sqrt((lhs * lhs).sum(axis=0))
        lhs /= scale
        got_lhs, got_scale = periods._design(n)
        assert got_lhs.tobytes() == lhs.tobytes() and got_scale.tobytes() == scale.tobytes()
    assert periods._exact_design(208_000) and not periods._exact_design(400_000)


def test_a_spread_series_has_a_nonzero_deviation_and_a_flat_one_is_asked():
    rng = np.random.default_rng(13)
    for y in (
        rng.random(3 * DAY),
        np.r_[np.zeros(3 * DAY), 1e-90],
        np.r_[np.full(3 * DAY, 1e9), 1e9 + 1e4],
        np.r_[np.full(3 * DAY, np.nan), 1.0, 2.0],
    ):
        assert periods._spread(y) and np.nanstd(y) > 0
    for y in (np.full(3 * DAY, 0.1), np.r_[np.full(3 * DAY, 1e9), 1e9 + 1.0], np.zeros(5)):
        assert not periods._spread(y)  # left to np.nanstd
    assert periods.detect_periods(np.full(3 * DAY, 0.1)) == ()
