"""Planning time: a 1,440-minute plan from 14 days of per-minute history (bar: <= 1 s per
revision; planning runs in a thread executor off the event loop).

    python bench/plan.py [--runs 7] [--days 14]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tidal.autoscaler.predictive.plan import build_plan
from tidal.autoscaler.predictive.synthetic import synthetic_history

BAR_S = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    timestamps, values = synthetic_history(args.days, seed=0)
    start = float(timestamps[-1]) + 60.0
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        plan = build_plan(values, start, target_per_replica=10.0, quantile=0.95, lead_minutes=2)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(
        f"plan: {len(plan.replicas)} minutes from {args.days} days, method {plan.method}, "
        f"periods {plan.periods}: median {median * 1000:.1f} ms over {args.runs} runs "
        f"(bar <= {BAR_S * 1000:.0f} ms) {'PASS' if median <= BAR_S else 'FAIL'}"
    )
    return 0 if median <= BAR_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
