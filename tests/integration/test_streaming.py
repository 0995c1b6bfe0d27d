"""Streaming inference end to end: examples/stream behind `tidal up`, server-sent events and a
WebSocket through the gateway, scale from zero, and an open WebSocket keeping its replica."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import REPO, Platform, host, run, wait_until

STREAM_DIR = REPO / "examples" / "stream"


def stream_service(**env: str) -> dict[str, Any]:
    """examples/stream/service.yaml as a user would apply it from the repository root."""
    doc = yaml.safe_load((STREAM_DIR / "service.yaml").read_text())
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["workingDir"] = str(STREAM_DIR)
    container["env"] = [
        {"name": e["name"], "value": env.get(e["name"], e["value"])} for e in container["env"]
    ]
    return doc


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("streaming")).start()
    p.apply(stream_service(MODEL_LOAD_DELAY="0.5", TOKEN_DELAY_MS="100"))
    p.wait_ready("stream")
    yield p
    p.stop()


async def websocket_session(platform: Platform, hold_s: float) -> list[dict[str, Any]]:
    """One WebSocket: a prompt, `hold_s` of silence, a second prompt; the messages received
    and the replicas seen ready while it was silent."""
    seen: list[dict[str, Any]] = []
    url, headers = platform.gateway + "/v1/stream", {"Host": host("stream")}
    async with aiohttp.ClientSession() as session, session.ws_connect(url, headers=headers) as ws:
        assert ws._response.headers["X-Tidal-Revision"] == "stream-00001"
        for prompt in ("the model", "a replica"):
            await ws.send_json({"prompt": prompt, "max_tokens": 5})
            while "done" not in (message := await ws.receive_json(timeout=30)):
                seen.append(message)
            seen.append(message)
            if prompt == "the model":
                deadline = time.monotonic() + hold_s
                while time.monotonic() < deadline:
                    seen.append({"ready_replicas": platform.ready_replicas("stream")})
                    await asyncio.sleep(0.5)
    return seen


def test_websocket_scales_from_zero_and_keeps_its_replica_while_open(platform: Platform) -> None:
    wait_until(lambda: not platform.replicas("stream"), 60, "stream to scale to zero")
    # Silent for longer than the stable window and the scale-to-zero grace (6 s + 1 s here).
    seen = run(websocket_session(platform, hold_s=10))
    tokens = [m["token"] for m in seen if "token" in m]
    assert len(tokens) == 10 and all(t.endswith(" ") for t in tokens)
    assert [m for m in seen if "done" in m] == [
        {"done": True, "tokens": 5, "revision": "stream-00001"}
    ] * 2
    ready = [m["ready_replicas"] for m in seen if "ready_replicas" in m]
    # Sampled through all 10 s of silence; each sample is an admin API call, so a loaded
    # machine takes fewer than the 20 a quiet one does.
    assert len(ready) >= 5 and min(ready) == 1, ready
    # Closed: nothing in flight any more, so back to zero.
    wait_until(lambda: not platform.replicas("stream"), 60, "stream to scale to zero again")
    metrics = text_string_to_metric_families(platform.api("GET", "/metrics")[1].decode())
    answered = {
        sample.labels["code"]: sample.value
        for family in metrics
        if family.name == "tidal_requests"
        for sample in family.samples
        if sample.labels.get("revision") == "stream-00001" and sample.name.endswith("_total")
    }
    assert answered == {"101": 1.0}  # the session, counted once it ended


def test_server_sent_events_stream_token_by_token(platform: Platform) -> None:
    async def completion() -> list[tuple[float, bytes]]:
        events = []
        body = {"prompt": "the model", "max_tokens": 20, "stream": True}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                platform.gateway + "/v1/completions",
                data=json.dumps(body),
                headers={"Host": host("stream")},
            ) as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            async for line in response.content:
                if line.strip():
                    events.append((time.monotonic(), line.strip()))
        return events

    events = run(completion())
    assert [line for _, line in events][-1] == b"data: [DONE]"
    assert len(events) == 21
    # 20 tokens at 100 ms each: the gateway passes each on as it comes, not all at the end.
    assert events[-1][0] - events[0][0] >= 1.0


def test_bad_prompt_is_a_clear_400(platform: Platform) -> None:
    status, _, body = platform.request(host("stream"), "/v1/completions", method="POST")
    assert status == 400
    assert "error" in json.loads(body)


def test_idle_timeout_cuts_a_model_that_went_quiet(platform: Platform) -> None:
    slow = stream_service(MODEL_LOAD_DELAY="0", TOKEN_DELAY_MS="1500")
    slow["metadata"]["name"] = "slow"
    slow["spec"]["template"]["spec"]["idleTimeoutSeconds"] = 1
    platform.apply(slow)
    platform.wait_ready("slow")
    revision = platform.revision("slow-00001")["spec"]
    assert (revision["timeoutSeconds"], revision["idleTimeoutSeconds"]) == (600, 1)
    assert revision["responseStartTimeoutSeconds"] == 300  # Knative's default past 300 s
    assert platform.request(host("slow"), "/")[0] == 200  # answers at once: not cut
    # Not streamed: nothing comes until all 3 tokens (4.5 s) are done.
    completion = json.dumps({"prompt": "the model", "max_tokens": 3})
    status, headers, _ = platform.request(
        host("slow"), "/v1/completions", "POST", timeout=30, body=completion
    )
    assert status == 504
    assert headers["X-Tidal-Error"] == "nothing from the replica within idleTimeoutSeconds (1s)"
