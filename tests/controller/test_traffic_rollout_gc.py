"""Pure controller logic: traffic resolution (docs/architecture.md#revisions-traffic-and-rollout),
rollout steps, GC rules."""

from __future__ import annotations

import pytest

from tidal.api.config import GCConfig
from tidal.api.errors import InvalidSpec
from tidal.api.service import TrafficTarget
from tidal.controller.gc import RevisionAge, revisions_to_collect
from tidal.controller.rollout import advance, start_rollout
from tidal.controller.traffic import host_table, resolve_traffic


def targets(*items: dict) -> list[TrafficTarget]:
    return [TrafficTarget.model_validate(i) for i in items]


def test_empty_traffic_is_all_to_latest():
    resolved = resolve_traffic([], "hello-00002", {"hello-00001", "hello-00002"})
    assert [(t.revision, t.percent, t.latest) for t in resolved] == [("hello-00002", 100, True)]


def test_split_tags_and_merge():
    resolved = resolve_traffic(
        targets(
            {"revisionName": "hello-00001", "percent": 60},
            {"revisionName": "hello-00001", "percent": 20},
            {"latestRevision": True, "percent": 20, "tag": "canary"},
        ),
        "hello-00002",
        {"hello-00001", "hello-00002"},
    )
    table = host_table("hello", "default", "example.com", resolved)
    assert table["hello.default.example.com"] == [("hello-00001", 80), ("hello-00002", 20)]
    assert table["canary-hello.default.example.com"] == [("hello-00002", 100)]


def test_tag_with_zero_percent_still_gets_its_host():
    resolved = resolve_traffic(
        targets(
            {"latestRevision": True, "percent": 100},
            {"revisionName": "hello-00001", "percent": 0, "tag": "old"},
        ),
        "hello-00002",
        {"hello-00001", "hello-00002"},
    )
    table = host_table("hello", "default", "example.com", resolved)
    assert table["old-hello.default.example.com"] == [("hello-00001", 100)]
    assert table["hello.default.example.com"] == [("hello-00002", 100)]


def test_every_host_has_its_cluster_local_names_and_a_private_service_only_those():
    resolved = resolve_traffic(
        targets({"latestRevision": True, "percent": 100, "tag": "canary"}),
        "hello-00002",
        {"hello-00002"},
    )
    local = [
        "hello.default.svc.cluster.local",
        "hello.default.svc",
        "hello.default",
        "canary-hello.default.svc.cluster.local",
        "canary-hello.default.svc",
        "canary-hello.default",
    ]
    public = host_table("hello", "default", "example.com", resolved)
    assert sorted(public) == sorted(
        [*local, "hello.default.example.com", "canary-hello.default.example.com"]
    )
    assert {tuple(split) for split in public.values()} == {(("hello-00002", 100),)}
    private = host_table("hello", "default", "example.com", resolved, public=False)
    assert sorted(private) == sorted(local)


def test_unknown_revision_is_named():
    with pytest.raises(InvalidSpec) as info:
        resolve_traffic(
            targets({"revisionName": "hello-00009", "percent": 100}), "hello-00001", {"hello-00001"}
        )
    assert info.value.field == "spec.traffic[0].revisionName"
    assert "hello-00009" in info.value.message


def test_rollout_steps_like_knative():
    # D=60s, P=100: after the 1% start, 59 steps of round(99/59)=2 points every second.
    rollout = start_rollout([("v1", 100)], "v2", 100, 60.0, now=1000.0)
    assert rollout is not None
    assert rollout.split == (("v1", 99), ("v2", 1))
    assert (rollout.step_size, rollout.step_duration) == (2, 1.0)
    rollout = advance(rollout, 1001.0)
    assert rollout.split == (("v1", 97), ("v2", 3))
    rollout = advance(rollout, 1030.0)
    assert dict(rollout.split)["v2"] == 61
    rollout = advance(rollout, 1100.0)
    assert rollout.done and rollout.split == (("v2", 100),)


def test_rollout_drains_newest_older_revision_first():
    rollout = start_rollout([("v1", 50), ("v2", 50)], "v3", 100, 10.0, now=0.0)
    assert rollout is not None and rollout.split == (("v1", 50), ("v2", 49), ("v3", 1))
    # 9 steps of round(99/9)=11 points each second; v2 empties before v1 gives anything.
    rollout = advance(rollout, 5.0)
    assert rollout.split == (("v1", 44), ("v3", 56))


def test_no_rollout_without_duration_or_previous():
    assert start_rollout([("v1", 100)], "v2", 100, 0.0, now=0.0) is None
    assert start_rollout([], "v2", 100, 60.0, now=0.0) is None


HOUR = 3600.0


def ages(n: int, now: float, created_hours_ago: float) -> list[RevisionAge]:
    created = now - created_hours_ago * HOUR
    return [RevisionAge(f"r{i:02d}", created + i, created + i, active=False) for i in range(n)]


def test_gc_keeps_min_and_young_revisions():
    now = 1_000_000.0
    config = GCConfig()  # 48h since create, 15h since active, min 20, max 1000
    assert revisions_to_collect(ages(25, now, 1), config, now) == []
    old = revisions_to_collect(ages(25, now, 72), config, now)
    assert old == ["r00", "r01", "r02", "r03", "r04"]  # oldest first, 20 kept


def test_gc_max_and_active_revisions():
    now = 1_000_000.0
    config = GCConfig(
        retain_since_create_time_s=None,
        retain_since_last_active_time_s=None,
        min_non_active_revisions=0,
        max_non_active_revisions=2,
    )
    revisions = [*ages(4, now, 1), RevisionAge("live", 0, 0, active=True)]
    # Both time rules disabled: every non-active revision is stale, min 0 keeps none.
    assert revisions_to_collect(revisions, config, now) == ["r00", "r01", "r02", "r03"]
    config = GCConfig(
        retain_since_create_time_s=HOUR * 100,
        retain_since_last_active_time_s=None,
        min_non_active_revisions=0,
        max_non_active_revisions=2,
    )
    assert revisions_to_collect(revisions, config, now) == ["r00", "r01"]
