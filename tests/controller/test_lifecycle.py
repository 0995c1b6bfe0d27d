"""A revision's lifecycle through the Platform, on a fake runtime and a fake clock: start,
ready, fail, back-off, drain, replace (tidal.controller.workload)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.controller.fakes import clock_of, decide, make_platform, runtime_of, service, settle
from tidal.api.errors import InvalidSpec
from tidal.controller.platform import Platform
from tidal.controller.workload import CRASH_LOOP_LIMIT, TRANSITIONS, Lifecycle
from tidal.runtime.base import ReplicaState

KEY = "default/hello-00001"


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = make_platform(tmp_path)
    yield platform
    await platform.stop()


async def started(platform: Platform) -> str:
    """Apply hello; its first decision (initial scale 1) starts one replica: its id."""
    platform.apply([service()])
    await decide(platform)
    running = runtime_of(platform).running()
    assert len(running) == 1, running
    return running[0]


def stored_status(platform: Platform, kind: str, name: str) -> dict:
    doc = platform.store.get(kind, "default", name)
    assert doc is not None
    return doc["status"]


async def test_a_replica_that_becomes_ready_serves_and_marks_the_revision_ready(
    platform: Platform,
) -> None:
    replica = await started(platform)
    handle = platform.revisions[KEY]
    assert handle.workload.state is Lifecycle.DEPLOYING
    assert platform.router.throttlers[KEY] is handle.throttler
    runtime_of(platform).ready(replica)
    assert handle.workload.state is Lifecycle.READY
    assert [e.replica_id for e in handle.throttler.endpoints] == [replica]
    assert stored_status(platform, "Revision", "hello-00001")["everReady"] is True
    service_status = stored_status(platform, "Service", "hello")
    assert service_status["latestReadyRevisionName"] == "hello-00001"
    assert service_status["conditions"] == [{"type": "Ready", "status": "True"}]


async def test_a_replica_that_exits_before_ever_ready_fails_the_revision(
    platform: Platform,
) -> None:
    replica = await started(platform)
    runtime_of(platform).exit(replica, code=3)
    workload = platform.workloads[KEY]
    assert workload.state is Lifecycle.FAILED
    assert workload.failed_reason == "ExitCode3"
    assert "Traceback: boom" in workload.failed_message
    assert platform.router.throttlers[KEY].failure is not None  # requests get 503 at once
    condition = stored_status(platform, "Service", "hello")["conditions"][0]
    assert condition["reason"] == "RevisionFailed" and "ExitCode3" in condition["message"]
    await decide(platform)
    assert runtime_of(platform).running() == []  # a failed revision starts nothing


async def test_a_crash_after_ready_backs_off_then_replaces_on_the_clock(
    platform: Platform,
) -> None:
    runtime = runtime_of(platform)
    first = await started(platform)
    runtime.ready(first)
    workload = platform.workloads[KEY]
    for streak in range(1, CRASH_LOOP_LIMIT + 1):
        runtime.exit(runtime.running()[0])
        assert workload.state is Lifecycle.BACKING_OFF
        platform.place()
        await settle()
        assert runtime.running() == [], "no replacement during the back-off"
        clock_of(platform).advance(workload.next_start_at - clock_of(platform).now())
        platform.place()
        await settle()
        assert len(runtime.running()) == 1, f"replaced once the back-off passed ({streak})"
        # the replacement fails before ready: the streak grows, and so does the back-off
        if streak < CRASH_LOOP_LIMIT:
            assert workload.crash_streak == streak - 1
    assert workload.crash_streak == CRASH_LOOP_LIMIT - 1
    runtime.exit(runtime.running()[0])
    assert workload.crash_streak == CRASH_LOOP_LIMIT
    failure = platform.router.throttlers[KEY].failure
    assert failure is not None and "in a row failed before ready" in failure
    clock_of(platform).advance(workload.next_start_at - clock_of(platform).now())
    platform.place()
    await settle()
    (replacement,) = runtime.running()
    runtime.ready(replacement)
    assert workload.state is Lifecycle.READY and workload.crash_streak == 0
    assert platform.router.throttlers[KEY].failure is None


async def eventually(condition: Callable[[], bool]) -> None:
    """Drain polls in real time (50 ms): wait for it, up to a second."""
    for _ in range(100):
        await settle()
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 1 s")


async def test_scaling_down_drains_in_flight_requests_before_stopping(
    platform: Platform,
) -> None:
    runtime = runtime_of(platform)
    replica = await started(platform)
    runtime.ready(replica)
    throttler = platform.router.throttlers[KEY]
    endpoint = await throttler.acquire(deadline=1e12)
    platform.workloads[KEY].set_desired(0)
    await settle()
    assert endpoint.draining and runtime.stopped == []  # no new requests; this one goes on
    throttler.release(endpoint)
    await eventually(lambda: bool(runtime.stopped))
    assert runtime.stopped == [replica]
    assert throttler.endpoints == []


async def test_an_unreachable_replica_is_replaced(platform: Platform) -> None:
    runtime = runtime_of(platform)
    replica = await started(platform)
    runtime.ready(replica)
    platform.router.on_unreachable(KEY, replica)  # the gateway could not connect
    await eventually(lambda: replica in runtime.stopped and len(runtime.running()) == 1)
    assert len(runtime.running()) == 1 and runtime.running()[0] != replica
    assert runtime.replicas[replica].state is ReplicaState.STOPPED


async def test_a_new_template_makes_a_new_revision_and_routes_to_it_once_ready(
    platform: Platform,
) -> None:
    runtime = runtime_of(platform)
    runtime.ready(await started(platform))
    changed = service()
    changed["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "V", "value": "2"}]
    platform.apply([changed])
    await decide(platform)
    second = [r for r in runtime.running() if r.startswith("hello-00002")]
    assert len(second) == 1
    host = "hello.default.example.com"
    assert platform.router.hosts[host].revisions == ("default/hello-00001",)
    runtime.ready(second[0])
    assert platform.router.hosts[host].revisions == ("default/hello-00002",)
    assert [h.key.name for h in platform.revisions.of_service("default", "hello")] == [
        "hello-00001",
        "hello-00002",
    ]


def named(name: str | None, value: str) -> dict:
    doc = service()
    template = doc["spec"]["template"]
    if name is not None:
        template.setdefault("metadata", {})["name"] = name
    template["spec"]["containers"][0]["env"] = [{"name": "V", "value": value}]
    return doc


async def test_a_revision_name_already_taken_is_refused_with_why(platform: Platform) -> None:
    platform.apply([named("hello-v1", "1")])
    platform.apply([named("hello-00003", "2")])  # takes the name generation 3 would get
    with pytest.raises(InvalidSpec, match="revision 'hello-v1' already exists with a different"):
        platform.apply([named("hello-v1", "3")])
    with pytest.raises(InvalidSpec) as generated:
        platform.apply([named(None, "4")])  # generation 3: hello-00003 is taken
    assert "generated revision name 'hello-00003' is taken" in generated.value.message
    assert generated.value.field == "spec.template.metadata.name"
    names = [h.key.name for h in platform.revisions.of_service("default", "hello")]
    assert names == ["hello-v1", "hello-00003"], "the refusals stored nothing"


async def ready_revision(platform: Platform, doc: dict, revision: str) -> None:
    platform.apply([doc])
    await decide(platform)
    runtime = runtime_of(platform)
    for replica in runtime.running():
        if replica.startswith(revision):
            runtime.ready(replica)
    assert stored_status(platform, "Service", "hello")["latestReadyRevisionName"] == revision


async def test_a_named_template_applied_again_makes_its_revision_the_latest(
    platform: Platform,
) -> None:
    """Re-applying the old manifest rolls back, as in Knative: no new revision, the old one is
    the latest created and, being ready, the latest ready and routed."""
    host = "hello.default.example.com"
    await ready_revision(platform, named("hello-v1", "1"), "hello-v1")
    await ready_revision(platform, named("hello-v2", "2"), "hello-v2")
    assert platform.router.hosts[host].revisions == ("default/hello-v2",)

    assert platform.apply_detailed([named("hello-v1", "1")])[0][1] == "configured"
    status = stored_status(platform, "Service", "hello")
    assert status["latestCreatedRevisionName"] == status["latestReadyRevisionName"] == "hello-v1"
    assert platform.router.hosts[host].revisions == ("default/hello-v1",)
    names = [h.key.name for h in platform.revisions.of_service("default", "hello")]
    assert names == ["hello-v1", "hello-v2"], "no new revision"
    platform.status_changed(platform.workloads["default/hello-v2"])  # ready, and newer
    assert stored_status(platform, "Service", "hello")["latestReadyRevisionName"] == "hello-v1"
    assert platform.apply_detailed([named("hello-v1", "1")])[0][1] == "unchanged"

    platform.apply([named(None, "3")])  # a new template: generation 3, after hello-v2's 2
    assert stored_status(platform, "Service", "hello")["latestCreatedRevisionName"] == (
        "hello-00003"
    )


def test_lifecycle_moves_only_as_the_table_allows() -> None:
    assert TRANSITIONS[Lifecycle.CLOSED] == frozenset()
    for state in Lifecycle:
        if state is not Lifecycle.CLOSED:
            assert Lifecycle.CLOSED in TRANSITIONS[state], f"{state} can be closed"
    assert Lifecycle.FAILED not in TRANSITIONS[Lifecycle.READY]  # a ready revision backs off


async def test_a_closed_revision_starts_nothing_whatever_it_is_asked(platform: Platform) -> None:
    runtime = runtime_of(platform)
    runtime.ready(await started(platform))
    workload = platform.workloads[KEY]
    await workload.close()
    assert workload.state is Lifecycle.CLOSED and runtime.running() == []
    workload.set_desired(2)
    platform.place()
    await settle()
    assert runtime.running() == []
    with pytest.raises(RuntimeError, match="no move Closed -> Ready"):
        workload._enter(Lifecycle.READY)


async def test_what_happens_to_a_replica_is_told_as_its_pods_events(
    platform: Platform,
) -> None:
    """The scheduler's and kubelet's events for a pod (kubectl describe pod): placed, started,
    a failed readiness probe, a sidecar in back-off, and a stop."""
    heard: list[tuple[str, str, str, str, str]] = []
    platform.replica_event_listeners.append(lambda *event: heard.append(event))
    runtime = runtime_of(platform)
    replica = await started(platform)
    runtime.ready(replica)
    live = runtime.replicas[replica]
    live.state = ReplicaState.NOT_READY
    runtime.listeners[replica](live)  # its readiness probe failed
    live.down, live.last_exit = {"puller": "CrashLoopBackOff"}, {"puller": 3}
    runtime.listeners[replica](live)  # and a sidecar is waiting to be restarted
    live.down = {}
    runtime.ready(replica)  # ready again: no new start, no second Ready Time
    assert len(platform.history.ready_times("default", "hello")) == 1
    platform.workloads[KEY].stop(replica)
    await settle()
    assert [(kind, reason) for _, _, kind, reason, _ in heard] == [
        ("Normal", "Scheduled"),
        ("Normal", "Started"),
        ("Warning", "Unhealthy"),
        ("Warning", "BackOff"),
        ("Normal", "Killing"),
    ]
    assert {(namespace, pod) for namespace, pod, *_ in heard} == {("default", replica)}
    messages = [message for *_, message in heard]
    assert messages[0] == f"Successfully assigned default/{replica} to local"
    assert messages[3] == (
        f"Back-off restarting failed container puller in pod {replica} (it exited with code 3)"
    )
    assert messages[4] == "Stopping container user-container"
