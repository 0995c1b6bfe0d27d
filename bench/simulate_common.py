"""What the simulator benchmarks share: run a set of replays the way `tidal simulate` does
(parallel worker processes) and print wall time, CPU time and machine load beside the bar."""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tidal.sim.runner import Job, Shared, run_jobs, usable_cpus  # noqa: E402


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_run(shared: Shared, jobs: list[Job], processes: int | None) -> tuple[list, float, float]:
    """The results, wall seconds and CPU seconds (this process and its workers)."""
    cpu0, began = cpu_seconds(), time.perf_counter()
    results = run_jobs(shared, jobs, processes)
    return results, time.perf_counter() - began, cpu_seconds() - cpu0


def verdict(wall: float, cpu: float, bar: float, processes: int) -> int:
    """Print the figures against the bar; the exit status says whether wall time met it."""
    load = os.getloadavg()[0]
    cores = usable_cpus()
    print(f"wall time       {wall:.1f} s  (bar <= {bar:g} s)")
    print(f"CPU time        {cpu:.1f} s over {processes} worker process(es); {cores} usable CPUs")
    print(f"machine load    {load:.1f} (1-min average): the wall time is only fair when low")
    ok = wall <= bar
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1
