"""A minimal HTTP service for tidal, standard library only.

    PORT=8000 python examples/hello/app.py

GET /                           Hello from <K_REVISION>!   (?sleep=MS waits first)
GET /env                        PORT, K_*, TARGET and the visible GPUs as JSON
GET /stream?chunks=N&delay=MS   N chunks, MS apart, with chunked transfer encoding
GET /healthz                    200, or 503 once UNHEALTHY_AFTER seconds have passed

STARTUP_DELAY (seconds) delays listening, to make cold starts visible. UNHEALTHY_AFTER (seconds)
makes the replica fail /healthz from then on, as a wedged server would, to try a livenessProbe.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ENV_KEYS = (
    "PORT",
    "K_SERVICE",
    "K_CONFIGURATION",
    "K_REVISION",
    "TARGET",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
)
REVISION = os.environ.get("K_REVISION", "standalone")
STARTED = time.monotonic()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries a length or is chunked
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/":
            time.sleep(max(0, _int_arg(query, "sleep", 0)) / 1000)
            self._send(200, "text/plain", f"Hello from {REVISION}!\n".encode())
        elif url.path == "/env":
            body = json.dumps({k: os.environ.get(k) for k in ENV_KEYS}).encode()
            self._send(200, "application/json", body)
        elif url.path == "/stream":
            self._stream(_int_arg(query, "chunks", 5), _int_arg(query, "delay", 100) / 1000)
        elif url.path == "/healthz":
            unhealthy_after = float(os.environ.get("UNHEALTHY_AFTER", "inf"))
            if time.monotonic() - STARTED < unhealthy_after:
                self._send(200, "text/plain", b"ok\n")
            else:
                self._send(503, "text/plain", b"unhealthy\n")
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, chunks: int, delay_s: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(chunks):
            if i:
                time.sleep(max(0.0, delay_s))
            data = f"chunk {i} from {REVISION}\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        """No access log: one stderr line per request would slow load tests down."""


def _int_arg(query: dict[str, list[str]], name: str, default: int) -> int:
    try:
        return int(query[name][0])
    except (KeyError, ValueError):
        return default


def main() -> None:
    time.sleep(float(os.environ.get("STARTUP_DELAY", "0")))
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    # shutdown() waits for serve_forever() to return, so it must run off the serving thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"hello: revision {REVISION} listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()
    server.server_close()
    print("hello: stopped", flush=True)


if __name__ == "__main__":
    main()
