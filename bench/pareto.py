"""Predictive vs the KPA (and the baselines) on traces: cold starts against replica-seconds.

    python bench/pareto.py [TRACE ...] [--functions 4] [--warmup-days 2] [--sweep] [--only TEXT]
                           [--seeds 0,1,2] [--jobs N] [--cache FILE]

Each TRACE is any file `tidal simulate --trace` reads (an Azure Functions file yields
`--functions` single-function services, drawn seeded from its sparse, medium and dense ones).
Seeded synthetic traces are always added: sparse-bursty, timer (fixed period), dense-diurnal,
growing, one-off, and the simulator's own sparse generator (one service, and each service of a
4-service fleet), once per seed of `--seeds`. A trace with services is also scored per service
(its `--functions` busiest), each learning from its own history only. Every policy replays the
whole trace through the simulator's Python API; only what happens after the warm-up
(`--warmup-days`, at most a third of a short trace) is scored. The service is a GPU model
server: one request at a time per replica, start-up drawn from the Alibaba model-load times
(median 23 s, p90 42 s), pools of 2 reserved + 16 elastic GPUs.

Printed per trace: KPA and predictive (defaults) cold-start-affected requests, replica-seconds
and failed requests, the ratios, and the goals of docs/predictive.md:
  G1  predictive cold <= 0.5 x KPA's, replica-seconds <= 1.0 x KPA's, failed <= KPA's
  G2  (with --sweep) no point of a baseline's sweep (keepalive, hybrid-histogram, ray, hpa over
      their knobs in tidal/sim/sweep.py, defaults included) has both fewer cold starts and fewer
      replica-seconds than a point of predictive's frontier (its `tidal.dev/cold-start-cost`
      swept, default included); otherwise the column names the baseline points that do, each
      with its mean wait for a replica against the longest of the predictive points it beats
  best (with --sweep) the fewest cold starts on predictive's frontier at <= 1.0x the KPA's
      replica-seconds, as a ratio of the KPA's: the best G1 any price reaches on that trace;
      in brackets, the frontier's cold starts at exactly 1.0x (between two prices)
and last, the rows where predictive is worse than the KPA on any axis (more cold starts, more
replica-seconds or more failures): where it costs more than it saves.
With --sweep the replays run in `--jobs` worker processes; `--cache FILE` keeps the KPA's and the
baselines' scores (which do not depend on predictive's code) between runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.pools import parse_pools
from tidal.api.predictive import PredictiveAnnotations, parse_predictive_annotations
from tidal.autoscaler.kpa import decider_spec
from tidal.scheduler.placement import Demand
from tidal.sim.dists import default_service_time, parse_distribution
from tidal.sim.model import ServiceModel, simulate
from tidal.sim.runner import Job, Shared, run_jobs
from tidal.sim.sweep import default_settings, pareto, settings_for
from tidal.sim.traces import (
    SYNTHETIC_EPOCH,
    Trace,
    load_trace,
    sparse_trace,
    spread_counts,
    synthetic_trace,
)

DAY = 86_400.0
POOLS = [
    {"name": "reserved", "kind": "reserved", "capacity": {"nvidia.com/gpu": ["0", "1"]},
     "price": {"gpuSecond": 0.0008}},
    {"name": "elastic", "kind": "elastic", "startupDelay": "5s",
     "capacity": {"nvidia.com/gpu": [f"e{i}" for i in range(16)]},
     "price": {"gpuSecond": 0.0012}},
]  # fmt: skip
BASELINES = ("keepalive", "hybrid-histogram", "ray", "hpa")


# --- synthetic traces ----------------------------------------------------------------------------


def _trace(name: str, arrivals: np.ndarray, days: float) -> Trace:
    arrivals = np.sort(arrivals[(arrivals >= 0) & (arrivals < days * DAY)])
    return Trace(name, arrivals, days * DAY, SYNTHETIC_EPOCH)


def _diurnal(t: np.ndarray, night: float) -> np.ndarray:
    """1 at 14:00, `night` at 02:00."""
    return night + (1 - night) * (0.5 - 0.5 * np.cos(2 * np.pi * ((t % DAY) / DAY - 14 / 24 + 0.5)))


def _sessions(rng: np.random.Generator, days: float, per_hour, mean_len: float, gap_s: float):
    """Sessions starting as a non-homogeneous Poisson process (`per_hour(t)` peak rate), each
    a geometric number of requests with lognormal gaps (median `gap_s`)."""
    peak = float(per_hour(np.linspace(0, days * DAY, 10_000)).max()) / 3600.0
    starts, t = [], 0.0
    while t < days * DAY:
        t += rng.exponential(1 / peak)
        if rng.random() < per_hour(np.array([t]))[0] / 3600.0 / peak:
            starts.append(t)
    out = []
    for s in starts:
        n = rng.geometric(1 / mean_len)
        out.append(s + np.concatenate(([0.0], np.cumsum(rng.lognormal(np.log(gap_s), 0.8, n - 1)))))
    return np.concatenate(out) if out else np.zeros(0)


def sparse_bursty(seed: int, days: float = 6) -> Trace:
    rng = np.random.default_rng(seed)
    arr = _sessions(rng, days, lambda t: 4.0 * _diurnal(t, 0.1), 4.0, 50.0)
    return _trace("synthetic sparse-bursty", arr, days)


def timer(seed: int, days: float = 4) -> Trace:
    rng = np.random.default_rng(seed)
    ticks = np.arange(0, days * DAY, 600.0) + 7.0 + rng.normal(0, 1.0, int(days * DAY / 600))
    extra = rng.uniform(0, days * DAY, rng.poisson(days * 4))
    return _trace("synthetic timer-10min", np.concatenate((ticks, extra)), days)


def dense(seed: int, days: float = 3) -> Trace:
    t = synthetic_trace(days, 1.0, seed)
    return replace(t, name="synthetic dense-diurnal")


def growing(seed: int, days: float = 6) -> Trace:
    rng = np.random.default_rng(seed)
    arr = _sessions(rng, days, lambda t: (1 + 3 * t / (days * DAY)) * 2 * _diurnal(t, 0.2), 3, 40.0)
    return _trace("synthetic growing", arr, days)


def one_off(seed: int, days: float = 4) -> Trace:
    rng = np.random.default_rng(seed)
    quiet = rng.uniform(0, days * DAY, rng.poisson(days * 6))
    burst = 2.6 * DAY + rng.uniform(0, 600, 150)
    return _trace("synthetic one-off", np.concatenate((quiet, burst)), days)


def simulator_sparse(seed: int) -> list[Trace]:
    """The simulator's own sparse generator (`tidal simulate --trace synthetic --shape sparse`,
    bench/simulate_sparse.py): one service over 14 days, and each service of a 4-service fleet
    over 7 days."""
    one = replace(sparse_trace(days=14, seed=seed), name="sim sparse (1 service)")
    fleet = sparse_trace(days=7, mean_rps=0.05, seed=seed + 7, services=4)
    return [one, *per_service(fleet, 4, "sim sparse fleet")]


def per_service(trace: Trace, count: int, label: str) -> list[Trace]:
    """The `count` busiest services of a multi-service trace, each its own trace (each learns
    from its own history only)."""
    if not trace.services or trace.service_of is None:
        return []
    busiest = trace.busiest(count)
    out = []
    for k, name in enumerate(busiest.services):
        keep = busiest.service_of == k
        one = busiest._select(keep)
        out.append(replace(one, name=f"{label} {name}", services=(), service_of=None))
    return out


def azure_functions(path: Path, count: int, seed: int) -> list[Trace]:
    """`count` single functions of an Azure Functions 2019 file, spread over sparsity strata."""
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        first = header.index("minute_1")
        rows = [np.array(r[first:], dtype=np.int64) for r in reader if r]
    active = np.array([int((r > 0).sum()) for r in rows])
    strata = [(5, 30), (31, 200), (201, 1000), (1001, 1440)]
    rng = np.random.default_rng(seed)
    picked = []
    for k in range(count):
        lo, hi = strata[k % len(strata)]
        pool = np.flatnonzero((active >= lo) & (active <= hi))
        if pool.size:
            picked.append(int(rng.choice(pool)))
    traces = []
    for i in picked:
        counts = rows[i]
        arr = spread_counts(np.arange(len(counts)) * 60.0, counts, 60.0, np.random.default_rng(i))
        name = f"{path.stem} fn#{i} ({active[i]} active min)"
        traces.append(Trace(name, arr, len(counts) * 60.0, SYNTHETIC_EPOCH))
    return traces


# --- scoring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    cold: int
    replica_s: float
    failed: int
    cost: float
    wait: float  # mean wait for a replica (queueing and cold start) of the served, seconds


def service(settings: PredictiveAnnotations) -> ServiceModel:
    config = AutoscalerConfig()
    spec = decider_spec(config, parse_autoscaling_annotations({}, config), 1)
    return ServiceModel("svc", spec, 1, 300.0, Demand(gpus=1), settings)


def score(result, warmup_s: float) -> Score:
    after = result.arrivals >= warmup_s
    replica_s = float(result.replicas[int(warmup_s) :].sum())
    cost = sum(u.cost for u in result.usage.values())
    waits = result.wait()[after]
    waits = waits[~np.isnan(waits)]
    return Score(
        int(result.cold[after].sum()),
        replica_s,
        int((result.status[after] != 0).sum()),
        cost,
        float(waits.mean()) if len(waits) else 0.0,
    )


def service_times(trace: Trace, seed: int = 0) -> np.ndarray:
    dist = (
        default_service_time(trace)
        if trace.service_times is not None
        else parse_distribution("exp:3")
    )
    return dist.sample(len(trace), np.random.default_rng(seed), trace)


def run(trace: Trace, names, settings: PredictiveAnnotations, warmup_s: float) -> dict[str, Score]:
    pools = parse_pools(POOLS)
    times = (
        default_service_time(trace)
        if trace.service_times is not None
        else parse_distribution("exp:3")
    )
    results = simulate(
        trace, service(settings), tuple(names), pools, times, parse_distribution("alibaba-load")
    )
    return {name: score(r, warmup_s) for name, r in results.items()}


def sweep(
    trace: Trace, warmup_s: float, jobs: int | None, cache: dict[str, dict]
) -> dict[str, list[tuple[str, Score]]]:
    """Every sweep point of the KPA's default, predictive and the baselines, as (setting label,
    score) per policy, default first. Scores of policies other than predictive come from
    `cache` when there (keyed by trace and setting) and are added to it."""
    wanted: list[tuple[str, str, Job]] = []  # (policy, cache key, job)
    same: list[tuple[str, str]] = []  # (policy, label) of points that replay the default
    for policy in ("kpa", "predictive", *BASELINES):
        points = settings_for(policy)[:1] if policy == "kpa" else settings_for(policy)
        for point in points:
            if point.settings and default_settings(policy, point.settings):
                same.append((policy, point.label))
                continue
            settings = parse_predictive_annotations(point.annotations)
            job = Job(policy, point.label, [service(settings)], point.settings)
            key = "|".join(
                (trace.name, str(len(trace)), f"{trace.duration:.0f}", f"{warmup_s:.0f}", policy)
            )
            key += f"|{point.label}"
            wanted.append((policy, key, job))
    cached = {key for key, entry in cache.items() if "wait" in entry}  # older entries lack it
    todo = [job for policy, key, job in wanted if policy == "predictive" or key not in cached]
    shared = Shared(
        trace, parse_pools(POOLS), service_times(trace), parse_distribution("alibaba-load"), 0, {}
    )
    done = iter(run_jobs(shared, todo, jobs) if todo else [])
    out: dict[str, list[tuple[str, Score]]] = {}
    for policy, key, job in wanted:
        if policy == "predictive" or key not in cached:
            got = score(next(done), warmup_s)
            if policy != "predictive":
                cache[key] = got.__dict__
        else:
            got = Score(**cache[key])
        out.setdefault(policy, []).append((job.label, got))
    for policy, label in same:  # listed with the default's score, as `tidal simulate` does
        out[policy].append((label, out[policy][0][1]))
        order = [point.label for point in settings_for(policy)]
        out[policy].sort(key=lambda entry: order.index(entry[0]))
    return out


def frontier(points: list[tuple[str, Score]]) -> list[tuple[str, Score]]:
    """The points no other point beats on both cold starts and replica-seconds."""
    rows = [{"cold_start_requests": s.cold, "replica_seconds": s.replica_s} for _, s in points]
    return [p for p, keep in zip(points, pareto(rows, "replica_seconds"), strict=True) if keep]


def beaten_by(
    baselines: dict[str, list[tuple[str, Score]]], front: list[tuple[str, Score]]
) -> list[str]:
    """The baseline points that beat some point of predictive's frontier on both axes: fewer
    cold starts and fewer replica-seconds. A baseline point that is cheaper but colder, or
    warmer but dearer, than every frontier point is a different trade, not a win. Each comes
    with its mean wait for a replica and the longest of the frontier points it beats: one that
    waits longer than all of them wins the two axes by queueing requests longer."""
    out = []
    for policy, points in baselines.items():
        for label, b in points:
            beaten = [f for _, f in front if b.cold < f.cold and b.replica_s < f.replica_s]
            if beaten:
                wait = max(f.wait for f in beaten)
                out.append(f"{policy}:{label} (wait {b.wait:.2f}s vs {wait:.2f}s)")
    return out


def at_kpa_cost(points: list[tuple[str, Score]], kpa: Score) -> float | None:
    """The fewest cold starts predictive's frontier gets for the KPA's replica-seconds, on the
    lower convex hull of its frontier (running each of two prices part of the time gets about
    any mix of them); None when even its cheapest point costs more."""
    hull: list[tuple[float, float]] = []
    for x, y in sorted({(s.replica_s, float(s.cold)) for _, s in frontier(points)}):
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = hull[-2], hull[-1]
            if (x1 - x0) * (y - y0) - (y1 - y0) * (x - x0) > 0:  # hull[-1] lies above
                break
            hull.pop()
        hull.append((x, y))
    if not hull or kpa.replica_s < hull[0][0]:
        return None
    for (x0, y0), (x1, y1) in pairwise(hull):
        if x0 <= kpa.replica_s <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (kpa.replica_s - x0) / (x1 - x0)
    return hull[-1][1]  # the whole frontier costs less


def best_within(front: list[tuple[str, Score]], kpa: Score) -> tuple[str, Score] | None:
    """The frontier point with the fewest cold starts at <= 1.0x the KPA's replica-seconds."""
    fits = [(label, s) for label, s in front if s.replica_s <= kpa.replica_s]
    return min(fits, key=lambda p: (p[1].cold, p[1].replica_s)) if fits else None


def ratio(a: float, b: float) -> str:
    if b == 0:
        return "-" if a == 0 else "inf"
    return f"{a / b:.2f}"


def synthetic(seed: int) -> list[Trace]:
    traces = [
        sparse_bursty(seed),
        timer(seed),
        dense(seed),
        growing(seed),
        one_off(seed),
        *simulator_sparse(seed),
    ]
    return [replace(t, name=f"{t.name} s{seed}") for t in traces] if seed else traces


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("traces", nargs="*", type=Path)
    parser.add_argument("--functions", type=int, default=4, help="single functions per Azure file")
    parser.add_argument("--warmup-days", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0, help="for the traces given and Azure picks")
    parser.add_argument("--seeds", default="0", help="seeds of the synthetic traces, e.g. 0,1,2")
    parser.add_argument("--sweep", action="store_true", help="frontiers and baselines (G2)")
    parser.add_argument("--jobs", type=int, help="worker processes for --sweep (default: CPUs)")
    parser.add_argument("--cache", type=Path, help="JSON file of KPA and baseline scores")
    parser.add_argument("--only", help="run only traces whose name contains this")
    parser.add_argument("--no-synthetic", action="store_true", help="only the given traces")
    args = parser.parse_args()

    traces = []
    if not args.no_synthetic:
        for seed in (int(x) for x in args.seeds.split(",")):
            traces.extend(synthetic(seed))
    for path in args.traces:
        if not path.exists():
            print(f"skipped {path}: not found")
            continue
        if path.name.endswith("_inv.csv"):  # unrelated functions: scored one by one
            traces.extend(azure_functions(path, args.functions, args.seed))
            continue
        trace = load_trace(path, args.seed)
        traces.append(replace(trace, name=path.name, services=(), service_of=None))
        traces.extend(per_service(trace, args.functions, path.name))
    if args.only:
        traces = [t for t in traces if args.only in t.name]
    cache = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}

    header = (
        f"{'trace':44} {'req':>7} {'KPA cold':>8} {'pred cold':>9} {'ratio':>6} "
        f"{'KPA replica-s':>13} {'pred replica-s':>14} {'ratio':>6} {'fail K/P':>9} "
        f"{'cost ratio':>10}  G1  " + (f"{'best':24} G2" if args.sweep else "")
    )
    print(header)
    met = {"G1": 0, "G2": 0}
    worse: list[str] = []  # rows where predictive spends more than the KPA on some axis
    for trace in traces:
        began = time.perf_counter()
        warmup = min(args.warmup_days * DAY, trace.duration / 3)
        if args.sweep:
            points = sweep(trace, warmup, args.jobs, cache)
            if args.cache:
                args.cache.write_text(json.dumps(cache, indent=0, sort_keys=True))
            kpa, pred = points["kpa"][0][1], points["predictive"][0][1]
        else:
            scores = run(trace, ["kpa", "predictive"], PredictiveAnnotations(), warmup)
            kpa, pred = scores["kpa"], scores["predictive"]
        g1 = (
            (pred.cold <= 0.5 * kpa.cold if kpa.cold else pred.cold == 0)
            and pred.replica_s <= kpa.replica_s
            and pred.failed <= kpa.failed
        )
        extra = ""
        if args.sweep:
            front = frontier(points["predictive"])
            beaten = beaten_by({b: points[b] for b in BASELINES}, front)
            best = best_within(front, kpa)
            best_text = "-" if best is None else f"{ratio(best[1].cold, kpa.cold)}@{best[0]}"
            mixed = at_kpa_cost(points["predictive"], kpa)
            best_text += "" if mixed is None else f" ({ratio(mixed, kpa.cold)} at 1.0x)"
            extra = f"{best_text:24} " + (
                "G2 holds" if not beaten else "dominated by: " + ", ".join(beaten)
            )
            met["G2"] += not beaten
        met["G1"] += g1
        if pred.replica_s > kpa.replica_s or pred.cold > kpa.cold or pred.failed > kpa.failed:
            worse.append(
                f"{trace.name} (cold-start req {pred.cold}/{kpa.cold}, replica-s "
                f"{pred.replica_s / kpa.replica_s:.4f}x, failed {pred.failed}/{kpa.failed}; "
                "predictive/KPA)"
            )
        print(
            f"{trace.name[:44]:44} {len(trace):>7} {kpa.cold:>8} {pred.cold:>9} "
            f"{ratio(pred.cold, kpa.cold):>6} {kpa.replica_s:>13,.0f} {pred.replica_s:>14,.0f} "
            f"{ratio(pred.replica_s, kpa.replica_s):>6} {kpa.failed:>4}/{pred.failed:<4} "
            f"{ratio(pred.cost, kpa.cost):>10}  {'yes' if g1 else 'no':3} {extra}"
            f"   ({time.perf_counter() - began:.0f}s)",
            flush=True,
        )
        if args.sweep:
            for policy in ("predictive", *BASELINES):
                row = "  ".join(
                    f"{label.split('=')[-1]}:{s.cold}/{s.replica_s:,.0f}"
                    for label, s in points[policy]
                )
                print(f"    {policy:17} {row}")
    print(
        f"G1 met on {met['G1']}/{len(traces)} traces"
        + (f", G2 on {met['G2']}/{len(traces)}" if args.sweep else "")
        + f"; scored after min({args.warmup_days:g} d, a third of the trace)"
    )
    print(f"worse than the KPA on an axis: {len(worse)}/{len(traces)}", *worse, sep="\n  ")
    return 0 if met["G1"] == len(traces) else 1


if __name__ == "__main__":
    raise SystemExit(main())
