"""Cold start of a container replica: through tidal vs the engine alone.

    python bench/container_coldstart.py [--runs 5] [--engine podman] [--volumes KIB] [--sidecar]

1. The engine alone: `<engine> run -d --rm -p 127.0.0.1:PORT:8080` of the example image (built
   here, see examples/container/), polling its port every millisecond; time exec → first 200.
2. Through tidal: `tidal up` with N image-only services at zero replicas (initial-scale 0), one
   request each; time request → response.
The two are taken in turn, one run of each per round.
The difference of the medians is what tidal adds to the engine's own start: activator hold,
autoscaler poke, the image presence check, readiness probing and proxying.

With --volumes KIB both also mount what a model server is given (docs/containers.md#volumes):
a Secret's token, a ConfigMap of KIB KiB, an emptyDir and a 64 MiB tmpfs at /dev/shm. The
engine alone bind-mounts folders made once; tidal reads the Secret and ConfigMap and writes
them for each replica, which the difference then includes.

With --sidecar each replica also runs a sidecar (docs/containers.md#sidecars), a shell waiting
in the server's network namespace: the engine alone starts it once `run -d` of the server has
returned, while the server's port is polled; tidal as soon as it sees the server's container
running, while it probes the server.
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
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coldstart import get  # noqa: E402  (bench/ is on the path when run as a script)

from tests.integration.harness import Platform, free_port, host  # noqa: E402
from tests.integration.test_containers import image_service  # noqa: E402
from tests.runtime.test_container import load_example_build  # noqa: E402

SHM_BYTES = 64 * 2**20
# A sidecar that idles until stopped (a shell as PID 1 must handle SIGTERM itself).
SIDECAR_COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


def volume_docs(
    kib: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The Secret and ConfigMap, the volumes and the mounts of a service with --volumes."""
    objects = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf"},
            "stringData": {"token": "hf_bench_token"},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "model"},
            "data": {"settings.json": "x" * (kib * 1024)},
        },
    ]
    volumes = [
        {"name": "hf", "secret": {"secretName": "hf"}},
        {"name": "model", "configMap": {"name": "model"}},
        {"name": "cache", "emptyDir": {}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_BYTES}},
    ]
    mounts = [
        {"name": "hf", "mountPath": "/etc/hf", "readOnly": True},
        {"name": "model", "mountPath": "/etc/model", "readOnly": True},
        {"name": "cache", "mountPath": "/models"},
        {"name": "shm", "mountPath": "/dev/shm"},
    ]
    return objects, volumes, mounts


def engine_mounts(folder: Path, kib: int) -> list[str]:
    """The same volumes for the engine alone, from folders made once."""
    for name, file, size in (("hf", "token", 14), ("model", "settings.json", kib * 1024)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / file).write_bytes(b"x" * size)
    (folder / "cache").mkdir(exist_ok=True)
    return [
        "--mount",
        f"type=bind,source={folder}/hf,destination=/etc/hf,readonly=true",
        "--mount",
        f"type=bind,source={folder}/model,destination=/etc/model,readonly=true",
        "--mount",
        f"type=bind,source={folder}/cache,destination=/models",
        "--mount",
        f"type=tmpfs,destination=/dev/shm,tmpfs-mode=1777,tmpfs-size={SHM_BYTES}",
    ]


def engine_alone(engine: str, image: str, mounts: list[str], sidecar: bool = False) -> float:
    port = free_port()
    name = f"tidal-bench-{port}"
    names = [f"{name}-sidecar", name] if sidecar else [name]
    started = time.perf_counter()
    subprocess.run(
        [
            engine,
            "run",
            "-d",
            "--rm",
            "--name",
            name,
            "-p",
            f"127.0.0.1:{port}:8080",
            *mounts,
            image,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    starting = None
    if sidecar:  # while the server's port is polled, as tidal probes it meanwhile
        joined = ["--network", f"container:{name}", "--entrypoint", SIDECAR_COMMAND[0]]
        starting = subprocess.Popen(
            [engine, "run", "-d", "--rm", "--name", names[0], *joined, image, *SIDECAR_COMMAND[1:]],
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
        if starting is not None:
            assert starting.wait() == 0, "the sidecar did not start"
        for each in names:  # the sidecar first: the server's namespace is in use until then
            subprocess.run([engine, "rm", "-f", each], check=True, capture_output=True)


def interleaved(
    runs: int, image: str, engine: str, volumes_kib: int | None, sidecar: bool
) -> tuple[list[float], list[float], list[float]]:
    """Runs of the engine alone and through tidal taken in turn, so that load from other work on
    the machine hits both alike. Returns (alone, tidal request at zero, tidal Ready Time)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = {"autoscaler": {"allow-zero-initial-scale": True}}
        platform = Platform(Path(tmp), config).start()
        try:
            objects: list[dict[str, Any]] = []
            mounts: list[str] = []
            docs = [image_service(f"cold-{i}", image) for i in range(runs + 1)]
            if volumes_kib is not None:
                objects, volumes, volume_mounts = volume_docs(volumes_kib)
                mounts = engine_mounts(Path(tmp) / "engine-volumes", volumes_kib)
                for doc in docs:
                    doc["spec"]["template"]["spec"]["volumes"] = volumes
                    doc["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = volume_mounts
            if sidecar:
                for doc in docs:
                    pod = doc["spec"]["template"]["spec"]
                    pod["containers"][0]["ports"] = [{"containerPort": 8080}]
                    pod["containers"].append(
                        {
                            "name": "sidecar",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": SIDECAR_COMMAND[:1],
                            "args": SIDECAR_COMMAND[1:],
                        }
                    )
            for doc in docs:
                doc["spec"]["template"]["metadata"] = {
                    "annotations": {"autoscaling.knative.dev/initial-scale": "0"}
                }
            path = Path(tmp) / "services.yaml"
            path.write_text(yaml.safe_dump_all([*objects, *docs]))
            platform.cli("apply", "-f", str(path))
            alone, times = [], []
            for i in range(runs + 1):
                if i:  # the first round warms up the engine's and the platform's code paths
                    alone.append(engine_alone(engine, image, mounts, sidecar))
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
    parser.add_argument(
        "--volumes",
        type=int,
        metavar="KIB",
        help="mount a Secret, a ConfigMap of KIB KiB, an emptyDir and /dev/shm in both",
    )
    parser.add_argument("--sidecar", action="store_true", help="run a sidecar in both")
    args = parser.parse_args()
    image = load_example_build().ensure_image(args.engine)
    engine_alone(args.engine, image, [])  # warm the engine's caches, as tidal's first run does
    alone, tidal, ready = interleaved(args.runs, image, args.engine, args.volumes, args.sidecar)

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
