"""Benchmark: one service, a synthetic day of about 1,000,000 requests, the KPA alone; bar
<= 10 s (and peak RSS <= 1 GiB).

    python bench/simulate.py [--requests N] [--cc CC]
"""

from __future__ import annotations

import argparse
import resource

import numpy as np
from simulate_common import timed_run, verdict

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.pools import parse_pools
from tidal.autoscaler.kpa import decider_spec
from tidal.sim import ServiceModel, synthetic_trace
from tidal.sim.dists import parse_distribution
from tidal.sim.runner import Job, Shared

BAR_S = 10.0
LIMIT_RSS_MIB = 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--cc", type=int, default=4, help="containerConcurrency")
    args = parser.parse_args()
    config = AutoscalerConfig()
    spec = decider_spec(config, parse_autoscaling_annotations({}, config), args.cc)
    service = ServiceModel("bench", spec, container_concurrency=args.cc)
    trace = synthetic_trace(days=1.0, mean_rps=args.requests / 86_400.0, seed=1)
    times = parse_distribution("azure-functions").sample(len(trace), np.random.default_rng(0))
    shared = Shared(trace, parse_pools(None), times, parse_distribution("alibaba-load"), 0, {})
    results, wall, cpu = timed_run(shared, [Job("kpa", "default", [service], {})], 1)
    result = results[0]
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    served = int((result.status == 0).sum())
    print(f"requests        {len(trace):,} over 24 h (served {served:,}), policy kpa")
    print(f"peak RSS        {rss_mib:.0f} MiB  (bar <= {LIMIT_RSS_MIB:g} MiB)")
    print(f"max replicas    {int(result.replicas.max())}, cold starts {result.cold_starts}")
    status = verdict(wall, cpu, BAR_S, 1)
    raise SystemExit(status if rss_mib <= LIMIT_RSS_MIB else 1)


if __name__ == "__main__":
    main()
