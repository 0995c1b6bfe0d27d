"""Benchmark: the Azure Functions 2019 day (1,350 functions, about 927,000 invocations), one
service per function sharing the pools of examples/simulate/tidal.yaml, all 7 policies in
parallel worker processes, as `tidal simulate --per-service` runs it; bar <= 60 s.

    python bench/simulate_fleet.py PATH/1350_inv.csv [--jobs N] [--hours H] [--policies P,...]

`--hours` replays only the first H hours and `--policies` only some policies (to measure one
policy's CPU time, or a slice of the day); the bar is for the default, the whole day and all 7.

The trace is not part of the repository: give its path (or set TIDAL_AZURE_FUNCTIONS_TRACE);
without one the benchmark says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from simulate_common import REPO, timed_run, usable_cpus, verdict

from tidal.sim import POLICIES
from tidal.sim.cli import load_platform, load_service
from tidal.sim.dists import parse_distribution
from tidal.sim.runner import Job, Shared
from tidal.sim.traces import load_trace

BAR_S = 60.0
ENV = "TIDAL_AZURE_FUNCTIONS_TRACE"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", nargs="?", default=os.environ.get(ENV))
    parser.add_argument("--jobs", type=int, help="worker processes (default: CPUs)")
    parser.add_argument("--hours", type=float, help="replay only the first H hours")
    parser.add_argument("--policies", help="comma-separated policies (default: all 7)")
    args = parser.parse_args()
    policies = POLICIES if not args.policies else tuple(args.policies.split(","))
    unknown = set(policies) - set(POLICIES)
    if unknown:
        parser.error(
            f"unknown policies {', '.join(sorted(unknown))} (known: {', '.join(POLICIES)})"
        )
    if not args.trace or not Path(args.trace).exists():
        print(f"skipped: no Azure Functions trace (give its path or set {ENV})")
        return
    config, pools = load_platform(str(REPO / "examples/simulate/tidal.yaml"))
    template = load_service(str(REPO / "examples/simulate/service.yaml"), config)
    trace = load_trace(args.trace)
    if args.hours is not None:
        trace = trace.head(args.hours * 3600.0)
    services = [replace(template, name=name) for name in trace.services]
    dist = parse_distribution("azure-functions")
    import numpy as np

    times = dist.sample(len(trace), np.random.default_rng(0), trace)
    shared = Shared(trace, pools, times, parse_distribution("alibaba-load"), 0, {})
    jobs = [Job(policy, "default", services, {}) for policy in policies]
    results, wall, cpu = timed_run(shared, jobs, args.jobs)
    hours = trace.duration / 3600.0
    print(f"trace           {len(trace):,} requests, {len(trace.services):,} services, {hours:g} h")
    for result in results:
        cold = int(result.cold.sum())
        replica_h = sum(u.replica_seconds for u in result.usage.values()) / 3600.0
        print(
            f"  {result.policy:17} cold-start req {cold:8,}  cold starts {result.cold_starts:7,}"
            f"  replica-h {replica_h:8,.1f}"
        )
    processes = min(len(jobs), args.jobs or usable_cpus())
    if args.hours is not None or len(policies) < len(POLICIES):
        verdict(wall, cpu, BAR_S, processes)
        print("(a part of the benchmark: the bar is for the whole day and all 7 policies)")
        return
    raise SystemExit(verdict(wall, cpu, BAR_S, processes))


if __name__ == "__main__":
    main()
