"""Cold-start overhead: first request at zero replicas → response, minus the app's own start.

    python bench/coldstart.py [--runs 10] [--startup-delay 0]

1. The app alone: exec `examples/hello/app.py`, poll its port every millisecond, time exec →
   first 200 response. Median of N runs.
2. Through tidal: `tidal up` with N services at zero replicas (initial-scale 0), one request
   each; time request → response. Median of N runs.
The difference is what the platform adds: activator hold, autoscaler poke, process spawn,
readiness probe, endpoint wake-up and proxying.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.harness import Platform, free_port, hello_service, host  # noqa: E402


def get(port: int, host_header: str = "localhost", timeout: float = 30) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": host_header})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def app_alone(startup_delay: float) -> float:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "STARTUP_DELAY": str(startup_delay)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=REPO / "examples" / "hello",
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if get(port, timeout=1) == 200:
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.001)
    finally:
        process.terminate()
        process.wait()


def through_tidal(runs: int, startup_delay: float) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = {"autoscaler": {"allow-zero-initial-scale": True}}
        platform = Platform(Path(tmp), config).start()
        try:
            annotations = {"autoscaling.knative.dev/initial-scale": "0"}
            env = {"STARTUP_DELAY": str(startup_delay)}
            docs = [hello_service(f"cold-{i}", annotations, env) for i in range(runs + 1)]
            path = Path(tmp) / "services.yaml"
            path.write_text(yaml.safe_dump_all(docs))
            platform.cli("apply", "-f", str(path))
            times = []
            for i in range(runs + 1):
                started = time.perf_counter()
                status = get(platform.port, host(f"cold-{i}"))
                elapsed = time.perf_counter() - started
                assert status == 200, status
                if i:  # the first one warms up the platform's own code paths
                    times.append(elapsed)
            return times
        finally:
            platform.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--startup-delay",
        type=float,
        default=0.0,
        help="seconds the app sleeps before listening (a model load)",
    )
    args = parser.parse_args()
    alone = [app_alone(args.startup_delay) for _ in range(args.runs)]
    tidal = through_tidal(args.runs, args.startup_delay)
    overhead = statistics.median(tidal) - statistics.median(alone)
    print(
        f"app alone, exec -> first response : median {statistics.median(alone) * 1000:7.1f} ms"
        f"  (min {min(alone) * 1000:.1f}, max {max(alone) * 1000:.1f}, n={len(alone)})"
    )
    print(
        f"tidal, request at zero -> response: median {statistics.median(tidal) * 1000:7.1f} ms"
        f"  (min {min(tidal) * 1000:.1f}, max {max(tidal) * 1000:.1f}, n={len(tidal)})"
    )
    print(f"platform overhead (difference of medians): {overhead * 1000:.1f} ms  (bar: <= 100 ms)")
    print(
        json.dumps(
            {
                "app_alone_ms": [round(t * 1000, 1) for t in alone],
                "tidal_ms": [round(t * 1000, 1) for t in tidal],
                "overhead_ms": round(overhead * 1000, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
