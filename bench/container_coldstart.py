"""Cold start of a container replica: through tidal vs the engine alone.

    python bench/container_coldstart.py [--runs 5] [--engine podman]

1. The engine alone: `<engine> run -d --rm -p 127.0.0.1:PORT:8080` of the example image (built
   here, see examples/container/), polling its port every millisecond; time exec → first 200.
2. Through tidal: `tidal up` with N image-only services at zero replicas (initial-scale 0), one
   request each; time request → response.
The two are taken in turn, one run of each per round.
The difference of the medians is what tidal adds to the engine's own start: activator hold,
autoscaler poke, the image presence check, readiness probing and proxying.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coldstart import get  # noqa: E402  (bench/ is on the path when run as a script)

from tests.integration.harness import Platform, free_port, host  # noqa: E402
from tests.integration.test_containers import image_service  # noqa: E402
from tests.runtime.test_container import load_example_build  # noqa: E402


def engine_alone(engine: str, image: str) -> float:
    port = free_port()
    name = f"tidal-bench-{port}"
    started = time.perf_counter()
    subprocess.run(
        [engine, "run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:8080", image],
        check=True,
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
        subprocess.run([engine, "rm", "-f", name], check=True, capture_output=True)


def interleaved(runs: int, image: str, engine: str) -> tuple[list[float], list[float], list[float]]:
    """Runs of the engine alone and through tidal taken in turn, so that load from other work on
    the machine hits both alike. Returns (alone, tidal request at zero, tidal Ready Time)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = {"autoscaler": {"allow-zero-initial-scale": True}}
        platform = Platform(Path(tmp), config).start()
        try:
            docs = [image_service(f"cold-{i}", image) for i in range(runs + 1)]
            for doc in docs:
                doc["spec"]["template"]["metadata"] = {
                    "annotations": {"autoscaling.knative.dev/initial-scale": "0"}
                }
            path = Path(tmp) / "services.yaml"
            path.write_text(yaml.safe_dump_all(docs))
            platform.cli("apply", "-f", str(path))
            alone, times = [], []
            for i in range(runs + 1):
                if i:  # the first round warms up the engine's and the platform's code paths
                    alone.append(engine_alone(engine, image))
                started = time.perf_counter()
                status = get(platform.port, host(f"cold-{i}"), timeout=60)
                elapsed = time.perf_counter() - started
                assert status == 200, status
                if i:
                    times.append(elapsed)
            ready = [
                r["startupSeconds"]
                for r in platform.get_json("replicas")["items"]
                if r["service"] != "cold-0" and r["startupSeconds"] is not None
            ]
            return alone, times, ready
        finally:
            platform.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engine", default="podman", choices=("podman", "docker"))
    args = parser.parse_args()
    image = load_example_build().ensure_image(args.engine)
    engine_alone(args.engine, image)  # warm the engine's caches, as tidal's first run does
    alone, tidal, ready = interleaved(args.runs, image, args.engine)

    def line(label: str, values: list[float]) -> str:
        return (
            f"{label}: median {statistics.median(values) * 1000:7.1f} ms  "
            f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f}, n={len(values)})"
        )

    print(line(f"{args.engine} run alone, exec -> first response ", alone))
    print(line("tidal, request at zero -> response        ", tidal))
    print(line("tidal, replica Ready Time (start -> ready)", ready))
    overhead = statistics.median(tidal) - statistics.median(alone)
    print(
        f"tidal overhead (difference of medians): {overhead * 1000:.1f} ms, "
        f"ratio {statistics.median(tidal) / statistics.median(alone):.2f}"
    )
    print(
        json.dumps(
            {
                "engine_alone_ms": [round(t * 1000, 1) for t in alone],
                "tidal_ms": [round(t * 1000, 1) for t in tidal],
                "ready_time_ms": [round(t * 1000, 1) for t in ready],
                "overhead_ms": round(overhead * 1000, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
