"""A small CPU model server for tidal: standard library and numpy only.

    PORT=8000 python examples/model/app.py

At start it loads a softmax classifier from model.npz next to this file (MODEL_PATH overrides),
or trains one on a synthetic dataset with a fixed seed and saves it there; then it sleeps
MODEL_LOAD_DELAY seconds (default 2), standing in for loading real weights, before it listens.
So cold starts take visible time, as they do for real inference services.

POST /v1/predict   {"instances": [[f1, f2, f3, f4], ...]} -> {"predictions": [class, ...], ...}
GET  /             model info, including how long loading took
GET  /healthz      200 once the model is loaded (the server only listens after that)

PREDICT_DELAY_MS (default 0) adds simulated compute time to each prediction, so that load
builds up concurrency the autoscaler can see.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

FEATURES = 4
CLASSES = ("small", "medium", "large")
MAX_BODY = 1 << 20
REVISION = os.environ.get("K_REVISION", "standalone")


@dataclass(frozen=True)
class Model:
    mean: np.ndarray  # feature standardisation learnt from the training set
    std: np.ndarray
    weights: np.ndarray  # (FEATURES, len(CLASSES))
    bias: np.ndarray
    accuracy: float  # on a held-out split

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(((x - self.mean) / self.std) @ self.weights + self.bias, axis=1)


def synthetic_dataset(seed: int = 7, per_class: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping Gaussian blobs, one per class, around fixed random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-3, 3, size=(len(CLASSES), FEATURES))
    x = np.concatenate([rng.normal(c, 1.5, size=(per_class, FEATURES)) for c in centres])
    y = np.repeat(np.arange(len(CLASSES)), per_class)
    order = rng.permutation(len(y))
    return x[order], y[order]


def train(epochs: int = 500, lr: float = 0.5) -> Model:
    """Softmax regression by full-batch gradient descent; a few milliseconds of work."""
    x, y = synthetic_dataset()
    split = len(y) * 4 // 5
    mean, std = x[:split].mean(axis=0), x[:split].std(axis=0)
    xs, onehot = (x[:split] - mean) / std, np.eye(len(CLASSES))[y[:split]]
    w, b = np.zeros((FEATURES, len(CLASSES))), np.zeros(len(CLASSES))
    for _ in range(epochs):
        logits = xs @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = (p - onehot) / split
        w -= lr * xs.T @ grad
        b -= lr * grad.sum(axis=0)
    model = Model(mean, std, w, b, accuracy=0.0)
    accuracy = float((model.predict(x[split:]) == y[split:]).mean())
    return Model(mean, std, w, b, accuracy)


def load_or_train(path: Path) -> tuple[Model, str]:
    if path.exists():
        with np.load(path) as f:
            return Model(f["mean"], f["std"], f["weights"], f["bias"], float(f["accuracy"])), "file"
    model = train()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.npz")  # replicas may start together
    np.savez(tmp, **{k: np.asarray(v) for k, v in vars(model).items()})
    tmp.replace(path)
    return model, "trained"


class BadRequest(Exception):
    pass


def parse_instances(body: bytes) -> np.ndarray:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"body is not JSON: {err}") from None
    if not isinstance(payload, dict) or "instances" not in payload:
        raise BadRequest('body must be an object with "instances"')
    try:
        x = np.asarray(payload["instances"], dtype=float)
    except (TypeError, ValueError):
        raise BadRequest(f'"instances" must be a list of rows of {FEATURES} numbers') from None
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != FEATURES:
        raise BadRequest(
            f'"instances" must be a non-empty list of rows of {FEATURES} numbers, got shape '
            f"{list(x.shape)}"
        )
    if not np.isfinite(x).all():
        raise BadRequest('"instances" must be finite numbers')
    return x


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    model: Model
    info: dict[str, object]
    predict_delay_s: float

    def do_GET(self) -> None:
        if self.path == "/":
            self._json(200, self.info)
        elif self.path == "/healthz":
            self._json(200, {"status": "ok"})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True  # the unread body would be taken for the next request
            status = 413 if length > MAX_BODY else 400
            self._json(status, {"error": f"Content-Length must be 0..{MAX_BODY}"})
            return
        body = self.rfile.read(length)
        if self.path != "/v1/predict":
            self._json(404, {"error": "not found"})
            return
        try:
            x = parse_instances(body)
        except BadRequest as err:
            self._json(400, {"error": str(err)})
            return
        time.sleep(self.predict_delay_s)
        predictions = self.model.predict(x).tolist()
        self._json(200, {"predictions": predictions, "revision": REVISION})

    def _json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """No access log: one stderr line per request would slow load tests down."""


def main() -> None:
    started = time.monotonic()
    path = Path(os.environ.get("MODEL_PATH") or Path(__file__).with_name("model.npz"))
    model, source = load_or_train(path)
    time.sleep(float(os.environ.get("MODEL_LOAD_DELAY", "2")))
    load_seconds = round(time.monotonic() - started, 3)

    Handler.model = model
    Handler.predict_delay_s = float(os.environ.get("PREDICT_DELAY_MS", "0")) / 1000
    Handler.info = {
        "model": "softmax-regression",
        "features": FEATURES,
        "classes": list(CLASSES),
        "accuracy": round(model.accuracy, 3),
        "source": source,
        "load_seconds": load_seconds,
        "revision": REVISION,
    }
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"model: {source} model ready in {load_seconds}s, listening on :{port}", flush=True)
    server.serve_forever()
    server.server_close()
    print("model: stopped", flush=True)


if __name__ == "__main__":
    main()
