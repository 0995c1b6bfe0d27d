"""Benchmark: a seeded sparse, bursty 28-day trace of one GPU service (about 30,000 requests in
clusters, idle gaps of minutes to hours, daily and weekly rhythm), all 7 policies in parallel
worker processes, as `tidal simulate --trace synthetic --shape sparse` runs it; bar <= 30 s.

    python bench/simulate_sparse.py [--days 28] [--jobs N]
"""

from __future__ import annotations

import argparse

import numpy as np
from simulate_common import timed_run, usable_cpus, verdict

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.pools import parse_pools
from tidal.autoscaler.kpa import decider_spec
from tidal.scheduler.placement import Demand
from tidal.sim import POLICIES, ServiceModel
from tidal.sim.dists import parse_distribution
from tidal.sim.runner import Job, Shared
from tidal.sim.traces import sparse_trace

BAR_S = 30.0
POOLS = [
    {"name": "reserved", "capacity": {"nvidia.com/gpu": [0, 1]}, "price": {"gpuSecond": 0.0008}},
    {
        "name": "elastic",
        "startupDelay": "30s",
        "capacity": {"nvidia.com/gpu": [f"e{k}" for k in range(8)]},
        "price": {"gpuSecond": 0.0012},
    },
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=28.0)
    parser.add_argument("--jobs", type=int, help="worker processes (default: CPUs)")
    args = parser.parse_args()
    config = AutoscalerConfig()
    spec = decider_spec(config, parse_autoscaling_annotations({}, config), 1)
    service = ServiceModel("gpu", spec, 1, demand=Demand(gpus=1))
    trace = sparse_trace(days=args.days, seed=0)
    times = parse_distribution("azure-functions").sample(len(trace), np.random.default_rng(0))
    shared = Shared(trace, parse_pools(POOLS), times, parse_distribution("alibaba-load"), 0, {})
    jobs = [Job(policy, "default", [service], {}) for policy in POLICIES]
    results, wall, cpu = timed_run(shared, jobs, args.jobs)
    print(f"trace           {trace.name}: {len(trace):,} requests over {args.days:g} days")
    for result in results:
        cold = int(result.cold.sum())
        print(f"  {result.policy:17} cold-start req {cold:6,}  cold starts {result.cold_starts:5,}")
    raise SystemExit(verdict(wall, cpu, BAR_S, min(len(jobs), args.jobs or usable_cpus())))


if __name__ == "__main__":
    main()
