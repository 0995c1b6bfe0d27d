"""The scaling loop: gateway stats → autoscaler → replicas.

It keeps Knative's clocks (docs/autoscaling.md#metrics, docs/autoscaling.md#ticks-and-pokes): every
second each revision's concurrency and request rate are recorded; every two seconds each revision's
autoscaler decides; a request that arrives while a revision is at zero pokes its autoscaler for an
immediate decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from prometheus_client import Gauge

from tidal.autoscaler.clocks import STAT_PERIOD_S, TICKS_PER_DECISION
from tidal.autoscaler.kpa import PROXY, Decision
from tidal.controller.clock import Clock, MonotonicClock
from tidal.controller.handle import RevisionHandle
from tidal.controller.history import HistoryRecorder
from tidal.controller.usage import forget_replica_gauges, sample_resources
from tidal.runtime.resources import ResourceMonitor

log = logging.getLogger("tidal.controller")

SETTLE_RECHECK_S = 10.0

DESIRED = Gauge(
    "tidal_desired_replicas", "Replicas the autoscaler wants", ["namespace", "revision"]
)
AHEAD = Gauge(
    "tidal_ahead_replicas",
    "Of the desired replicas, those held ahead of demand (they yield to waiting requests)",
    ["namespace", "revision"],
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


class ScalingLoop:
    """Drives the autoscaler of every handle in `revisions` (the platform's one map of them)."""

    def __init__(
        self,
        recorder: HistoryRecorder,
        on_round: Callable[[], None],
        revisions: Mapping[str, RevisionHandle],
        clock: Clock | None = None,
    ) -> None:
        self.recorder = recorder
        self.clock: Clock = clock or MonotonicClock()
        self.on_round = on_round  # after each decision round: place replicas
        self.revisions = revisions
        self._task: asyncio.Task[None] | None = None
        self.monitor: ResourceMonitor | None = None  # measures replicas' CPU, memory, GPU
        self._sampler: asyncio.Task[None] | None = None

    def remove(self, key: str) -> None:
        """Stop scaling this revision: its scale is set by hand from now on."""
        entry = self.revisions.get(key)
        if entry is not None:
            entry.scaled = False
            self.forget(entry)

    def forget(self, entry: RevisionHandle) -> None:
        """The revision is gone: write out its history and drop its gauges."""
        spec = entry.workload.spec
        self.recorder.forget(spec.namespace, spec.service, spec.revision)
        for gauge in (DESIRED, AHEAD, READY, IN_FLIGHT, PANIC):
            with contextlib.suppress(KeyError):
                gauge.remove(spec.namespace, spec.revision)
        forget_replica_gauges(entry, set())

    def add_remote(
        self,
        key: str,
        gateway: str,
        concurrency: float,
        requests: float,
        peak: float,
        latencies: list[tuple[float, float]] | None = None,
    ) -> None:
        """A second of another gateway's stats; added to this gateway's at the next record, as
        Knative's collector adds activator and scraped stats (docs/autoscaling.md#metrics)."""
        entry = self.revisions.get(key)
        if entry is not None:
            entry.remote.add(gateway, concurrency, requests, peak, latencies or [])
            entry.idle = False

    def poke(self, key: str) -> None:
        """First request for a revision with no free replica: send a stat of 1 at once and, if the
        revision is at zero, decide now instead of at the next tick
        (docs/autoscaling.md#scale-from-zero)."""
        entry = self.revisions.get(key)
        if entry is None:
            return
        now = self.clock.now()
        entry.autoscaler.record(now, 1.0, 1.0)
        entry.poked, entry.idle = True, False
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
        next_at = self.clock.now()
        while True:
            next_at += STAT_PERIOD_S
            await asyncio.sleep(max(0.0, next_at - self.clock.now()))
            tick += 1
            try:
                self.step(self.clock.now(), decide=tick % TICKS_PER_DECISION == 0)
            except Exception:  # one bad second must not end scaling for every revision
                log.exception("scaling step failed; next tick in %.0f s", STAT_PERIOD_S)

    def step(self, now: float, decide: bool) -> None:
        """One stat tick: record every revision's second; on a decision tick, decide and place.
        A revision idle at zero (`RevisionHandle.idle`) costs a record of nothing and no
        decision until a request, a stat or a change of reachability wakes it."""
        now_epoch = time.time()
        minute = int(now_epoch // 60)
        recorder = self.recorder
        recorder.begin_second()
        for entry in list(self.revisions.values()):
            if not entry.scaled:
                continue
            if entry.idle:
                # The cheap second of an idle revision, when nothing happened in it: no request
                # arrived, none is in flight, nothing asked for replicas.
                workload = entry.workload
                stats = workload.throttler.stats
                if not (stats.requests or stats.in_flight or workload.desired):
                    entry.period_start = now
                    recorder.observe_idle(entry.history_key, now_epoch, minute)
                    continue
                entry.idle = False
            self._record(entry, now, now_epoch)
            if decide and not entry.idle:
                self._decide(entry, now)
        recorder.write()
        if decide:
            self.on_round()

    def _record(self, entry: RevisionHandle, now: float, now_epoch: float) -> None:
        workload = entry.workload
        concurrency, count, peak = workload.throttler.stats.collect(entry.period_start, now)
        latencies = workload.throttler.stats.take_latencies()
        if entry.remote.pending:
            remote_concurrency, remote_count, remote_peak, remote_latencies = entry.remote.take()
            concurrency += remote_concurrency
            count += remote_count
            peak = max(peak, remote_peak)
            latencies += remote_latencies
        ready = workload.ready_count()
        spec = workload.spec
        self.recorder.observe(
            spec.namespace,
            spec.service,
            spec.revision,
            now_epoch,
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
            entry.idle = False
        elif entry.idle and not workload.throttler.in_flight_total():
            return  # its gauges read 0 since it went idle
        labels = (spec.namespace, spec.revision)
        IN_FLIGHT.labels(*labels).set(workload.throttler.in_flight_total())
        READY.labels(*labels).set(ready)

    def _record_measured(
        self, entry: RevisionHandle, now: float, latencies: list[tuple[float, float]]
    ) -> None:
        """Response times and resource use, for autoscalers that scale on them (the optional
        `record_latency` / `record_usage` of tidal.autoscaler.signals)."""
        record_latency = getattr(entry.autoscaler, "record_latency", None)
        if record_latency is not None and latencies:
            record_latency(now, latencies)
        record_usage = getattr(entry.autoscaler, "record_usage", None)
        if record_usage is not None and entry.usage is not None:
            record_usage(now, entry.usage)

    def _decide(self, entry: RevisionHandle, now: float) -> None:
        workload = entry.workload
        decision = entry.autoscaler.tick(now, workload.ready_count(), entry.reachable)
        entry.last_decision = decision
        if decision.replicas is not None:
            workload.set_desired(decision.replicas)
        workload.set_ahead(decision.ahead)
        workload.throttler.activator_in_path = decision.mode == PROXY
        labels = (workload.spec.namespace, workload.spec.revision)
        DESIRED.labels(*labels).set(workload.desired)
        AHEAD.labels(*labels).set(workload.ahead)
        PANIC.labels(*labels).set(1 if decision.in_panic else 0)
        if workload.desired == 0 and now >= entry.settle_check_at:
            entry.idle = _settled_at_zero(entry, now)


def _settled_at_zero(entry: RevisionHandle, now: float) -> bool:
    """At zero with nothing ready, and the autoscaler says idle ticks would change nothing from
    here on (its `quiet_until` is infinite: the simulator's idle skipping, docs/simulator.md).
    Not yet: it is asked again once it might be (at least SETTLE_RECHECK_S later)."""
    quiet_until = getattr(entry.autoscaler, "quiet_until", None)
    if quiet_until is None or entry.workload.ready_count() or entry.workload.live_count():
        return False
    limit = quiet_until(now, 0)
    entry.settle_check_at = max(limit, now + SETTLE_RECHECK_S)
    return bool(limit == math.inf)
