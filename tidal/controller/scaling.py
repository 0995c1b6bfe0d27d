"""The scaling loop: gateway stats → autoscaler → replicas.

It keeps Knative's clocks (docs/autoscaling.md#metrics, docs/autoscaling.md#ticks-and-pokes): every
second each revision's concurrency and request rate are recorded; every two seconds each revision's
autoscaler decides; a request that arrives while a revision is at zero pokes its autoscaler for an
immediate decision.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import Gauge

from tidal.autoscaler.clocks import STAT_PERIOD_S, TICKS_PER_DECISION
from tidal.autoscaler.kpa import Decision
from tidal.autoscaler.signals import Usage
from tidal.controller.history import HistoryRecorder
from tidal.controller.usage import forget_replica_gauges, sample_resources
from tidal.controller.workload import RevisionWorkload
from tidal.runtime.resources import ReplicaResources, ResourceMonitor

DESIRED = Gauge(
    "tidal_desired_replicas", "Replicas the autoscaler wants", ["namespace", "revision"]
)
READY = Gauge("tidal_ready_replicas", "Replicas ready to serve", ["namespace", "revision"])
IN_FLIGHT = Gauge(
    "tidal_inflight_requests",
    "Requests in the gateway (held or proxied)",
    ["namespace", "revision"],
)
PANIC = Gauge(
    "tidal_panic_mode", "1 while the autoscaler is in panic mode", ["namespace", "revision"]
)


class Autoscaler(Protocol):
    """What the loop drives: Knative's KPA, the predictive autoscaler, or a baseline. One that
    scales on measured metrics also has `record_latency(now, [(rt, service)])` and
    `record_usage(now, Usage)` (tidal.autoscaler.signals), called before `record` when present."""

    def record(self, now: float, concurrency: float, rps: float) -> None: ...

    def poke(self, now: float, concurrency: float) -> bool: ...

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision: ...


@dataclass
class ScaledRevision:
    workload: RevisionWorkload
    autoscaler: Autoscaler
    reachable: bool = True
    last_decision: Decision | None = None
    period_start: float = field(default_factory=time.monotonic)
    poked: bool = False  # an immediate stat was sent; the next report subtracts it
    remote: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # other gateways
    remote_latencies: list[tuple[float, float]] = field(default_factory=list)
    # The last measured use of each replica (tidal.runtime.resources), by replica id.
    resources: dict[str, ReplicaResources] = field(default_factory=dict)
    usage: Usage | None = None  # their sum over ready replicas, for the autoscaler
    exported: set[str] = field(default_factory=set)  # replicas with tidal_replica_* gauges


class ScalingLoop:
    def __init__(self, recorder: HistoryRecorder, on_round: Callable[[], None]) -> None:
        self.recorder = recorder
        self.on_round = on_round  # after each decision round: place replicas
        self.revisions: dict[str, ScaledRevision] = {}
        self._task: asyncio.Task[None] | None = None
        self.monitor: ResourceMonitor | None = None  # measures replicas' CPU, memory, GPU
        self._sampler: asyncio.Task[None] | None = None

    def add(self, key: str, entry: ScaledRevision) -> None:
        self.revisions[key] = entry

    def remove(self, key: str) -> None:
        entry = self.revisions.pop(key, None)
        if entry is not None:
            spec = entry.workload.spec
            self.recorder.forget(spec.namespace, spec.service, spec.revision)
            for gauge in (DESIRED, READY, IN_FLIGHT, PANIC):
                gauge.remove(entry.workload.spec.namespace, entry.workload.spec.revision)
            forget_replica_gauges(entry, set())

    def add_remote(
        self,
        key: str,
        concurrency: float,
        requests: float,
        peak: float,
        latencies: list[tuple[float, float]] | None = None,
    ) -> None:
        """A second of another gateway's stats; added to this gateway's at the next record, as
        Knative's collector adds activator and scraped stats (docs/autoscaling.md#metrics)."""
        entry = self.revisions.get(key)
        if entry is not None:
            entry.remote[0] += concurrency
            entry.remote[1] += requests
            entry.remote[2] = max(entry.remote[2], peak)
            entry.remote_latencies.extend(latencies or ())

    def poke(self, key: str) -> None:
        """First request for a revision with no free replica: send a stat of 1 at once and, if the
        revision is at zero, decide now instead of at the next tick
        (docs/autoscaling.md#scale-from-zero)."""
        entry = self.revisions.get(key)
        if entry is None:
            return
        now = time.monotonic()
        entry.autoscaler.record(now, 1.0, 1.0)
        entry.poked = True
        # Knative pokes only when the decider's last desired scale is 0; it is -1 until the
        # first valid tick, so a revision created at zero would wait up to 2 s. tidal also
        # decides at once whenever the applied scale is zero.
        if entry.autoscaler.poke(now, 1.0) or entry.workload.desired == 0:
            self._decide(entry, now)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        if self.monitor is not None:
            self._sampler = asyncio.ensure_future(self._sample_forever(self.monitor))

    async def stop(self) -> None:
        for task in (self._task, self._sampler):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _sample_forever(self, monitor: ResourceMonitor) -> None:
        """Measure every replica once a stat period, off the event loop (an engine's `stats`
        takes a while); the record step hands the latest figures to the autoscalers."""
        while True:
            await asyncio.sleep(STAT_PERIOD_S)
            await sample_resources(monitor, list(self.revisions.values()))

    async def _run(self) -> None:
        tick = 0
        next_at = time.monotonic()
        while True:
            next_at += STAT_PERIOD_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            now = time.monotonic()
            tick += 1
            decide = tick % TICKS_PER_DECISION == 0
            for entry in list(self.revisions.values()):
                self._record(entry, now)
                if decide:
                    self._decide(entry, now)
            if decide:
                self.on_round()

    def _record(self, entry: ScaledRevision, now: float) -> None:
        workload = entry.workload
        concurrency, count, peak = workload.throttler.stats.collect(entry.period_start, now)
        remote_concurrency, remote_count, remote_peak = entry.remote
        entry.remote = [0.0, 0.0, 0.0]
        concurrency += remote_concurrency
        count += int(remote_count)
        peak = max(peak, int(remote_peak))
        ready = workload.ready_count()
        latencies = workload.throttler.stats.take_latencies() + entry.remote_latencies
        entry.remote_latencies = []
        self.recorder.observe(
            workload.spec.namespace,
            workload.spec.service,
            workload.spec.revision,
            time.time(),
            concurrency,
            count,
            peak,
            ready,
            entry.usage,
            latencies,
        )
        rps = count / max(now - entry.period_start, 1e-3)
        if entry.poked:
            rps, entry.poked = max(0.0, rps - 1.0), False
        entry.period_start = now
        self._record_measured(entry, now, latencies)
        # At zero pods Knative records only activator stats, which exist only while requests
        # do (docs/autoscaling.md#metrics): recording zeros would dilute the first request's stat of
        # 1.
        if ready or concurrency or rps:
            entry.autoscaler.record(now, concurrency, rps)
        labels = (workload.spec.namespace, workload.spec.revision)
        IN_FLIGHT.labels(*labels).set(workload.throttler.stats.in_flight)
        READY.labels(*labels).set(ready)

    def _record_measured(
        self, entry: ScaledRevision, now: float, latencies: list[tuple[float, float]]
    ) -> None:
        """Response times and resource use, for autoscalers that scale on them (the optional
        `record_latency` / `record_usage` of tidal.autoscaler.signals)."""
        record_latency = getattr(entry.autoscaler, "record_latency", None)
        if record_latency is not None and latencies:
            record_latency(now, latencies)
        record_usage = getattr(entry.autoscaler, "record_usage", None)
        if record_usage is not None and entry.usage is not None:
            record_usage(now, entry.usage)

    def _decide(self, entry: ScaledRevision, now: float) -> None:
        workload = entry.workload
        decision = entry.autoscaler.tick(now, workload.ready_count(), entry.reachable)
        entry.last_decision = decision
        if decision.replicas is not None:
            workload.set_desired(decision.replicas)
        labels = (workload.spec.namespace, workload.spec.revision)
        DESIRED.labels(*labels).set(workload.desired)
        PANIC.labels(*labels).set(1 if decision.in_panic else 0)
