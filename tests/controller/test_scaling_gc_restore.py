"""The scaling loop, GC and restart recovery through the Platform, on a fake runtime and a fake
clock (tidal.controller.scaling, tidal.controller.platform)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.controller.fakes import (
    decide,
    make_platform,
    runtime_of,
    service,
    settle,
    zero_initial_scale,
)
from tidal.api.config import GCConfig, PlatformConfig
from tidal.api.errors import InvalidSpec
from tidal.controller.platform import Platform
from tidal.controller.workload import Lifecycle
from tidal.store.sqlite import Store

KEY = "default/hello-00001"
ZERO = {"autoscaling.knative.dev/initial-scale": "0"}
LONG_AGO = "2020-01-01T00:00:00Z"


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = make_platform(tmp_path, zero_initial_scale(PlatformConfig()))
    yield platform
    await platform.stop()


async def test_a_request_at_zero_pokes_the_autoscaler_and_a_replica_starts(
    platform: Platform,
) -> None:
    platform.apply([service(**ZERO)])
    await decide(platform)
    assert runtime_of(platform).running() == []
    throttler = platform.router.throttlers[KEY]
    waiting = asyncio.ensure_future(throttler.acquire(deadline=1e12))
    await settle()  # the first request at zero decides at once: one replica
    assert platform.workloads[KEY].desired == 1
    (replica,) = runtime_of(platform).running()
    runtime_of(platform).ready(replica)
    await settle()
    assert waiting.done() and waiting.result().replica_id == replica
    throttler.release(waiting.result())


async def test_idle_revisions_at_zero_are_not_decided_until_something_happens(
    platform: Platform,
) -> None:
    platform.apply([service(**ZERO)])
    handle = platform.revisions[KEY]
    ticks = []
    tick = handle.autoscaler.tick
    handle.autoscaler.tick = lambda *a, **k: ticks.append(a) or tick(*a, **k)  # type: ignore[method-assign]
    for _ in range(100):  # past the stable window and the scale-to-zero grace period
        await decide(platform)
    assert handle.idle, "settled at zero"
    settled = len(ticks)
    for _ in range(10):
        await decide(platform)
    assert len(ticks) == settled, "no decision while idle"
    platform.scaling.poke(KEY)  # a first request
    assert not handle.idle and platform.workloads[KEY].desired == 1
    assert len(ticks) == settled + 1


async def test_a_change_of_reachability_wakes_an_idle_revision(platform: Platform) -> None:
    platform.apply([service(**ZERO)])
    handle = platform.revisions[KEY]
    for _ in range(100):
        await decide(platform)
    assert handle.idle
    handle.reachable = False
    assert not handle.idle


async def test_the_pending_cap_follows_the_activators_place_in_the_path(
    platform: Platform,
) -> None:
    # Target burst capacity 0: once a replica is ready the KPA's SKS mode is Serve and the
    # activator leaves the path (docs/autoscaling.md#activator-and-queue-proxy).
    doc = service(**ZERO, **{"autoscaling.knative.dev/target-burst-capacity": "0"})
    doc["spec"]["template"]["spec"]["containerConcurrency"] = 2
    platform.apply([doc])
    throttler = platform.router.throttlers[KEY]
    # At zero the activator holds up to its queue depth (gateway.pending-cap-default).
    assert throttler.activator_in_path and throttler.pending_cap == 10_000
    waiting = asyncio.ensure_future(throttler.acquire(deadline=1e12))
    await settle()
    (replica,) = runtime_of(platform).running()
    runtime_of(platform).ready(replica)
    await settle()
    throttler.release(waiting.result())
    await decide(platform)
    # Out of the path: the ready replica's queue-proxy holds 10 x CC.
    assert not throttler.activator_in_path and throttler.pending_cap == 20


async def test_gc_collects_old_revisions_of_the_changed_service_only(tmp_path: Path) -> None:
    gc = GCConfig(  # none is old enough to go by age: only max-non-active collects
        retain_since_create_time_s=3600.0,
        retain_since_last_active_time_s=None,
        min_non_active_revisions=0,
        max_non_active_revisions=1,
    )
    platform = make_platform(tmp_path, replace(zero_initial_scale(PlatformConfig()), gc=gc))
    try:
        runtime = runtime_of(platform)
        for version in range(1, 4):
            doc = service()
            doc["spec"]["template"]["spec"]["containers"][0]["env"] = [
                {"name": "V", "value": str(version)}
            ]
            platform.apply([doc, service("other")] if version == 1 else [doc])
            await decide(platform)
            for replica in runtime.running():
                if runtime.replicas[replica].ever_ready is False:
                    runtime.ready(replica)
        await settle()
        names = [h.key.name for h in platform.revisions.of_service("default", "hello")]
        assert names == ["hello-00002", "hello-00003"], "one non-active revision kept"
        assert "default/hello-00001" not in platform.router.throttlers
        assert platform.store.get("Revision", "default", "hello-00001") is None
        assert "default/other-00001" in platform.revisions
        assert platform.collect_garbage() == []  # the periodic pass finds nothing more
    finally:
        await platform.stop()


async def test_a_restarted_platform_recovers_revisions_and_starts_replicas_after_restore(
    tmp_path: Path,
) -> None:
    first = make_platform(tmp_path)
    first.apply([service(), service("idle", **{"autoscaling.knative.dev/max-scale": "3"})])
    await decide(first)
    for replica in runtime_of(first).running():
        if replica.startswith("hello"):
            runtime_of(first).ready(replica)
        else:
            runtime_of(first).exit(replica, code=2)  # never ready: failed
    await first.stop()

    second = make_platform(tmp_path)
    try:
        second.restore()
        assert runtime_of(second).running() == [], "restore starts nothing itself"
        hello, idle = second.workloads[KEY], second.workloads["default/idle-00001"]
        assert hello.state is Lifecycle.READY and hello.desired == 1
        assert idle.state is Lifecycle.FAILED and idle.failed_reason == "ExitCode2"
        assert second.router.throttlers["default/idle-00001"].failure is not None
        assert second.router.hosts["hello.default.example.com"].revisions == (KEY,)
        await settle()
        assert [r.split("-")[0] for r in runtime_of(second).running()] == ["hello"]
    finally:
        await second.stop()


def routing_meta(platform: Platform, name: str) -> tuple[str | None, str | None, str | None]:
    """A stored revision's routingState label, routingStateModified and routes annotation."""
    meta = platform.store.get("Revision", "default", name)["metadata"]
    annotations = meta["annotations"]
    return (
        meta["labels"].get("serving.knative.dev/routingState"),
        annotations.get("serving.knative.dev/routingStateModified"),
        annotations.get("serving.knative.dev/routes"),
    )


def hello_version(value: str) -> dict:
    """Service hello whose template differs by `value`: each value is a revision."""
    doc = service()
    doc["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "V", "value": value}]
    return doc


async def apply_ready(platform: Platform, value: str) -> None:
    """Apply `hello_version(value)` and let its replicas become ready."""
    platform.apply([hello_version(value)])
    await decide(platform)
    for replica in runtime_of(platform).running():
        runtime_of(platform).ready(replica)
    await decide(platform)


async def test_revisions_carry_knatives_routing_state(tmp_path: Path) -> None:
    platform = make_platform(tmp_path)
    try:
        await apply_ready(platform, "1")
        await apply_ready(platform, "2")
        first, second = routing_meta(platform, "hello-00001"), routing_meta(platform, "hello-00002")
        assert (first[0], first[2]) == ("reserve", None)  # no longer routed
        assert (second[0], second[2]) == ("active", "hello")
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m[1]) for m in (first, second))
        platform.apply([hello_version("3")])  # never ready: the route stays on hello-00002
        assert routing_meta(platform, "hello-00003")[0] == "pending"
    finally:
        await platform.stop()
    store = Store(tmp_path / "tidal.db")  # as if changed long ago, to see a rewrite
    for revision in store.list("Revision"):
        revision["metadata"]["annotations"]["serving.knative.dev/routingStateModified"] = LONG_AGO
        store.put(revision)
    store.close()
    names = ("hello-00001", "hello-00002", "hello-00003")
    second_run = make_platform(tmp_path)
    try:
        second_run.restore()
        await decide(second_run)
        after = [routing_meta(second_run, name) for name in names]
        assert after == [
            ("reserve", LONG_AGO, None),
            ("active", LONG_AGO, "hello"),
            ("pending", LONG_AGO, None),
        ], "a restart changes no routing state"
    finally:
        await second_run.stop()


@pytest.mark.parametrize(
    ("modified", "collected"),
    [
        (LONG_AGO, True),
        ("1577836800.0", True),  # 2020 in epoch seconds, as earlier tidal versions wrote it
        ("2999-01-01T00:00:00Z", False),
    ],
)
async def test_gc_reads_when_a_revision_was_last_routed(
    tmp_path: Path, modified: str, collected: bool
) -> None:
    gc = GCConfig(
        retain_since_create_time_s=None,
        retain_since_last_active_time_s=3600.0,
        min_non_active_revisions=0,
        max_non_active_revisions=None,
    )
    platform = make_platform(tmp_path, replace(zero_initial_scale(PlatformConfig()), gc=gc))
    try:
        await apply_ready(platform, "1")
        await apply_ready(platform, "2")
        old = platform.store.get("Revision", "default", "hello-00001")  # reserve since now
        annotations = old["metadata"]["annotations"]
        annotations["serving.knative.dev/routingStateModified"] = modified
        platform.store.put(old)
        platform.collect_garbage()
        gone = platform.store.get("Revision", "default", "hello-00001") is None
        assert gone == collected
    finally:
        await platform.stop()


async def applied_and_stopped(data_dir: Path, *applies: list[dict]) -> None:
    """A platform that applied each list in turn and decided once, stopped: its state stays."""
    first = make_platform(data_dir)
    for docs in applies:
        first.apply(docs)
    await decide(first)
    await first.stop()


def edit_stored_hello(
    data_dir: Path, edit: Callable[[dict], object], kind: str = "Service", name: str = "hello"
) -> None:
    """Change the stored Service hello (or another object) as an older version of tidal might
    have left it."""
    store = Store(data_dir / "tidal.db")
    stored = store.get(kind, "default", name)
    edit(stored)
    store.put(stored)
    store.close()


async def test_a_stored_service_no_longer_valid_is_not_run_and_says_so(tmp_path: Path) -> None:
    await applied_and_stopped(tmp_path, [service()])

    # A rule added since the apply (here: no NUL in an environment value) refuses it now, in
    # the Service and in the revision made from it.
    def nul_in_env(pod: dict) -> None:
        pod["containers"][0]["env"] = [{"name": "X", "value": "a\0"}]

    edit_stored_hello(tmp_path, lambda stored: nul_in_env(stored["spec"]["template"]["spec"]))
    edit_stored_hello(
        tmp_path, lambda stored: nul_in_env(stored["spec"]), "Revision", "hello-00001"
    )

    second = make_platform(tmp_path)
    try:
        second.restore()
        assert KEY not in second.workloads and "default/hello" not in second.services
        (ready,) = second.store.get("Service", "default", "hello")["status"]["conditions"]
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert "env[0].value: contains a NUL character" in ready["message"]
        second.apply([service()])  # a fixed manifest runs again
        (ready,) = second.store.get("Service", "default", "hello")["status"]["conditions"]
        assert ready["reason"] != "InvalidSpec"
        assert "default/hello" in second.services
    finally:
        await second.stop()


async def test_a_stored_service_with_a_misplaced_annotation_keeps_running(
    tmp_path: Path,
) -> None:
    """The placement rule refuses only what does nothing, so it is not applied on restore."""
    await applied_and_stopped(tmp_path, [service()])
    edit_stored_hello(
        tmp_path,
        lambda stored: stored["metadata"].update(
            annotations={"autoscaling.knative.dev/min-scale": "1"}
        ),
    )

    second = make_platform(tmp_path)
    try:
        second.restore()
        assert KEY in second.workloads and "default/hello" in second.services
        (ready,) = second.store.get("Service", "default", "hello")["status"]["conditions"]
        assert ready["reason"] != "InvalidSpec"
        doc = service()
        doc["metadata"]["annotations"] = {"autoscaling.knative.dev/min-scale": "1"}
        with pytest.raises(InvalidSpec, match="must be put under"):
            second.apply([doc])
    finally:
        await second.stop()


async def test_logs_go_with_their_revision_and_a_restart_removes_leftovers(
    tmp_path: Path,
) -> None:
    await applied_and_stopped(tmp_path, [service()])
    logs = tmp_path / "logs" / "default"  # the fake runtime writes none: stand-ins
    (logs / "hello-00001").mkdir(parents=True)
    (logs / "hello-00001" / "hello-00001-a.log").write_text("loading weights\n")
    (logs / "gone-00003").mkdir()  # of a revision deleted while its replicas were stopping

    second = make_platform(tmp_path)
    try:
        second.restore()
        assert [p.name for p in logs.iterdir()] == ["hello-00001"]
        await settle()  # the restored replica starts
        (running,) = runtime_of(second).running()
        (logs / "hello-00001" / f"{running}.log").write_text("serving\n")
        text = await second.logs("default", "hello", None, 10)
        assert "==> hello-00001/hello-00001-a <== (stopped)\nloading weights" in text
        assert f"==> hello-00001/{running} <==\nserving" in text
        assert second.delete_service("default", "hello")
        await settle()  # its replicas stop, then its logs go
        assert not (logs / "hello-00001").exists()
        assert await second.logs("default", "hello", None, 10) == ""
    finally:
        await second.stop()


def break_hello_00001(data_dir: Path) -> None:
    """Make the stored hello-00001 break a rule added since its apply (an env name with '=')."""
    store = Store(data_dir / "tidal.db")
    old = store.get("Revision", "default", "hello-00001")
    old["spec"]["containers"][0]["env"] = [{"name": "A=B", "value": "x"}]
    store.put(old)
    store.close()


async def test_an_old_revision_no_longer_valid_does_not_stop_the_restart(tmp_path: Path) -> None:
    await applied_and_stopped(  # hello-00001, then hello-00002
        tmp_path, [service()], [service(**{"autoscaling.knative.dev/target": "5"})]
    )
    break_hello_00001(tmp_path)

    second = make_platform(tmp_path)
    try:
        second.restore()
        assert KEY not in second.workloads and "default/hello-00002" in second.workloads
        status = second.store.get("Revision", "default", "hello-00001")["status"]
        (ready,) = status["conditions"]
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert "spec.containers[0].env[0].name: 'A=B'" in ready["message"]
        assert status["desiredReplicas"] == 0
        assert second.router.hosts["hello.default.example.com"].revisions == (
            "default/hello-00002",
        )
    finally:
        await second.stop()


async def test_a_stored_resource_policy_no_longer_valid_does_not_stop_the_restart(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "tidal.db")
    store.put(
        {
            "apiVersion": "scheduling.alibabacloud.com/v1alpha1",
            "kind": "ResourcePolicy",
            "metadata": {"name": "old", "namespace": "default"},
            "spec": {"units": [{"resource": "retired-unit"}]},
        }
    )
    store.close()
    platform = make_platform(tmp_path)
    try:
        platform.restore()
        assert platform.placer.policies == {}
    finally:
        await platform.stop()


def pinned(revision: str) -> dict:
    doc = service(**{"autoscaling.knative.dev/target": "5"})
    doc["spec"]["traffic"] = [{"revisionName": revision, "percent": 100}]
    return doc


async def test_traffic_pinned_to_a_revision_no_longer_valid(tmp_path: Path) -> None:
    # hello-00002 exists; all traffic stays on 00001
    await applied_and_stopped(tmp_path, [service()], [pinned("hello-00001")])
    break_hello_00001(tmp_path)

    second = make_platform(tmp_path)
    try:
        second.restore()  # the service routes only to what cannot run: it is left out
        assert "default/hello" not in second.services
        assert "hello.default.example.com" not in second.router.hosts
        (ready,) = second.store.get("Service", "default", "hello")["status"]["conditions"]
        assert ready["reason"] == "InvalidSpec" and "'hello-00001' is not run" in ready["message"]
        before = second.store.get("Service", "default", "hello")
        with pytest.raises(InvalidSpec, match="'hello-00001' is not run"):
            second.apply([pinned("hello-00001")])
        assert second.store.get("Service", "default", "hello") == before  # nothing stored
        second.apply([pinned("hello-00002")])  # the fix: hello-00002 is taken back and routed
        assert second.router.hosts["hello.default.example.com"].revisions == (
            "default/hello-00002",
        )
        assert KEY not in second.workloads
    finally:
        await second.stop()
