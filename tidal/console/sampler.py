"""Per-second samples of every revision for the console's live charts, kept in memory.

The sampler only reads: the gateway's Prometheus counters (requests, latency buckets, cold
starts) and the scaling loop's gauges and entries. An hour of seconds per revision is kept; longer
windows come from the per-minute history in the state file (tidal/store/history.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tidal.controller.history import histogram_quantile
from tidal.controller.routes import key_of
from tidal.controller.workload import COLD_STARTS
from tidal.gateway.routing import LATENCY, REQUESTS

log = logging.getLogger("tidal.console")
KEEP_SECONDS = 3600
KEEP_MINUTES = 7 * 1440
P95_WINDOW_S = 60


@dataclass
class Series:
    """One revision's last hour, one point a second."""

    t: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP_SECONDS))
    rps: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP_SECONDS))
    concurrency: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP_SECONDS))
    ready: deque[int] = field(default_factory=lambda: deque(maxlen=KEEP_SECONDS))
    desired: deque[int] = field(default_factory=lambda: deque(maxlen=KEEP_SECONDS))
    planned: deque[int | None] = field(default_factory=lambda: deque(maxlen=KEEP_SECONDS))
    cold: deque[float] = field(default_factory=lambda: deque(maxlen=KEEP_SECONDS))
    cold_minutes: dict[int, float] = field(default_factory=dict)  # epoch minute -> count
    buckets: deque[dict[float, float]] = field(
        default_factory=lambda: deque(maxlen=P95_WINDOW_S + 1)
    )

    def as_dict(self, since: float) -> dict[str, list[Any]]:
        start = next((i for i, t in enumerate(self.t) if t >= since), len(self.t))
        return {
            name: list(getattr(self, name))[start:]
            for name in ("t", "rps", "concurrency", "ready", "desired", "planned", "cold")
        }

    def p95(self) -> float | None:
        if len(self.buckets) < 2:
            return None
        first, last = self.buckets[0], self.buckets[-1]
        return histogram_quantile(0.95, {le: last[le] - first.get(le, 0.0) for le in last})


def _by_revision(metric: Any, suffix: str) -> dict[tuple[str, str], float]:
    totals: dict[tuple[str, str], float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                key = (sample.labels["namespace"], sample.labels["revision"])
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def _buckets() -> dict[tuple[str, str], dict[float, float]]:
    out: dict[tuple[str, str], dict[float, float]] = {}
    for family in LATENCY.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                key = (sample.labels["namespace"], sample.labels["revision"])
                le = float(sample.labels["le"])
                counts = out.setdefault(key, {})
                counts[le] = counts.get(le, 0.0) + sample.value
    return out


class Sampler:
    """Samples `platform` once a second while the admin API runs."""

    def __init__(self, platform: Any, period: float = 1.0) -> None:
        self.platform = platform
        self.period = period
        self.series: dict[tuple[str, str], Series] = {}
        self._last_requests: dict[tuple[str, str], float] = {}
        self._last_cold: dict[tuple[str, str], float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                self.sample(time.time())
            except Exception:  # a view must never stop: log, and sample again next time
                log.exception("console sampler")
            await asyncio.sleep(self.period)

    def sample(self, now: float) -> None:
        requests = _by_revision(REQUESTS, "_total")
        cold = _by_revision(COLD_STARTS, "_total")
        buckets = _buckets()
        live = set()
        for entry in list(self.platform.scaling.revisions.values()):
            workload = entry.workload
            key = (workload.spec.namespace, workload.spec.revision)
            live.add(key)
            series = self.series.setdefault(key, Series())
            total, cold_total = requests.get(key, 0.0), cold.get(key, 0.0)
            elapsed = now - series.t[-1] if series.t else self.period
            series.t.append(round(now, 3))
            series.rps.append(
                round(max(0.0, total - self._last_requests.get(key, total)) / max(elapsed, 1e-3), 3)
            )
            new_cold = max(0.0, cold_total - self._last_cold.get(key, cold_total))
            series.cold.append(new_cold)
            if new_cold:
                minute = int(now // 60)
                series.cold_minutes[minute] = series.cold_minutes.get(minute, 0.0) + new_cold
                for old in [m for m in series.cold_minutes if m <= minute - KEEP_MINUTES]:
                    del series.cold_minutes[old]
            self._last_requests[key], self._last_cold[key] = total, cold_total
            series.concurrency.append(workload.throttler.in_flight_total())
            series.ready.append(workload.ready_count())
            series.desired.append(workload.desired)
            series.planned.append(self.planned(*key))
            series.buckets.append(buckets.get(key, {}))
        for key in set(self.series) - live:
            del self.series[key]

    def planned(self, namespace: str, revision: str) -> int | None:
        """The predictive plan's replicas for this minute; None for a revision with no plan."""
        planned = self.platform.forecaster.revisions.get(key_of(namespace, revision))
        if planned is None or planned.plan is None:
            return None
        return planned.plan.replicas_at(time.time())
