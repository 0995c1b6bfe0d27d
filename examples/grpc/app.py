"""A gRPC model server for tidal: grpcio and numpy, no generated code.

    pip install grpcio      # (the test extra has it: pip install -e '.[test]')
    PORT=8000 python examples/grpc/app.py

gRPC speaks HTTP/2 without TLS (h2c), so its manifest names the port `h2c` and tidal's gateway
passes each call through as HTTP/2. Messages are JSON bytes, to keep the example free of
protobuf code generation; a real server would use its .proto as usual.

/tidal.example.Model/Predict   unary: {"instances": [[x1, x2, x3, x4], ...]} -> {"scores": [...]}
/tidal.example.Model/Generate  server streaming: {"prompt": "...", "max_tokens": N} -> one
                               {"token": "..."} message per token (TOKEN_DELAY_MS apart)
/grpc.health.v1.Health/Check   the standard health check: NOT_SERVING while the model loads
                               (MODEL_LOAD_DELAY seconds, default 1), then SERVING; the
                               manifest's `grpc` readiness probe waits for it

Bad input ends the call with INVALID_ARGUMENT and a message saying why.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np

SERVICE = "tidal.example.Model"
WEIGHTS = np.array([0.5, -1.0, 0.25, 2.0])  # a fixed linear model: no file, no download
WORDS = ("a", "warm", "model", "never", "keeps", "anyone", "waiting")
REVISION = os.environ.get("K_REVISION", "standalone")


def parse(request: bytes, context: grpc.ServicerContext) -> dict[str, Any]:
    try:
        payload = json.loads(request)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"message is not JSON: {err}")
    if not isinstance(payload, dict):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "message must be a JSON object")
    return payload


def predict(request: bytes, context: grpc.ServicerContext) -> bytes:
    payload = parse(request, context)
    try:
        x = np.asarray(payload.get("instances"), dtype=float)
    except (TypeError, ValueError):
        x = np.zeros(0)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != len(WEIGHTS):
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f'"instances" must be a non-empty list of rows of {len(WEIGHTS)} numbers',
        )
    scores = (x @ WEIGHTS).round(6).tolist()
    return json.dumps({"scores": scores, "revision": REVISION}).encode()


def generate(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    payload = parse(request, context)
    count = payload.get("max_tokens", 16)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 512:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, '"max_tokens" must be 1 to 512')
    delay_s = float(os.environ.get("TOKEN_DELAY_MS", "20")) / 1000
    start = len(str(payload.get("prompt", "")))
    for i in range(count):
        time.sleep(delay_s)  # the model "thinking"
        yield json.dumps({"token": WORDS[(start + i) % len(WORDS)] + " "}).encode()


class Health:
    """grpc.health.v1.Health/Check, its protobuf messages written by hand: the response is
    field 1 (status) as a varint, 1 for SERVING and 2 for NOT_SERVING."""

    def __init__(self) -> None:
        self.loaded = threading.Event()

    def check(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        service = request[2:].decode() if request[:1] == b"\x0a" else ""
        if service not in ("", SERVICE):
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")
        return b"\x08\x01" if self.loaded.is_set() else b"\x08\x02"


def main() -> None:
    handlers = {
        "Predict": grpc.unary_unary_rpc_method_handler(predict),
        "Generate": grpc.unary_stream_rpc_method_handler(generate),
    }
    health = Health()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(SERVICE, handlers),
            grpc.method_handlers_generic_handler(
                "grpc.health.v1.Health",
                {"Check": grpc.unary_unary_rpc_method_handler(health.check)},
            ),
        )
    )
    port = int(os.environ.get("PORT", "8080"))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()  # answering at once, as gRPC servers do; healthy once the model is loaded
    time.sleep(float(os.environ.get("MODEL_LOAD_DELAY", "1")))
    health.loaded.set()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(f"grpc model ({REVISION}) listening on 127.0.0.1:{port}", flush=True)
    stopped.wait()
    server.stop(grace=5).wait()


if __name__ == "__main__":
    main()
