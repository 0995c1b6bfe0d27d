"""`kubectl port-forward` into a replica: bytes per second and HTTP requests per second through
the forward, against the same replica reached directly (the peer: what the forward costs).

    python bench/port_forward.py [--megabytes 64] [--duration 5] [--connections 8] [--rounds 3]

`tidal up` runs two process replicas: a TCP echo server and examples/hello (min-scale 1). Then,
interleaved, `--rounds` times each:
1. Throughput: `--megabytes` MB sent to the echo server and read back on one connection, through
   `kubectl port-forward` (SPDY frames in a WebSocket, tidal.controller.kubeapi.pod_portforward)
   and directly; MB/s counts both directions.
2. Requests: wrk, `--connections` keep-alive connections for `--duration` s, GETs to hello
   through the forward and directly.
Medians are printed with the forward/direct ratio, then one JSON line. kubectl itself (Go,
the client side of every forwarded byte) is part of what is measured, as it is for a user.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.harness import Platform, hello_service, wait_until  # noqa: E402
from tests.kubectl.test_kubectl import ECHO_SERVER  # noqa: E402

CHUNK = 64 * 1024


async def echo_throughput(port: int, size: int) -> float:
    """MB/s, both directions counted, for `size` bytes echoed on one connection."""
    blob = os.urandom(size)
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        for offset in range(0, size, CHUNK):
            writer.write(blob[offset : offset + CHUNK])
            await writer.drain()
        writer.write_eof()

    sending = asyncio.ensure_future(send())
    received = 0
    while data := await reader.read(1 << 20):
        received += len(data)
    await sending
    writer.close()
    elapsed = time.perf_counter() - start
    assert received == size, f"{received} of {size} bytes came back"
    return 2 * size / elapsed / 1e6


def wrk_rps(port: int, duration: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("Requests/sec:"))
    return float(line.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("kubectl") is None:
        sys.exit("needs wrk (apt-get install wrk) and kubectl 1.31 or newer")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "echo.py").write_text(ECHO_SERVER)
        (folder / "platform").mkdir()
        platform = Platform(folder / "platform").start()
        try:
            pinned = {"autoscaling.knative.dev/min-scale": "1"}
            echo = hello_service("echo", pinned)
            container = echo["spec"]["template"]["spec"]["containers"][0]
            container.update(command=["python", "echo.py"], workingDir=str(folder))
            platform.apply(echo)
            platform.apply(hello_service("hello", pinned))

            def ready(service: str) -> dict | None:
                return next((r for r in platform.replicas(service) if r["state"] == "Ready"), None)

            echo_replica = wait_until(lambda: ready("echo"), 60, "the echo replica")
            hello_replica = wait_until(lambda: ready("hello"), 60, "the hello replica")
            figures: dict[str, list[float]] = {
                k: [] for k in ("mbps_forward", "mbps_direct", "rps_forward", "rps_direct")
            }
            with (
                platform.port_forward(echo_replica["name"], 8080) as (echo_local, _),
                platform.port_forward(hello_replica["name"], 8080) as (hello_local, _),
            ):
                size = args.megabytes << 20
                for _ in range(args.rounds):
                    for label, port in (("forward", echo_local), ("direct", echo_replica["port"])):
                        figures[f"mbps_{label}"].append(asyncio.run(echo_throughput(port, size)))
                    for label, port in (
                        ("forward", hello_local),
                        ("direct", hello_replica["port"]),
                    ):
                        rps = wrk_rps(port, args.duration, args.connections)
                        figures[f"rps_{label}"].append(rps)
        finally:
            platform.stop()

    medians = {key: statistics.median(values) for key, values in figures.items()}
    print(f"{'':28}{'forward':>12}{'direct':>12}{'ratio':>8}")
    for key, label in (("mbps", f"echo MB/s ({args.megabytes} MB)"), ("rps", "hello GET req/s")):
        forward, direct = medians[f"{key}_forward"], medians[f"{key}_direct"]
        print(f"{label:28}{forward:12.1f}{direct:12.1f}{forward / direct:8.2f}")
    print(json.dumps({"rounds": args.rounds, **{k: round(v, 1) for k, v in medians.items()}}))


if __name__ == "__main__":
    main()
