"""The history keeps each minute's measured use and mean RT, and an older state file gains the
columns on open."""

from __future__ import annotations

import math
import sqlite3

from tidal.autoscaler.signals import Usage
from tidal.controller.history import HistoryRecorder
from tidal.store.history import MetricHistory

OLD_SCHEMA = """
CREATE TABLE metric_minutes (
    namespace TEXT NOT NULL, service TEXT NOT NULL, revision TEXT NOT NULL,
    minute INTEGER NOT NULL, requests REAL NOT NULL, avg_concurrency REAL NOT NULL,
    peak_concurrency REAL NOT NULL, p95_latency REAL, ready_replicas REAL,
    PRIMARY KEY (namespace, revision, minute)
);
INSERT INTO metric_minutes VALUES ('default', 'svc', 'svc-00001', 5999, 1, 1, 1, NULL, 1);
"""


def test_minutes_keep_cpu_memory_gpu_and_mean_rt(tmp_path):
    path = tmp_path / "h.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    history = MetricHistory(path)  # an older file: the columns are added, rows kept
    recorder = HistoryRecorder(history)
    base = 6000 * 60.0
    for second in range(60):
        usage = Usage(
            replicas=2, cpu_cores=0.5, memory_bytes=100.0, gpu_percent=120.0, gpu_replicas=2
        )
        latencies = [(0.1, 0.1), (0.3, 0.1)] if second % 2 == 0 else []
        recorder.observe(
            "default", "svc", "svc-00001", base + second, 1.0, 2, 1, 2, usage, latencies
        )
    recorder.observe("default", "svc", "svc-00001", base + 60, 0.0, 0, 0, 2)  # next minute
    recorder.write()  # the scaling loop writes ended minutes once per second

    def series(field):
        return history.service_series("default", "svc", field, 5999, 6002)

    assert series("cpu_cores")[1] == 0.5 and series("memory_bytes")[1] == 100.0
    assert series("gpu_percent")[1] == 60.0
    assert math.isclose(series("mean_rt")[1], 0.2)
    assert series("requests")[0] == 1 and math.isnan(series("cpu_cores")[0])  # the old row
