"""Placement benchmark: one `place_all` over 1,000 revisions and 10 shared pools.

    python bench/placement.py [--revisions 1000] [--runs 21] [--seed 1]

The cluster: 4 reserved pools (64 cores, 256Gi, 8 GPUs, 64 replicas each) and 6 elastic ones
(unbounded cpu and memory, 16 GPUs each). 250 services of 4 revisions each; every service has a
ResourcePolicy (a zone's reserved pools up to max 3, then any reserved pool, then elastic) with
one of the four spill policies; one revision in ten needs a GPU. A first `place_all` from empty
pools places each revision's previous replica count; the timed call then decides a new desired
count for every revision (scale-out, scale-in or steady) over those replicas. Prints the median
of `--runs` timed calls against the bar (<= 50 ms), then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tidal.api.pools import Pool  # noqa: E402
from tidal.api.resource_policy import ResourcePolicy, validate_resource_policy  # noqa: E402
from tidal.scheduler.placement import Demand, Placed, Request, place_all, tally  # noqa: E402

BAR_MS = 50.0
SERVICE = "serving.knative.dev/service"
GI = 2.0**30
SPILL = (
    "LackResourceOrExceedMax",
    "ExceedMax",
    "TimeoutOrExceedMax",
    "LackResourceAndNoTerminating",
)


def pools() -> tuple[Pool, ...]:
    reserved = [
        Pool(
            f"ecs-{i}",
            "reserved",
            {"tier": "ecs", "zone": f"z{i % 2}"},
            cpu=64,
            memory=256 * GI,
            gpus=tuple(f"{i}-{d}" for d in range(8)),
            max_replicas=64,
        )
        for i in range(4)
    ]
    elastic = [
        Pool(f"eci-{i}", "elastic", {"tier": "eci"}, gpus=tuple(f"e{i}-{d}" for d in range(16)))
        for i in range(6)
    ]
    return (*reserved, *elastic)


def policy(service: str, index: int) -> ResourcePolicy:
    return validate_resource_policy(
        {
            "apiVersion": "scheduling.alibabacloud.com/v1alpha1",
            "kind": "ResourcePolicy",
            "metadata": {"name": service},
            "spec": {
                "selector": {SERVICE: service},
                "units": [
                    {"resource": "ecs", "nodeSelector": {"zone": f"z{index % 2}"}, "max": 3},
                    {"resource": "ecs", "max": 6},
                    {"resource": "eci"},
                ],
                "whenTryNextUnits": {"policy": SPILL[index % len(SPILL)], "timeout": "1m"},
            },
        }
    )


def requests(count: int, seed: int) -> tuple[list[Request], list[Request]]:
    """The revisions twice: at their previous desired count with no replicas, and at a new one."""
    rng = random.Random(seed)
    before, after = [], []
    for index in range(count):
        service = f"svc{index // 4}"
        revision = f"{service}-{index % 4 + 1:05d}"
        pol = policy(service, index // 4) if index % 4 == 0 else before[-1].policy
        demand = Demand(cpu=0.5, memory=GI, gpus=1 if index % 10 == 0 else 0)
        labels = {SERVICE: service, "serving.knative.dev/revision": revision}
        before.append(Request(revision, rng.randint(0, 5), demand, labels=labels, policy=pol))
        after.append(Request(revision, rng.randint(0, 8), demand, labels=labels, policy=pol))
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    cluster = pools()
    before, after = requests(args.revisions, args.seed)
    placed: dict[str, list[Placed]] = {}
    revisions: dict[str, list[str]] = {}  # service -> its revisions
    for request, decision in zip(before, place_all(before, cluster, {}, 0.0), strict=True):
        placed[request.revision] = [
            Placed(f"{request.revision}-{i}", s.pool, float(i), s.devices, labels=request.labels)
            for i, s in enumerate(decision.start)
        ]
        revisions.setdefault(request.labels[SERVICE], []).append(request.revision)
    timed = [
        Request(
            r.revision,
            r.desired,
            r.demand,
            placed[r.revision],
            r.labels,
            r.policy,
            [p for rev in revisions[r.labels[SERVICE]] if rev != r.revision for p in placed[rev]],
        )
        for r in after
    ]
    usage = tally(cluster, ((p, r.demand) for r in timed for p in r.replicas))

    times = []
    for _ in range(args.runs):
        begin = time.perf_counter()
        decisions = place_all(timed, cluster, usage, 100.0)
        times.append((time.perf_counter() - begin) * 1000)
    median = statistics.median(times)
    starts = sum(len(d.start) for d in decisions)
    stops = sum(len(d.stop) for d in decisions)
    pending = sum(len(d.pending) for d in decisions)
    replicas = sum(len(r.replicas) for r in timed)
    print(
        f"placement of {len(timed)} revisions over {len(cluster)} pools ({replicas} replicas): "
        f"{starts} starts, {stops} stops, {pending} pending"
    )
    verdict = "PASS" if median <= BAR_MS else "FAIL"
    print(
        f"median {median:.1f} ms (min {min(times):.1f}, max {max(times):.1f}, n={len(times)})"
        f"  (bar: <= {BAR_MS:.0f} ms) {verdict}"
    )
    print(
        json.dumps(
            {
                "revisions": len(timed),
                "pools": len(cluster),
                "median_ms": round(median, 2),
                "runs_ms": [round(t, 2) for t in times],
                "bar_ms": BAR_MS,
            }
        )
    )


if __name__ == "__main__":
    main()
