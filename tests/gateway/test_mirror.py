"""A second gateway's router follows the controller's snapshot exactly."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from tidal.gateway.activator import Endpoint, RevisionThrottler
from tidal.gateway.mirror import ControllerLink, apply_snapshot, collect_stats, routing_snapshot
from tidal.gateway.routing import TrafficRouter


def controller_router() -> TrafficRouter:
    router = TrafficRouter()
    for revision in ("hello-00001", "hello-00002"):
        throttler = RevisionThrottler("default", "hello", revision, 4, 30.0, 40)
        throttler.add_endpoint(Endpoint(f"{revision}-a", "127.0.0.1", 9001))
        router.throttlers[f"default/{revision}"] = throttler
    router.set_hosts(
        set(),
        {
            "hello.default.example.com": [("default/hello-00001", 80), ("default/hello-00002", 20)],
            "canary-hello.default.example.com": [("default/hello-00002", 100)],
        },
    )
    return router


def mirrored(snapshot: dict) -> tuple[TrafficRouter, list[str]]:
    pokes: list[str] = []
    router = TrafficRouter()
    apply_snapshot(router, json.loads(json.dumps(snapshot)), pokes.append)
    return router, pokes


def test_snapshot_round_trip():
    source = controller_router()
    router, _ = mirrored(routing_snapshot(source))
    assert router.hosts == source.hosts
    mirror = router.throttlers["default/hello-00002"]
    assert (mirror.cc, mirror.timeout_s, mirror.queue_depth) == (4, 30.0, 40)
    assert mirror.activator_in_path
    assert [(e.replica_id, e.port) for e in mirror.endpoints] == [("hello-00002-a", 9001)]


def test_changes_follow_drain_removal_and_failure():
    source = controller_router()
    router, _ = mirrored(routing_snapshot(source))
    first = source.throttlers["default/hello-00001"]
    first.drain("hello-00001-a")
    first.add_endpoint(Endpoint("hello-00001-b", "127.0.0.1", 9002))
    source.throttlers["default/hello-00002"].remove_endpoint("hello-00002-a")
    source.throttlers["default/hello-00002"].fail("revision hello-00002 failed: ExitCode1")
    del source.throttlers["default/hello-00001"]
    source.throttlers["default/hello-00001"] = first
    apply_snapshot(router, routing_snapshot(source), lambda key: None)
    mirror = router.throttlers["default/hello-00001"]
    assert {e.replica_id: e.draining for e in mirror.endpoints} == {
        "hello-00001-a": True,
        "hello-00001-b": False,
    }
    second = router.throttlers["default/hello-00002"]
    assert second.endpoints == [] and "ExitCode1" in (second.failure or "")
    source.throttlers.pop("default/hello-00002")
    apply_snapshot(router, routing_snapshot(source), lambda key: None)
    assert "default/hello-00002" not in router.throttlers


async def test_first_request_pokes_and_stats_carry_in_flight():
    source = controller_router()
    source.throttlers["default/hello-00001"].endpoints.clear()
    router, pokes = mirrored(routing_snapshot(source))
    throttler = router.throttlers["default/hello-00002"]
    endpoint = await throttler.acquire(deadline=1e12)
    stats = collect_stats(router, 0.0, 1.0)
    assert stats["default/hello-00002"]["inFlight"] == {"hello-00002-a": 1}
    assert stats["default/hello-00002"]["requests"] == 1
    throttler.release(endpoint)
    waiting = asyncio.ensure_future(router.throttlers["default/hello-00001"].acquire(1e12))
    await asyncio.sleep(0)
    assert pokes == ["default/hello-00001"]
    waiting.cancel()


async def test_a_state_the_gateway_cannot_read_keeps_the_last_one(caplog) -> None:
    # As from a controller of another tidal version in a rolling upgrade: the gateway routes
    # with the state it holds, says why, and takes the next state it can read.
    good = routing_snapshot(controller_router())
    unreadable = json.loads(json.dumps(good))
    del unreadable["revisions"]["default/hello-00002"]["activatorInPath"]
    answers = [good, unreadable, unreadable, good]

    async def state(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return web.json_response({**answer, "epoch": "e", "version": 4 - len(answers)})

    app = web.Application()
    app.router.add_get("/apis/tidal.dev/v1/gateway/state", state)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    router = TrafficRouter()
    link = ControllerLink(router, f"http://127.0.0.1:{port}", "gw-test")
    try:
        await link.start()
        assert set(router.throttlers) == {"default/hello-00001", "default/hello-00002"}
        for _ in range(100):
            if len(answers) == 1 and link.version == 3:
                break
            await asyncio.sleep(0.05)
        assert link.version == 3, "the readable state after the unreadable ones was taken"
        assert "routing state this gateway cannot read" in caplog.text
        assert "KeyError('activatorInPath')" in caplog.text
        assert router.hosts["hello.default.example.com"].revisions
    finally:
        await link.close()
        await runner.cleanup()
