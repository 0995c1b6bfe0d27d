"""The compiled warm-model kernels against the NumPy code they replace, bit for bit: NumPy's
pairwise `sum`, and the hazard/survival of a fit (`warm._hazard`)."""

from __future__ import annotations

import numpy as np
import pytest

from tidal.autoscaler.predictive import warm, warm_kernels
from tidal.autoscaler.predictive.warm import OTHER_SLICE_WEIGHT, SLICES


def _numpy_hazard(bins, own, recency, steps):
    """`warm._hazard` as it was written in NumPy (the reference the kernel must equal)."""
    weights = np.where(own[None, :] == np.arange(SLICES)[:, None], 1.0, OTHER_SLICE_WEIGHT)
    weights = weights * recency[None, :]
    mass = np.zeros((SLICES, steps + 1))
    for s in range(SLICES):
        mass[s] = np.bincount(bins, weights=weights[s], minlength=steps + 1)
    total = mass.sum(axis=1)
    n_eff = total**2 / np.maximum((weights**2).sum(axis=1), 1e-300)
    mass[:, steps] += total / np.maximum(n_eff, 1.0)
    mass = _numpy_smooth(mass / mass.sum(axis=1, keepdims=True))
    survival = np.concatenate((np.ones((SLICES, 1)), 1.0 - np.cumsum(mass, axis=1)), axis=1)
    survival = np.clip(survival, 0.0, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        hazard = np.where(survival[:, :-1] > 1e-12, mass / survival[:, :-1], 0.0)
    return np.clip(hazard[:, :steps], 0.0, 1.0), survival


def _numpy_smooth(mass):
    body = mass[:, :-1]
    steps = body.shape[1]
    k = np.arange(steps)
    width = np.maximum(1, k // 32)
    lo, hi = np.clip(k - width, 0, steps), np.clip(k + width + 1, 0, steps)
    total = np.concatenate((np.zeros((mass.shape[0], 1)), np.cumsum(body, axis=1)), axis=1)
    smooth = (total[:, hi] - total[:, lo]) / (hi - lo)
    smooth *= body.sum(axis=1, keepdims=True) / np.maximum(
        smooth.sum(axis=1, keepdims=True), 1e-300
    )
    return np.concatenate((smooth, mass[:, -1:]), axis=1)


def test_pairwise_sum_is_numpys_sum_bit_for_bit():
    rng = np.random.default_rng(5)
    lengths = [*range(0, 300), 481, 482, 1000, 1023, 1024, 1031, 4999, 5000, 12_345]
    for n in lengths:
        for scale in (1.0, 1e-9, 1e12):
            a = rng.standard_exponential(n + 3) * scale * rng.choice([1.0, -1.0], n + 3)
            for begin in (0, 3):
                got = warm_kernels.pairwise_sum(a, begin, n)
                want = a[begin : begin + n].sum()
                assert np.float64(got).tobytes() == want.tobytes(), (n, scale, begin)
    # Rows of a 2-D array and a sliced view, summed along the rows, as `_hazard` does.
    mass = rng.random((6, 482))
    for s in range(6):
        assert warm_kernels.pairwise_sum(mass[s], 0, 481) == mass[:, :-1].sum(axis=1)[s]


@pytest.mark.parametrize("seed", range(6))
def test_hazard_kernel_equals_the_numpy_expression(seed):
    rng = np.random.default_rng(seed)
    steps = int(warm.HORIZON_S // warm.STEP_S)
    n = int(rng.choice([30, 31, 200, 1999, 5000]))
    kind = seed % 3
    if kind == 0:  # bursty: many short gaps, a few long
        lengths = rng.pareto(1.2, n) * 30.0 + 2.0
    elif kind == 1:  # a timer: every gap about the same length
        lengths = rng.normal(600.0, 5.0, n)
    else:  # memoryless, some beyond the horizon
        lengths = rng.exponential(2400.0, n)
    begins = np.cumsum(lengths + 1.0) + rng.random() * 86_400.0
    bins = np.minimum((lengths // warm.STEP_S).astype(np.int64), steps)
    own = ((begins % 86_400.0) // (86_400.0 / SLICES)).astype(np.int64)
    if seed == 5:
        own[:] = 2  # slices without a gap of their own
    recency = 0.5 ** (np.clip(begins[-1] - begins, 0, None) / warm.HALF_LIFE_S)
    hazard, survival = warm._hazard(bins, own, recency, steps)
    want_hazard, want_survival = _numpy_hazard(bins, own, recency, steps)
    assert hazard.tobytes() == want_hazard.tobytes()
    assert survival.tobytes() == want_survival.tobytes()
