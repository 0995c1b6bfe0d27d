"""What measuring replicas costs the controller each second (tidal.runtime.resources): a process
tree through psutil, per replica, against one `podman stats` call for containers.

    PYTHONPATH=. python3 bench/resource_sampling.py [--replicas 10] [--rounds 30]

Prints the median time of one sampling round and, with podman present, the same for that many
containers in one `stats --no-stream` call, and the ratio. Both run off the event loop.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tidal.runtime.base import ProbeSpec, Replica, ReplicaSpec
from tidal.runtime.resources import ContainerSampler, ProcessSampler

IMAGE = "localhost/tidal-example:1"  # what tests/runtime/test_container.py builds


def replica(replica_id: str, pid: int | None = None) -> Replica:
    spec = ReplicaSpec(
        replica_id, "default", "bench", "bench-00001", (), {}, None, ProbeSpec(), Path("/dev/null")
    )
    return Replica(spec=spec, pid=pid, port=1)


def median_ms(round_: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        round_()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    procs = [subprocess.Popen(sleeper) for _ in range(args.replicas)]
    try:
        replicas = [replica(f"r{i}", p.pid) for i, p in enumerate(procs)]
        sampler = ProcessSampler()
        local = median_ms(lambda: sampler.sample(replicas), args.rounds)
        print(f"process trees, {args.replicas} replicas: {local:.2f} ms per round (median)")
    finally:
        for p in procs:
            p.kill()
            p.wait()
    podman = shutil.which("podman")
    if podman is None:
        print("no podman: container stats not measured")
        return
    names = [f"tidal-bench-{i}" for i in range(args.replicas)]
    for name in names:
        subprocess.run(
            [podman, "run", "-d", "--rm", "--name", name, IMAGE, "sleep", "600"],
            capture_output=True,
            check=True,
        )
    try:
        stats = ContainerSampler(lambda: podman, lambda r: f"tidal-bench-{r.replica_id[1:]}")
        boxes = [replica(f"r{i}") for i in range(args.replicas)]
        engine = median_ms(lambda: stats.sample(boxes), max(3, args.rounds // 5))
        print(f"podman stats, {args.replicas} containers: {engine:.2f} ms per round (median)")
        print(f"ratio podman / process trees: {engine / local:.0f}x")
    finally:
        subprocess.run([podman, "rm", "-f", *names], capture_output=True)


if __name__ == "__main__":
    main()
