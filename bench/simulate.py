"""Benchmark: a 24-hour replay of about 1,000,000 requests through the KPA, timed, with the
peak RSS of the process (issue 5 asks for <= 60 s, aiming at <= 10 s, and <= 1 GiB).

    python bench/simulate.py [--requests N] [--cc CC]
"""

from __future__ import annotations

import argparse
import resource
import time

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.pools import parse_pools
from tidal.autoscaler.kpa import decider_spec
from tidal.sim import ServiceModel, simulate, synthetic_trace
from tidal.sim.dists import parse_distribution

LIMIT_S = 60.0
AIM_S = 10.0
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
    began = time.perf_counter()
    result = simulate(
        trace,
        service,
        ("kpa",),
        parse_pools(None),
        parse_distribution("azure-functions"),
        parse_distribution("alibaba-load"),
    )["kpa"]
    seconds = time.perf_counter() - began
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    served = int((result.status == 0).sum())
    print(f"requests        {len(trace):,} over 24 h (served {served:,})")
    print(f"replay time     {seconds:.1f} s  (bar <= {LIMIT_S:g} s, aim <= {AIM_S:g} s)")
    print(f"peak RSS        {rss_mib:.0f} MiB  (bar <= {LIMIT_RSS_MIB:g} MiB)")
    print(f"max replicas    {int(result.replicas.max())}, cold starts {result.cold_starts}")
    ok = seconds <= LIMIT_S and rss_mib <= LIMIT_RSS_MIB
    print("PASS" if ok else "FAIL")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
