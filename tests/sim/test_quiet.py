"""The predictive skip's next plan change (steps computed once per plan) against a scan of
the counts from the current minute."""

from __future__ import annotations

import math

import numpy as np

from tidal.sim.quiet import _next_plan_change


def scanned(plan, epoch: float) -> float:
    index = math.floor((epoch - plan.start) / 60.0)
    if index < 0:
        return plan.start
    change = math.inf
    for counts in (plan.replicas, plan.cautious):
        if counts is None or index >= len(counts):
            continue
        differ = np.flatnonzero(counts[index:] != counts[index])
        upto = index + int(differ[0]) if differ.size else len(counts)
        change = min(change, plan.start + upto * 60.0)
    return change


class FakePlan:
    def __init__(self, start: float, replicas: np.ndarray, cautious: np.ndarray | None) -> None:
        self.start, self.replicas, self.cautious = start, replicas, cautious


def test_next_plan_change_matches_a_scan_of_the_counts() -> None:
    """Plans asked about in turn, as a fleet's services ask about theirs; plans dropped and
    new ones made (an id may be reused)."""
    rng = np.random.default_rng(7)
    plans = []
    for case in range(200):
        runs = int(rng.integers(0, 40))
        replicas, cautious = (
            np.repeat(rng.integers(0, 3, runs), rng.integers(1, 6, runs)).astype(np.int64)
            for _ in range(2)
        )
        plans.append(FakePlan(60_000.0, replicas, None if case % 4 == 0 else cautious))
        if len(plans) > 5:
            del plans[int(rng.integers(0, len(plans)))]
        for epoch in rng.uniform(59_000.0, 80_000.0, 25):
            plan = plans[int(rng.integers(0, len(plans)))]
            assert _next_plan_change(plan, float(epoch)) == scanned(plan, float(epoch))
