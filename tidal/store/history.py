"""Metric history: per-minute rollups per revision, replica Ready Times and the replica spans that
cost is computed from, in the state file.

Predictive scaling learns from weeks of this (docs/architecture.md#state); it survives restarts
because it lives in the same SQLite file as the resources. Rollups older than the retention are
pruned.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from tidal.store.sqlite import open_state_file, rfc3339

RETENTION_DAYS = 35
FUTURE_SLACK_S = 3600.0  # an imported minute this far ahead of the clock is a wrong file
FIELDS = (
    "requests",
    "avg_concurrency",
    "peak_concurrency",
    "p95_latency",
    "ready_replicas",
    "cpu_cores",
    "memory_bytes",
    "gpu_percent",
    "mean_rt",
)
# Products of columns a series may also sum per minute: a per-replica mean (GPU %, RT) weighted
# by each revision's ready replicas, so several revisions add up.
WEIGHTED = ("gpu_percent*ready_replicas", "mean_rt*ready_replicas")
# Columns added after the first release: a state file without them gets them on open.
MEASURED_COLUMNS = ("cpu_cores", "memory_bytes", "gpu_percent", "mean_rt")

SCHEMA = """
CREATE TABLE IF NOT EXISTS metric_minutes (
    namespace TEXT NOT NULL,
    service TEXT NOT NULL,
    revision TEXT NOT NULL,
    minute INTEGER NOT NULL,
    requests REAL NOT NULL,
    avg_concurrency REAL NOT NULL,
    peak_concurrency REAL NOT NULL,
    p95_latency REAL,
    ready_replicas REAL,
    cpu_cores REAL,
    memory_bytes REAL,
    gpu_percent REAL,
    mean_rt REAL,
    PRIMARY KEY (namespace, revision, minute)
);
CREATE INDEX IF NOT EXISTS metric_minutes_service ON metric_minutes (namespace, service, minute);
CREATE TABLE IF NOT EXISTS ready_times (
    namespace TEXT NOT NULL,
    service TEXT NOT NULL,
    revision TEXT NOT NULL,
    pool TEXT NOT NULL,
    at REAL NOT NULL,
    seconds REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ready_times_service ON ready_times (namespace, service, at);
CREATE TABLE IF NOT EXISTS replica_spans (
    replica_id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    revision TEXT NOT NULL,
    pool TEXT NOT NULL,
    gpus INTEGER NOT NULL,
    started REAL NOT NULL,
    stopped REAL
);
"""


@dataclass(frozen=True)
class ReplicaSpan:
    replica_id: str
    service: str
    revision: str
    pool: str
    gpus: int
    started: float
    stopped: float | None


@dataclass(frozen=True)
class MinuteRollup:
    namespace: str
    service: str
    revision: str
    minute: int  # epoch seconds // 60
    requests: float
    avg_concurrency: float
    peak_concurrency: float
    p95_latency: float | None
    ready_replicas: float | None  # None for imported history: it says nothing about replicas
    # Measured use, summed over ready replicas (GPU: mean %), and mean RT in seconds; None when
    # nothing was measured (docs/autoscaling.md#metrics-and-classes).
    cpu_cores: float | None = None
    memory_bytes: float | None = None
    gpu_percent: float | None = None
    mean_rt: float | None = None


@dataclass(frozen=True)
class ImportedHistory:
    """What an import wrote: minutes stored, minutes left out as older than the retention,
    and the first and last stored minute (epoch seconds // 60), None when nothing was."""

    minutes: int
    too_old: int
    span: tuple[int, int] | None

    def bounds(self) -> tuple[str, str] | None:
        """The first and last stored minute as RFC 3339 times."""
        if self.span is None:
            return None
        first, last = self.span
        return rfc3339(60 * first), rfc3339(60 * last)


def _utc(epoch_seconds: float) -> str:
    try:
        return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, ValueError, OSError):  # past year 9999
        return f"{epoch_seconds:g} s after 1970"


class MetricHistory:
    def __init__(self, path: str | Path) -> None:
        self._db = open_state_file(Path(path), SCHEMA, timeout_s=10)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(metric_minutes)")}
        for column in MEASURED_COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE metric_minutes ADD COLUMN {column} REAL")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction for a batch of writes. The connection autocommits (isolation_level
        None), where `with connection:` begins nothing: every row would be its own commit and
        sync, and a month of imported history took minutes."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # also when COMMIT itself failed (a full disk)
                self._db.execute("ROLLBACK")
            raise

    def add(self, rollups: list[MinuteRollup]) -> None:
        rows = [
            (
                r.namespace,
                r.service,
                r.revision,
                r.minute,
                r.requests,
                r.avg_concurrency,
                r.peak_concurrency,
                r.p95_latency,
                r.ready_replicas,
                r.cpu_cores,
                r.memory_bytes,
                r.gpu_percent,
                r.mean_rt,
            )
            for r in rollups
        ]
        columns = ", ".join(("namespace", "service", "revision", "minute", *FIELDS))
        marks = ", ".join("?" * (4 + len(FIELDS)))
        with self._transaction():
            self._db.executemany(
                f"INSERT OR REPLACE INTO metric_minutes ({columns}) VALUES ({marks})", rows
            )

    def import_series(
        self,
        namespace: str,
        service: str,
        epoch_seconds: np.ndarray,
        values: np.ndarray,
        field: str = "avg_concurrency",
        *,
        now_epoch: float,
    ) -> ImportedHistory:
        """Store an external series (CSV, Prometheus) as this service's history under the
        pseudo-revision `<service>-imported`. All or nothing: a bad value or a time in the
        future raises ValueError naming its index and writes nothing. NaN values (minutes
        without a sample) and minutes older than the retention are left out: the next prune
        would delete them anyway, so the user hears of it now rather than from an empty
        forecast."""
        if field not in ("requests", "avg_concurrency"):
            raise ValueError(f"can import requests or avg_concurrency, not {field!r}")
        stamps = np.asarray(epoch_seconds, dtype=float)
        v = np.asarray(values, dtype=float)
        if stamps.ndim != 1 or stamps.shape != v.shape:
            raise ValueError("timestamps and values must be two lists of the same length")
        bad = np.flatnonzero(~np.isfinite(stamps) | (stamps < 0))
        if bad.size:
            i = int(bad[0])
            problem = f"timestamps[{i}] = {float(stamps[i])}"
            raise ValueError(f"{problem}: not a time (epoch seconds >= 0)")
        future = np.flatnonzero(stamps > now_epoch + FUTURE_SLACK_S)
        if future.size:
            i = int(future[0])
            raise ValueError(f"timestamps[{i}] = {_utc(stamps[i])} is in the future")
        bad = np.flatnonzero(np.isinf(v) | (v < 0))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"values[{i}] = {float(v[i])}: {field} is a finite number >= 0")
        minutes = stamps.astype(np.int64) // 60
        present = ~np.isnan(v)
        kept = present & (minutes >= int(now_epoch - RETENTION_DAYS * 86400) // 60)
        too_old = int(present.sum() - kept.sum())
        if too_old and not kept.any():
            raise ValueError(
                f"all {too_old} minutes are older than the {RETENTION_DAYS} days of history "
                f"tidal keeps (the newest is {_utc(float(stamps[present].max()))}); "
                "nothing imported"
            )
        rows = [
            MinuteRollup(
                namespace,
                service,
                f"{service}-imported",
                int(minute),
                float(value) if field == "requests" else 0.0,
                float(value) if field == "avg_concurrency" else 0.0,
                float(value) if field == "avg_concurrency" else 0.0,
                None,
                None,
            )
            for minute, value in zip(minutes[kept], v[kept], strict=True)
        ]
        self.add(rows)
        span = (int(minutes[kept].min()), int(minutes[kept].max())) if rows else None
        return ImportedHistory(len(rows), too_old, span)

    def service_series(
        self, namespace: str, service: str, field: str, start_minute: int, end_minute: int
    ) -> np.ndarray:
        """One value per minute in [start, end), summed over the service's revisions; NaN where
        nothing was recorded. `field` is a column or one of WEIGHTED."""
        if field not in FIELDS and field not in WEIGHTED:
            raise ValueError(f"unknown field {field!r}")
        series = np.full(end_minute - start_minute, np.nan)
        rows = self._db.execute(
            # `field` is one of FIELDS or WEIGHTED (checked above), never user text.
            f"SELECT minute, SUM({field}) FROM metric_minutes "
            "WHERE namespace=? AND service=? AND minute>=? AND minute<? GROUP BY minute",
            (namespace, service, start_minute, end_minute),
        )
        for minute, value in rows:
            series[minute - start_minute] = value
        return series

    def first_minute(self, namespace: str, service: str) -> int | None:
        (first,) = self._db.execute(
            "SELECT MIN(minute) FROM metric_minutes WHERE namespace=? AND service=?",
            (namespace, service),
        ).fetchone()
        return first

    def add_ready_time(
        self, namespace: str, service: str, revision: str, pool: str, at: float, seconds: float
    ) -> None:
        self._db.execute(
            "INSERT INTO ready_times VALUES (?, ?, ?, ?, ?, ?)",
            (namespace, service, revision, pool, at, seconds),
        )

    def ready_times(self, namespace: str, service: str, limit: int = 200) -> list[float]:
        """The most recent start → ready durations of the service's replicas, in seconds."""
        rows = self._db.execute(
            "SELECT seconds FROM ready_times WHERE namespace=? AND service=? "
            "ORDER BY at DESC LIMIT ?",
            (namespace, service, limit),
        )
        return [seconds for (seconds,) in rows]

    def start_span(self, span: ReplicaSpan) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO replica_spans VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                span.replica_id,
                span.service,
                span.revision,
                span.pool,
                span.gpus,
                span.started,
                span.stopped,
            ),
        )

    def stop_span(self, replica_id: str, at: float) -> None:
        self._db.execute(
            "UPDATE replica_spans SET stopped=? WHERE replica_id=? AND stopped IS NULL",
            (at, replica_id),
        )

    def spans(self) -> list[ReplicaSpan]:
        return [ReplicaSpan(*row) for row in self._db.execute("SELECT * FROM replica_spans")]

    def close_open_spans(self) -> float | None:
        """After a restart: replicas of the previous run died with it. End their spans at the
        last minute that run recorded (the best estimate of when it stopped); returns it."""
        (last,) = self._db.execute("SELECT MAX(minute) FROM metric_minutes").fetchone()
        if last is None:
            return None
        end = (last + 1) * 60.0
        self._db.execute(
            "UPDATE replica_spans SET stopped=MAX(started, ?) WHERE stopped IS NULL", (end,)
        )
        return end

    def prune(self, now_epoch: float) -> None:
        cutoff = now_epoch - RETENTION_DAYS * 86400
        with self._transaction():
            self._db.execute("DELETE FROM metric_minutes WHERE minute < ?", (int(cutoff) // 60,))
            self._db.execute("DELETE FROM ready_times WHERE at < ?", (cutoff,))
            self._db.execute("DELETE FROM replica_spans WHERE stopped < ?", (cutoff,))
