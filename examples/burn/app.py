"""A service that does what a model server does to its replica: burns CPU, holds memory, waits.
For trying (and testing) scaling on CPU, memory and response time. Standard library only.

    PORT=8000 python examples/burn/app.py

GET /?burn=MS     keep a core busy for MS milliseconds (one core per process: Python's GIL)
GET /?sleep=MS    wait MS milliseconds without using CPU
GET /?alloc=MB    allocate MB mebibytes and keep them (the working set grows)
GET /free         release everything /?alloc kept
The parameters combine: `/?burn=50&sleep=100`.
"""

from __future__ import annotations

import os
import signal
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

KEPT: list[bytearray] = []


def burn(ms: float) -> None:
    deadline = time.monotonic() + ms / 1000
    x = 0
    while time.monotonic() < deadline:
        for _ in range(1000):
            x += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/free":
            KEPT.clear()
        elif url.path == "/":
            mb = _arg(query, "alloc")
            if mb:
                KEPT.append(bytearray(b"\x01") * int(mb * 1024 * 1024))  # pages written: resident
            burn(_arg(query, "burn"))
            time.sleep(_arg(query, "sleep") / 1000)
        else:
            self._send(404, b"not found\n")
            return
        held = sum(len(b) for b in KEPT) // (1024 * 1024)
        self._send(200, f"ok, holding {held} MiB\n".encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _arg(query: dict[str, list[str]], name: str) -> float:
    try:
        return max(0.0, float(query.get(name, ["0"])[0]))
    except ValueError:
        return 0.0


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
