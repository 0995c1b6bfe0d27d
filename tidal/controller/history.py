"""Rolls the scaling loop's per-second stats up into per-minute history rows.

p95 latency comes from the gateway's latency histogram (the change of its bucket counts over the
minute, interpolated as Prometheus' histogram_quantile does), so the request path pays nothing.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from dataclasses import dataclass, field

from tidal.autoscaler.signals import Usage
from tidal.gateway.routing import LATENCY
from tidal.store.history import MetricHistory, MinuteRollup

log = logging.getLogger("tidal.controller")
MAX_UNWRITTEN = 100_000  # minute rows held while the store cannot take them (a full disk)


@dataclass
class _Minute:
    minute: int
    seconds: int = 0
    requests: float = 0.0
    concurrency_sum: float = 0.0
    peak: float = 0.0
    ready_sum: float = 0.0
    # Measured use and RT: sums and how many seconds had a figure.
    cpu: list[float] = field(default_factory=lambda: [0.0, 0])
    memory: list[float] = field(default_factory=lambda: [0.0, 0])
    gpu: list[float] = field(default_factory=lambda: [0.0, 0])
    rt: list[float] = field(default_factory=lambda: [0.0, 0])
    buckets_at_start: dict[float, float] = field(default_factory=dict)


class HistoryRecorder:
    """Per-second stats in, per-minute rows out: the scaling loop calls `begin_second`, then
    `observe` for each revision, then `write`, which stores the minutes that ended in one
    transaction (not one per revision). A store that cannot take them (a full disk) must not
    stop the scaling loop: the rows are kept and retried every second until it takes them."""

    def __init__(self, history: MetricHistory) -> None:
        self.history = history
        self._open: dict[tuple[str, str, str], _Minute] = {}
        self._due: list[MinuteRollup] = []  # ended minutes not stored yet
        self._failing = False
        self._buckets: dict[tuple[str, str], dict[float, float]] | None = None

    def begin_second(self) -> None:
        self._buckets = None  # the latency histogram is read again, once, when a minute ends

    def write(self) -> None:
        if not self._due:
            return
        try:
            self.history.add(self._due)
        except sqlite3.Error as exc:
            if not self._failing:
                log.warning("per-minute history not written (%s); kept and retried", exc)
            self._failing = True
            del self._due[:-MAX_UNWRITTEN]
            return
        if self._failing:
            log.warning("per-minute history written again")
        self._due, self._failing = [], False

    def _latency(self, namespace: str, revision: str) -> dict[float, float]:
        if self._buckets is None:
            self._buckets = all_latency_buckets()
        return self._buckets.get((namespace, revision), {})

    def observe(
        self,
        namespace: str,
        service: str,
        revision: str,
        now_epoch: float,
        concurrency: float,
        requests: int,
        peak: int,
        ready: int,
        usage: Usage | None = None,
        latencies: list[tuple[float, float]] | None = None,
    ) -> None:
        """One second of a revision's stats (with its replicas' measured use and its requests'
        response times, when there are any); a new minute writes the previous one out."""
        key = (namespace, service, revision)
        minute = int(now_epoch // 60)
        current = self._open.get(key)
        if current is None or current.minute != minute:
            if current is not None:
                self._flush(key, current)
            current = _Minute(minute, buckets_at_start=self._latency(namespace, revision))
            self._open[key] = current
        current.seconds += 1
        current.requests += requests
        current.concurrency_sum += concurrency
        current.peak = max(current.peak, peak)
        current.ready_sum += ready
        if usage is not None:
            _add(current.cpu, usage.cpu_cores)
            _add(current.memory, usage.memory_bytes)
            if usage.gpu_replicas:
                _add(current.gpu, usage.gpu_percent / usage.gpu_replicas)
        for rt, _ in latencies or ():
            _add(current.rt, rt)

    def observe_idle(self, key: tuple[str, str, str], now_epoch: float, minute: int) -> None:
        """`observe` of a second with nothing in it (no requests, no replicas); `key` is
        (namespace, service, revision), `minute` the epoch minute of `now_epoch`."""
        current = self._open.get(key)
        if current is not None and current.minute == minute:
            current.seconds += 1
        else:
            self.observe(*key, now_epoch, 0.0, 0, 0, 0)

    def forget(self, namespace: str, service: str, revision: str) -> None:
        current = self._open.pop((namespace, service, revision), None)
        if current is not None:
            self._buckets = None
            self._flush((namespace, service, revision), current)
            self.write()

    def _flush(self, key: tuple[str, str, str], minute: _Minute) -> None:
        namespace, service, revision = key
        if minute.seconds == 0:
            return
        end = self._latency(namespace, revision)
        delta = {le: end.get(le, 0.0) - minute.buckets_at_start.get(le, 0.0) for le in end}
        self._due.append(
            MinuteRollup(
                namespace,
                service,
                revision,
                minute.minute,
                requests=minute.requests,
                avg_concurrency=minute.concurrency_sum / minute.seconds,
                peak_concurrency=minute.peak,
                p95_latency=histogram_quantile(0.95, delta),
                ready_replicas=minute.ready_sum / minute.seconds,
                cpu_cores=_mean(minute.cpu),
                memory_bytes=_mean(minute.memory),
                gpu_percent=_mean(minute.gpu),
                mean_rt=_mean(minute.rt),
            )
        )


def _add(acc: list[float], value: float) -> None:
    acc[0] += value
    acc[1] += 1


def _mean(acc: list[float]) -> float | None:
    return acc[0] / acc[1] if acc[1] else None


def all_latency_buckets() -> dict[tuple[str, str], dict[float, float]]:
    """`latency_buckets` of every revision, from one read of the histogram."""
    table: dict[tuple[str, str], dict[float, float]] = {}
    for family in LATENCY.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                labels = sample.labels
                counts = table.setdefault((labels["namespace"], labels["revision"]), {})
                bound = float(labels["le"])
                counts[bound] = counts.get(bound, 0.0) + sample.value
    return table


def histogram_quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts {upper bound: count}."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower
