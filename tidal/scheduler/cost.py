"""Cost accounting: replica-seconds and GPU-seconds per (service, revision, pool), priced by pool.

The caller feeds `start` and `stop` as replicas start and stop, with times from its own clock
(real or simulated), and asks `usage(start, end, now)` for any [start, end) range. A replica still
running counts up to `now`. Cost = replica-seconds x `price.replicaSecond` + GPU-seconds x
`price.gpuSecond` of the replica's pool.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tidal.api.pools import Pool


@dataclass(frozen=True, slots=True, order=True)
class CostKey:
    service: str
    revision: str
    pool: str


@dataclass(frozen=True, slots=True)
class Usage:
    replica_seconds: float = 0.0
    gpu_seconds: float = 0.0
    cost: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.replica_seconds + other.replica_seconds,
            self.gpu_seconds + other.gpu_seconds,
            self.cost + other.cost,
        )


@dataclass(frozen=True, slots=True)
class _Span:
    key: CostKey
    gpus: int
    started: float
    stopped: float | None = None


class CostLedger:
    """Start and stop events in, usage and cost per (service, revision, pool) out."""

    def __init__(self, pools: Iterable[Pool]) -> None:
        self._prices = {pool.name: pool.price for pool in pools}
        self._running: dict[str, _Span] = {}
        self._stopped: list[_Span] = []

    def start(
        self, replica_id: str, service: str, revision: str, pool: str, gpus: int, at: float
    ) -> None:
        """A replica holding `gpus` devices began to run (and to cost) at `at`."""
        if pool not in self._prices:
            raise ValueError(f"unknown pool {pool!r}")
        if replica_id in self._running:
            raise ValueError(f"replica {replica_id!r} is already running")
        self._running[replica_id] = _Span(CostKey(service, revision, pool), gpus, at)

    def stop(self, replica_id: str, at: float) -> bool:
        """The replica stopped at `at`; False if the ledger never saw it start."""
        span = self._running.get(replica_id)
        if span is None:
            return False
        if at < span.started:
            raise ValueError(f"replica {replica_id!r} stops at {at} before it started")
        del self._running[replica_id]
        self._stopped.append(_Span(span.key, span.gpus, span.started, at))
        return True

    def usage(self, start: float, end: float, now: float) -> dict[CostKey, Usage]:
        """Usage inside [start, end); running replicas count until `now`. Keys with none are left
        out."""
        totals: dict[CostKey, Usage] = {}
        for span in (*self._stopped, *self._running.values()):
            stopped = now if span.stopped is None else span.stopped
            seconds = min(stopped, end) - max(span.started, start)
            if seconds <= 0:
                continue
            price = self._prices[span.key.pool]
            gpu_seconds = seconds * span.gpus
            cost = seconds * price.replica_second + gpu_seconds * price.gpu_second
            totals[span.key] = totals.get(span.key, Usage()) + Usage(seconds, gpu_seconds, cost)
        return totals
