"""Hourly plans hold out days that earlier plans fitted on; forecast reuses those fits. A
reused fit must give exactly the forecast a fresh one does, and only on the same values."""

from __future__ import annotations

import numpy as np

import tidal.autoscaler.predictive.forecast as F
from tidal.autoscaler.predictive.periods import DAY
from tidal.autoscaler.predictive.synthetic import synthetic_history


def test_reused_fits_give_exactly_the_fresh_forecast(monkeypatch) -> None:
    _, y = synthetic_history(days=7, seed=3)
    changed = y.copy()
    changed[DAY : 2 * DAY] *= 2.0  # same lengths, other values: its fits must not be reused
    histories = [y[: 4 * DAY], y[: 5 * DAY], changed[: 6 * DAY], y[: 6 * DAY], y[: 6 * DAY - 60]]
    fits: list[str] = []
    real = F._by_method
    monkeypatch.setattr(
        F, "_by_method", lambda method, *rest: fits.append(method) or real(method, *rest)
    )

    F._memo.clear()
    reused = []
    for history in histories:
        mine = history.copy()
        reused.append(F.forecast(mine, 0.9))
        mine[:] = 0.0  # the caller's array changing later must not matter
    with_memo = len(fits)
    fresh = []
    for history in histories:
        F._memo.clear()
        fresh.append(F.forecast(history, 0.9))

    assert with_memo < len(fits) - with_memo  # fits were reused
    for a, b in zip(reused, fresh, strict=True):
        assert np.array_equal(a.mean, b.mean) and np.array_equal(a.upper, b.upper)
        assert (a.periods, a.method, a.reason) == (b.periods, b.method, b.reason)
    assert len(F._memo) <= F.MEMO_SIZE


def test_a_fit_without_its_band_has_the_full_forecasts_mean() -> None:
    """Held-out scoring reads only the mean, so it skips the band; the mean must not change."""
    _, daily = synthetic_history(days=9, seed=5)
    sparse = np.zeros(5 * DAY)
    sparse[np.random.default_rng(2).integers(0, len(sparse), 300)] = 0.4
    for y in (daily, daily[: DAY + 90], sparse, sparse[:600]):
        for periods in ((), (DAY,)):
            for method in (F.SEASONAL_NAIVE, F.PROFILE, F.EWMA):
                full = F._by_method(method, y, 0.9, DAY, periods)
                bare = F._by_method(method, y, 0.9, DAY, periods, False)
                assert np.array_equal(bare.mean, full.mean)
                assert np.array_equal(bare.upper, bare.mean)
                assert (bare.method, bare.periods) == (full.method, full.periods)
