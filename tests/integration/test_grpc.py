"""gRPC end to end: examples/grpc (port named h2c) behind `tidal up`, called with grpcio through
the gateway's worker process, from zero replicas and back."""

from __future__ import annotations

import http.client
import json
from typing import Any

import grpc
import pytest
import yaml

from tests.integration.harness import REPO, Platform, host, wait_until

GRPC_DIR = REPO / "examples" / "grpc"


def grpc_service() -> dict[str, Any]:
    """examples/grpc/service.yaml as a user would apply it from the repository root."""
    doc = yaml.safe_load((GRPC_DIR / "service.yaml").read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["workingDir"] = str(GRPC_DIR)
    return doc


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("grpc")).start()
    p.apply(grpc_service())
    p.wait_ready("grpc")
    yield p
    p.stop()


def model(platform: Platform, method: str, kind: str = "unary_unary") -> Any:
    channel = grpc.insecure_channel(
        f"127.0.0.1:{platform.port}", options=[("grpc.default_authority", host("grpc"))]
    )
    return getattr(channel, kind)(f"/tidal.example.Model/{method}")


def test_a_call_at_zero_replicas_is_held_until_one_is_ready(platform: Platform) -> None:
    wait_until(lambda: not platform.replicas("grpc"), 60, "grpc to scale to zero")
    request = json.dumps({"instances": [[1.0, -2.0, 0.5, 3.0]]}).encode()
    response, call = model(platform, "Predict").with_call(request, timeout=60)
    assert json.loads(response) == {"scores": [8.625], "revision": "grpc-00001"}
    assert dict(call.initial_metadata())["x-tidal-revision"] == "grpc-00001"
    assert platform.ready_replicas("grpc") == 1


def test_tokens_stream_and_errors_keep_their_status(platform: Platform) -> None:
    generate = model(platform, "Generate", "unary_stream")
    messages = list(generate(json.dumps({"prompt": "", "max_tokens": 5}).encode(), timeout=60))
    tokens = "".join(json.loads(m)["token"] for m in messages)
    assert tokens == "a warm model never keeps "
    with pytest.raises(grpc.RpcError) as caught:
        model(platform, "Predict")(b"not json", timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("message is not JSON")


def test_http1_reaches_the_grpc_service_as_http2(platform: Platform) -> None:
    """An HTTP/1.1 request goes to the h2c replica as an HTTP/2 stream, as Knative's proxies
    send it, and its answer comes back as HTTP/1.1: here a gRPC call framed by hand."""
    message = json.dumps({"instances": [[1.0, -2.0, 0.5, 3.0]]}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", platform.port, timeout=60)
    try:
        connection.request(
            "POST",
            "/tidal.example.Model/Predict",
            b"\x00" + len(message).to_bytes(4, "big") + message,
            {"Host": host("grpc"), "Content-Type": "application/grpc"},
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200 and response.getheader("X-Tidal-Revision") == "grpc-00001"
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert json.loads(body[5:]) == {"scores": [8.625], "revision": "grpc-00001"}
