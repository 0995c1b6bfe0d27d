from __future__ import annotations

import math
import re

import numpy as np
import pytest

from tidal.controller.history import HistoryRecorder, histogram_quantile
from tidal.store.history import MetricHistory, MinuteRollup, ReplicaSpan

NOW = 86400.0 * 50  # the importing clock of the tests below


def rollup(revision: str, minute: int, concurrency: float) -> MinuteRollup:
    return MinuteRollup("default", "svc", revision, minute, 10.0, concurrency, concurrency, None, 1)


def test_service_series_sums_revisions_and_marks_gaps(tmp_path):
    history = MetricHistory(tmp_path / "h.db")
    history.add(
        [
            rollup("svc-00001", 100, 2.0),
            rollup("svc-00002", 100, 3.0),
            rollup("svc-00001", 102, 4.0),
        ]
    )
    series = history.service_series("default", "svc", "avg_concurrency", 100, 104)
    assert series[0] == 5.0 and series[2] == 4.0
    assert math.isnan(series[1]) and math.isnan(series[3])
    assert history.first_minute("default", "svc") == 100
    history.close()
    # Survives a reopen (it lives in the state file).
    reopened = MetricHistory(tmp_path / "h.db")
    assert reopened.service_series("default", "svc", "requests", 100, 101)[0] == 20.0


def test_import_ready_times_and_prune(tmp_path):
    history = MetricHistory(tmp_path / "h.db")
    now = 100 * 86400.0
    times = np.array([now - 40 * 86400, now - 60, now])
    imported = history.import_series(
        "default", "svc", times, np.array([1.0, np.nan, 3.0]), now_epoch=now
    )
    # The 40-day-old minute is past the retention: left out and counted, not stored.
    assert (imported.minutes, imported.too_old) == (1, 1)
    assert imported.bounds() == ("1970-04-11T00:00:00Z", "1970-04-11T00:00:00Z")
    history.add_ready_time("default", "svc", "svc-00001", "local", now - 5, 1.5)
    history.add_ready_time("default", "svc", "svc-00001", "local", now, 2.5)
    assert history.ready_times("default", "svc") == [2.5, 1.5]
    history.prune(now)
    start = int(now // 60) - 1
    assert history.service_series("default", "svc", "avg_concurrency", start, start + 2)[1] == 3.0
    assert history.first_minute("default", "svc") == int(now // 60)


@pytest.mark.parametrize(
    ("stamps", "values", "problem"),
    [
        ([NOW - 60, NOW], [1.0, -2.0], "values[1] = -2.0: avg_concurrency is a finite number >= 0"),
        ([NOW - 60, NOW], [1.0, math.inf], "values[1] = inf"),
        (
            [NOW - 60, NOW + 86400],
            [1.0, 1.0],
            "timestamps[1] = 1970-02-21 00:00 UTC is in the future",
        ),
        ([NOW, 1e300], [1.0, 1.0], "timestamps[1] = 1e+300 s after 1970 is in the future"),
        ([math.nan, NOW], [1.0, 1.0], "timestamps[0] = nan: not a time"),
        ([-60.0, NOW], [1.0, 1.0], "timestamps[0] = -60.0: not a time"),
        ([NOW - 40 * 86400], [1.0], "all 1 minutes are older than the 35 days"),
        ([NOW, NOW], [1.0], "two lists of the same length"),
    ],
)
def test_a_bad_import_names_the_problem_and_writes_nothing(tmp_path, stamps, values, problem):
    history = MetricHistory(tmp_path / "h.db")
    history.import_series("default", "svc", np.array([NOW - 120]), np.array([7.0]), now_epoch=NOW)
    with pytest.raises(ValueError, match=re.escape(problem)):
        history.import_series("default", "svc", np.array(stamps), np.array(values), now_epoch=NOW)
    minute = int(NOW // 60)
    series = history.service_series("default", "svc", "avg_concurrency", minute - 2, minute + 1)
    assert series[0] == 7.0 and np.isnan(series[1:]).all()


def test_histogram_quantile_interpolates_like_prometheus():
    # 100 requests: 50 under 0.1 s, 40 more under 0.5 s, 10 more under 1 s.
    cumulative = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, cumulative) == 0.1
    assert math.isclose(histogram_quantile(0.95, cumulative), 0.75)
    assert histogram_quantile(0.95, {0.1: 0.0, math.inf: 0.0}) is None


def test_recorder_writes_one_row_per_minute(tmp_path):
    history = MetricHistory(tmp_path / "h.db")
    recorder = HistoryRecorder(history)
    base = 6000 * 60.0
    for second in range(60):
        recorder.observe(
            "default",
            "svc",
            "svc-00001",
            base + second,
            2.0 if second < 30 else 4.0,
            requests=1,
            peak=5 if second == 10 else 3,
            ready=2,
        )
    recorder.observe("default", "svc", "svc-00001", base + 60, 0.0, 0, 0, 2)  # next minute
    recorder.write()  # the scaling loop writes the minutes that ended once per second
    series = {
        f: history.service_series("default", "svc", f, 6000, 6002)
        for f in ("requests", "avg_concurrency", "peak_concurrency", "ready_replicas")
    }
    assert series["requests"][0] == 60
    assert series["avg_concurrency"][0] == 3.0
    assert series["peak_concurrency"][0] == 5
    assert series["ready_replicas"][0] == 2
    assert math.isnan(series["requests"][1])  # still open


def test_replica_spans_are_closed_at_the_last_recorded_minute_after_a_restart(tmp_path):
    history = MetricHistory(tmp_path / "h.db")
    history.add([rollup("svc-00001", 1000, 1.0)])  # the old run's last minute: 1000
    history.start_span(ReplicaSpan("a", "svc", "svc-00001", "local", 0, 59_000.0, None))
    history.start_span(ReplicaSpan("b", "svc", "svc-00001", "local", 1, 59_100.0, None))
    history.stop_span("b", 59_200.0)
    assert history.close_open_spans() == 1001 * 60.0
    spans = {s.replica_id: s for s in history.spans()}
    assert spans["a"].stopped == 1001 * 60.0
    assert spans["b"].stopped == 59_200.0 and spans["b"].gpus == 1


def test_a_full_store_keeps_the_minutes_and_writes_them_once_it_has_room(tmp_path):
    """A full disk must not stop the scaling loop that calls `write` every second: the ended
    minutes are kept and stored once the file can grow again (SQLite's `max_page_count` makes
    the file full, as a full disk does: "database or disk is full")."""
    history = MetricHistory(tmp_path / "h.db")
    pages = history._db.execute("PRAGMA page_count").fetchone()[0]
    history._db.execute(f"PRAGMA max_page_count = {pages}")
    recorder = HistoryRecorder(history)
    for second in range(60 * 40):  # 40 revisions' minutes, more than the file has room for
        recorder.begin_second()
        for r in range(40):
            recorder.observe("default", "svc", f"svc-{r:05d}", 6000.0 + second, 1.0, 1, 1, 1)
        recorder.write()  # raises nothing while full
    assert recorder._due  # kept, not dropped
    stored = history.service_series("default", "svc", "requests", 100, 139)
    assert np.isnan(stored[10:]).all()  # the file was full after its first pages

    history._db.execute(f"PRAGMA max_page_count = {pages * 1000}")
    recorder.write()
    assert not recorder._due
    series = history.service_series("default", "svc", "requests", 100, 139)
    assert (series == 40 * 60).all()  # 39 ended minutes of all 40 revisions, none lost
