"""The predictive policy's fast paths against plain transcriptions of what they replace: the
stabilization window (max over every recommendation in it, and the latest moment that max was
recommended, which the replay's quiet check reads), the cached mode and reason, and the warm
model's path evaluation (`_per_bin`) against a step-by-step walk of each row's tables, and the
gap arrays a fit reuses from the previous one."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from tidal.api.predictive import PredictiveAnnotations
from tidal.autoscaler.predictive import warm
from tidal.autoscaler.predictive.policy import PredictivePolicy
from tidal.autoscaler.predictive.warm import STEP_S, WarmModel, _per_bin


def test_the_stabilization_window_gives_the_max_of_every_recommendation_in_it():
    rng = np.random.default_rng(3)
    settings = PredictiveAnnotations(mode="proactive", stabilization_window=30.0)
    policy = PredictivePolicy(settings)
    seen: list[tuple[float, int]] = []
    now = 0.0
    for _ in range(3000):
        now += float(rng.choice([0.5, 1.0, 1.0, 2.0, 7.0, 40.0]))
        proactive = int(rng.choice([0, 1, 1, 2, 3, 5]))
        got = policy._stabilize(now, proactive)
        seen.append((now, proactive))
        inside = [(t, p) for t, p in seen if t >= now - settings.stabilization_window]
        top = max(p for _, p in inside)
        assert got == top
        # What tidal/sim/quiet.py reads: the max, the latest moment it was recommended,
        # and the newest recommendation.
        window = policy._window
        latest = max(t for t, p in inside if p == top)
        held = [(t, p) for t, p in window if p == top]
        assert held == [(latest, top)] and window[-1] == (now, proactive)
        assert max(p for _, p in window) == top


def test_the_mode_and_its_reason_follow_a_new_plan_or_warm_model():
    policy = PredictivePolicy(PredictiveAnnotations())
    first = policy.decide(0.0, 1, 1)
    assert first.mode_used == "observer" and "0 idle gaps seen" in first.reason
    policy.set_warm(None, gaps_seen=12)
    assert "12 idle gaps seen" in policy.decide(1.0, 1, 1).reason
    steps = 8
    model = WarmModel(
        hold=np.zeros((6, steps), dtype=bool),
        start=np.zeros((6, steps), dtype=bool),
        price=10.0,
        auto_price=True,
        ready_s=30.0,
        gaps=40,
        kpa_tail_s=90.0,
        expected_cost_ratio=0.5,
        expected_cold_ratio=0.5,
        useful=True,
        survival=np.ones((6, steps + 1)),
    )
    policy.set_warm(model)
    assert policy.decide(2.0, 1, 1).mode_used == "auto"


def walk(hold: np.ndarray, start: np.ndarray, m: int, ready_s: float):
    """Per row and step (`steps`: beyond), as a gap that began warm reaches it: replica time
    paid in the step, what an arrival in it then costs, and whether that arrival is cold."""
    rows, steps = hold.shape
    paid = np.zeros((rows, steps + 1))
    extra = np.zeros((rows, steps + 1))
    cold = np.zeros((rows, steps + 1), dtype=bool)
    for t in range(rows):
        state = 1  # 0 cold, 1 warm, j >= 2: starting, j - 1 steps until ready
        for k in range(steps + 1):  # what an arrival in step k meets, then the step passes
            if k == steps:  # beyond the horizon: warm, starting (no wait counted) or cold
                paid[t, k] = STEP_S if state == 1 else 0.0
                extra[t, k] = 0.0 if state >= 1 else ready_s
                cold[t, k] = state != 1
            elif state == 1:
                warm = bool(hold[t, k])
                paid[t, k] = STEP_S if warm else 0.0
                extra[t, k] = 0.0 if warm else ready_s
                cold[t, k] = not warm
                state = 1 if warm else 0
            elif state == 0:
                go = bool(start[t, k])
                paid[t, k] = STEP_S if go else 0.0
                extra[t, k] = STEP_S * (m - 1) if go else ready_s
                cold[t, k] = True
                state = m if go else 0
            else:
                paid[t, k] = STEP_S
                extra[t, k] = STEP_S * (state - 2)
                cold[t, k] = True
                state -= 1
    return paid, extra, cold


@pytest.mark.parametrize("ready_s", [10.0, 15.0, 40.0, 100.0])
def test_per_bin_costs_match_a_step_by_step_walk(ready_s):
    rng = np.random.default_rng(int(ready_s))
    m = max(1, math.ceil(ready_s / STEP_S))
    rows, steps = 40, 50
    hold = rng.random((rows, steps)) < rng.uniform(0.2, 0.95, (rows, 1))
    start = rng.random((rows, steps)) < rng.uniform(0.0, 0.4, (rows, 1))
    hold[0], start[0] = True, False  # never released: warm beyond the horizon
    hold[1], start[1] = False, False  # released at once, never started again
    hold[2, -3:], start[2] = False, True  # started at the horizon: still starting beyond
    # Laid out as (prices, slices, steps): 8 prices of 5 slices.
    cost, cold = _per_bin(hold.reshape(8, 5, steps), start.reshape(8, 5, steps), ready_s, steps)
    paid, extra, ref_cold = walk(hold, start, m, ready_s)
    spent = np.concatenate((np.zeros((rows, 1)), np.cumsum(paid[:, :-1], axis=1)), axis=1)
    assert cost.shape == cold.shape == (8, 5, steps + 1)
    assert np.array_equal(cost.reshape(rows, -1), spent + extra)
    assert np.array_equal(cold.reshape(rows, -1), ref_cold.astype(float))


def test_gap_columns_reuse_only_the_very_gap_objects_read_last_time():
    def plain(gaps):
        starts, lengths = [g.start for g in gaps], [g.length for g in gaps]
        bins = [min(int(g.length // warm.STEP_S), warm.STEPS) for g in gaps]
        own = [int(g.start % 86_400.0 // (86_400.0 / warm.SLICES)) for g in gaps]
        counts = [g.kpa_replicas for g in gaps], [g.hold_replicas for g in gaps]
        return starts, lengths, bins, own, *counts

    def check(gaps):
        columns = warm._columns(gaps)
        assert [column.tolist() for column in columns] == list(plain(gaps))

    gaps = [warm.Gap(3600.0 * i, 10.0 + 500.0 * i, 1 + i % 3, 1 + i % 2) for i in range(50)]
    check(gaps[:30])
    check(gaps[:40])  # grown: the first 30 from before
    check(gaps[5:45])  # shifted and grown
    check(gaps[5:45])  # the same again
    # Equal values in new objects are read anew, as is a list whose middle was replaced.
    copies = [warm.Gap(g.start, g.length, g.kpa_replicas, g.hold_replicas) for g in gaps[5:45]]
    check(copies)
    changed = list(copies)
    changed[10] = warm.Gap(-1.0, 99.0)
    check(changed)
    check([])
    check(gaps[:1])
    # What is reused: the overlap of the very objects, found by identity.
    assert warm._shift(gaps[:30], gaps[:40]) == 0
    assert warm._shift(gaps[:40], gaps[5:45]) == 5
    assert warm._shift(gaps[5:45], copies) is None
    assert warm._shift(copies, changed) is None
    assert warm._shift(gaps[:40], gaps[45:]) is None
    assert warm._shift(gaps[:40], gaps[5:45], reach=5) is None  # searched no further


SOLVE_DIGEST = """
import hashlib
import numpy as np
from tidal.autoscaler.predictive import warm
hazard = np.random.default_rng(5).uniform(0, 0.05, (warm.SLICES, 480))
hold, start = warm._solve(hazard, warm.PRICES, 40.0)
print(hashlib.sha256(hold.tobytes() + start.tobytes()).hexdigest())
"""


def test_the_compiled_solver_works_where_numba_can_cache_nothing():
    """tidal's image runs on a read-only file system as a user without a home, where numba
    rejects `cache=True`; a fit must then compile without a cache, to the same tables."""
    digests = []
    for locators in (None, "ZipCacheLocator"):  # ZipCacheLocator: no usable place here
        env = dict(os.environ)
        if locators:
            env["NUMBA_CACHE_LOCATOR_CLASSES"] = locators
        done = subprocess.run(
            [sys.executable, "-c", SOLVE_DIGEST], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        digests.append(done.stdout.strip())
    assert digests[0] == digests[1] and len(digests[0]) == 64


@pytest.mark.parametrize("count", [200, 5200])
def test_a_fit_with_short_pauses_among_its_gaps_equals_one_without_them(count):
    """Pauses under MIN_GAP_S are left out of a fit (and the newest MAX_GAPS of the rest
    kept) whether its gap columns come from the last fit's or are read afresh."""
    rng = np.random.default_rng(count)
    starts = np.cumsum(rng.exponential(900.0, count))
    lengths = np.where(rng.random(count) < 0.2, 1.0, rng.exponential(600.0, count) + 2.0)
    gaps = [warm.Gap(float(s), float(g)) for s, g in zip(starts, lengths, strict=True)]
    kept = [g for g in gaps if g.length >= warm.MIN_GAP_S]
    now = float(starts[-1] + 3600.0)
    for a, b in ((gaps, kept), (kept, gaps), (gaps[:-5], gaps)):
        warm._read = ([], warm._read[1])
        assert warm.fit(a, 40.0, 90.0, now) is not None
        got = warm.fit(b, 40.0, 90.0, now)  # reads the columns of `a` where the same
        warm._read = ([], warm._read[1])
        want = warm.fit(b, 40.0, 90.0, now)  # all read afresh
        assert got.hold.tobytes() == want.hold.tobytes()
        assert got.survival.tobytes() == want.survival.tobytes()
        assert (got.price, got.gaps, got.useful) == (want.price, want.gaps, want.useful)
    assert warm.fit(gaps, 40.0, 90.0, now).gaps == min(len(kept), warm.MAX_GAPS)


def test_next_change_from_the_kept_flip_tables_equals_a_scan_of_the_row():
    """`WarmModel.next_change` reads the step where the row next differs from tables built
    on the first ask; against a scan of the row (what it did before)."""
    rng = np.random.default_rng(9)
    steps = 480
    for trial in range(20):
        p = rng.uniform(0.001, 0.3)
        hold = np.cumsum(rng.random((6, steps)) < p, axis=1) % 2 == 0
        start = rng.random((6, steps)) < (0.0 if trial % 5 == 0 else p)
        model = WarmModel(
            hold, start, 10.0, True, 30.0, 40, 90.0, 0.5, 0.5, True, np.ones((6, steps + 1))
        )
        idle = float(rng.uniform(0, 86_400.0 * 3))
        for now in idle + rng.uniform(0, warm.HORIZON_S + 100.0, 60):
            for is_warm in (True, False):
                got = model.next_change(idle, float(now), is_warm)
                want = None
                if now - idle < warm.HORIZON_S:
                    s, k = warm.slice_of(idle), model._step(float(now) - idle)
                    row = (hold if is_warm else start)[s]
                    flips = np.flatnonzero(row[k:] != row[k])
                    if flips.size:
                        want = idle + (k + int(flips[0])) * STEP_S
                    elif row[k]:
                        want = idle + warm.HORIZON_S
                assert got == want
