"""Measuring replicas: process trees, engine stats, the metrics API and NVML (a fake: no GPU)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from tidal.runtime.base import ProbeSpec, Replica, ReplicaSpec
from tidal.runtime.resources import (
    ContainerSampler,
    GpuSampler,
    MetricsApiSampler,
    ProcessSampler,
    ResourceMonitor,
    parse_size,
)

FAKE_NVML = Path(__file__).resolve().parents[1] / "fakes" / "nvml" / "pynvml.py"


def replica(replica_id: str, pid: int | None = None, devices: tuple[str, ...] = ()) -> Replica:
    spec = ReplicaSpec(
        replica_id,
        "default",
        "svc",
        "svc-00001",
        (),
        {},
        None,
        ProbeSpec(),
        Path("/dev/null"),
        devices=devices,
    )
    return Replica(spec=spec, pid=pid, port=8080)


def fake_nvml(monkeypatch, tmp_path, state: dict) -> object:
    path = tmp_path / "nvml.json"
    path.write_text(json.dumps(state))
    monkeypatch.setenv("FAKE_NVML_STATE", str(path))
    spec = importlib.util.spec_from_file_location("fake_pynvml", FAKE_NVML)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_process_tree_cpu_is_a_rate_and_counts_children():
    """A parent that only waits, with a child that spins: the tree burns about a core."""
    spin = "import time\nend = time.time() + 5\nwhile time.time() < end: pass"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}])",
        ]
    )
    try:
        sampler = ProcessSampler()
        first = sampler.sample([replica("r1", parent.pid)])
        assert first["r1"].cpu_cores is None  # a rate needs two samples
        assert first["r1"].memory_bytes > 1_000_000
        time.sleep(1.0)
        second = sampler.sample([replica("r1", parent.pid)])
        assert 0.3 < second["r1"].cpu_cores < 1.5
    finally:
        parent.kill()
        parent.wait()
    assert ProcessSampler().sample([replica("r1", parent.pid)]) == {}  # gone: left out


def test_podman_stats_give_cpu_time_rates_and_memory():
    rows = iter(
        [
            '[{"name": "tidal-default-r1", "cpu_time": "1.5s", "mem_usage": "52.4MB / 8GB"}]',
            '[{"name": "tidal-default-r1", "cpu_time": "2s", "mem_usage": "60MB / 8GB"}]',
        ]
    )
    now = iter([10.0, 11.0])
    calls = []

    def run(argv):
        calls.append(argv)
        return next(rows)

    sampler = ContainerSampler(
        lambda: "/usr/bin/podman", lambda r: f"tidal-default-{r.replica_id}", lambda: next(now), run
    )
    assert sampler.sample([replica("r1")])["r1"].memory_bytes == 52_400_000
    second = sampler.sample([replica("r1")])["r1"]
    assert second.cpu_cores == 0.5 and second.memory_bytes == 60_000_000
    assert calls[0][:5] == ["/usr/bin/podman", "stats", "--no-stream", "--format", "json"]


def test_docker_stats_lines_and_sizes():
    line = json.dumps(
        {"Name": "tidal-default-r1", "CPUPerc": "150.5%", "MemUsage": "1.5GiB / 8GiB"}
    )
    sampler = ContainerSampler(lambda: "docker", lambda r: "tidal-default-r1", run=lambda _: line)
    got = sampler.sample([replica("r1")])["r1"]
    assert got.cpu_cores == 1.505 and got.memory_bytes == int(1.5 * 2**30)
    assert parse_size("745.5kB / 25.28GB") == 745_500 and parse_size("--") is None


def test_metrics_api_pod_metrics():
    pods = {("default", "svc-abc"): {"containers": [{"usage": {"cpu": "250m", "memory": "64Mi"}}]}}
    sampler = MetricsApiSampler(
        lambda ns, name: pods.get((ns, name)),
        lambda r: ("default", "svc-abc") if r.replica_id == "r1" else ("default", "none"),
    )
    got = sampler.sample([replica("r1"), replica("r2")])
    assert got["r1"].cpu_cores == 0.25 and got["r1"].memory_bytes == 64 * 2**20
    assert "r2" not in got  # no PodMetrics yet: left out, not zero


def test_gpu_figures_per_assigned_device_through_nvml(monkeypatch, tmp_path):
    nvml = fake_nvml(monkeypatch, tmp_path, {"0": {"gpu": 90, "used": 2**30}, "1": {"gpu": 30}})
    monitor = ResourceMonitor(None, GpuSampler(nvml))
    got = monitor.sample([replica("r1", devices=("0", "1")), replica("r2")])
    assert got["r1"].gpu_percent == 60 and got["r1"].gpu_memory_bytes == 2**30
    assert "r2" not in got  # no devices, nothing measured


def test_no_driver_means_no_gpu_figures(monkeypatch, tmp_path):
    nvml = fake_nvml(monkeypatch, tmp_path, {})
    monkeypatch.setenv("FAKE_NVML_BROKEN", "1")
    assert ResourceMonitor(None, GpuSampler(nvml)).sample([replica("r1", devices=("0",))]) == {}
