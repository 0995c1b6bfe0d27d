"""Run many replays (policies, sweep points) in parallel worker processes.

Workers are forked, so they inherit the trace, the services and the sampled service times from
the parent instead of receiving a copy per job; each job names only its policy and setting. They
report progress through a queue that the parent turns into progress bars. The costliest policies
are handed out first, so that a long replay does not start last and run alone.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from tidal.api.pools import Pool
from tidal.sim.dists import Distribution
from tidal.sim.model import ServiceModel, SimResult, Simulation
from tidal.sim.traces import Trace


@dataclass(frozen=True)
class Job:
    """One replay: a policy, its setting's label, the services it runs (built with the
    setting's annotations) and its baseline settings."""

    policy: str
    label: str
    services: Sequence[ServiceModel]
    settings: dict[str, float]


@dataclass
class Shared:
    trace: Trace
    pools: tuple[Pool, ...]
    service_times: np.ndarray
    startup: Distribution
    seed: int
    options: dict[str, Any]


# Relative cost of one replay per policy (measured on the benchmarks in bench/): the order in
# which jobs are handed to the workers. Unlisted policies come last.
COST = {"predictive": 6, "kpa": 3, "ray": 3, "hybrid-histogram": 2, "hpa": 1, "keepalive": 1}

_SHARED: Shared | None = None
_JOBS: list[Job] = []
_PROGRESS: Any = None


def _run(index: int) -> tuple[int, SimResult]:
    shared, job = _SHARED, _JOBS[index]
    assert shared is not None
    services = job.services[0] if len(job.services) == 1 else job.services
    sim = Simulation(
        shared.trace,
        services,
        job.policy,
        shared.pools,
        shared.service_times,
        shared.startup,
        shared.seed,
        settings=job.settings,
        **shared.options,
    )
    report = None if _PROGRESS is None else (lambda t: _PROGRESS.put((index, t)))
    result = sim.run(report)
    result.setting = job.label
    return index, result


def run_jobs(
    shared: Shared,
    jobs: list[Job],
    processes: int | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> list[SimResult]:
    """Results in the order of `jobs`. `processes` 1 runs them here, in order; the default is
    one per CPU this process may run on."""
    global _SHARED, _JOBS, _PROGRESS
    workers = min(len(jobs), processes or usable_cpus())
    _SHARED, _JOBS = shared, jobs
    results: list[SimResult | None] = [None] * len(jobs)
    try:
        if workers <= 1:
            _PROGRESS = _Direct(progress)
            for index in range(len(jobs)):
                results[index] = _run(index)[1]
            return [r for r in results if r is not None]
        context = multiprocessing.get_context("fork")
        _PROGRESS = context.Queue() if progress is not None else None
        pump = _Pump(_PROGRESS, progress)
        order = sorted(range(len(jobs)), key=lambda k: -COST.get(jobs[k].policy, 0))
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for index, result in pool.map(_run, order):
                results[index] = result
        pump.stop()
        return [r for r in results if r is not None]
    finally:
        _SHARED, _JOBS, _PROGRESS = None, [], None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity, e.g. a container's share), else all."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Direct:
    """Progress straight to the callback (no worker processes)."""

    def __init__(self, callback: Callable[[int, float], None] | None) -> None:
        self.callback = callback

    def put(self, item: tuple[int, float]) -> None:
        if self.callback is not None:
            self.callback(*item)


class _Pump:
    """Moves progress reports from the workers' queue to the callback, on a thread."""

    def __init__(self, source: Any, callback: Callable[[int, float], None] | None) -> None:
        self.source, self.callback = source, callback
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        if source is not None and callback is not None:
            self.thread.start()

    def _loop(self) -> None:
        while not self.done.is_set():
            try:
                item = self.source.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            assert self.callback is not None
            self.callback(*item)

    def stop(self) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()
