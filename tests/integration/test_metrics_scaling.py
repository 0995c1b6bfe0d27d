"""Scaling on what replicas really do, end to end through the gateway
(docs/autoscaling.md#metrics-and-classes): CPU and memory as the process tree uses them, response
time as the gateway sees it, GPUs through a fake NVML. The replicas run examples/burn (burn CPU,
hold memory, sleep)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import FAST_AUTOSCALER, Load, Platform, host, wait_until
from tidal.store.history import MetricHistory, MinuteRollup

BURN_DIR = Path(__file__).resolve().parents[2] / "examples" / "burn"


def burn_service(
    name: str, annotations: dict[str, str], cc: int = 0, cpu: str | None = None
) -> dict[str, Any]:
    container: dict[str, Any] = {"command": ["python", "app.py"], "workingDir": str(BURN_DIR)}
    if cpu is not None:
        container["resources"] = {"requests": {"cpu": cpu}}
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containerConcurrency": cc, "containers": [container]},
            }
        },
    }


HPA_FAST = {
    "autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev",
    "autoscaling.knative.dev/window": "6s",
    "tidal.dev/hpa-sync-period": "2s",
    "autoscaling.knative.dev/max-scale": "4",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("metrics")).start()
    yield p
    p.stop()


def replicas(platform: Platform, service: str) -> list[dict[str, Any]]:
    """The service's replicas straight from the admin API (no CLI process per poll)."""
    code, body = platform.api("GET", "/apis/tidal.dev/v1/namespaces/default/replicas")
    assert code == 200, body
    return [r for r in json.loads(body)["items"] if r["service"] == service]


def most_replicas(platform: Platform, service: str, seconds: float) -> int:
    """The most replicas the service had, polled over `seconds`."""
    most, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        most = max(most, len(replicas(platform, service)))
        time.sleep(0.5)
    return most


def test_cpu_scales_on_burning_requests_and_not_on_sleeping_ones(platform):
    """Same concurrency (3), target 50 % of a 200m request: requests that keep a core busy
    (about 500 %) scale out; requests that only sleep leave it at one replica."""
    cpu = {
        **HPA_FAST,
        "autoscaling.knative.dev/metric": "cpu",
        "autoscaling.knative.dev/target": "50",
    }
    platform.apply(
        burn_service("burner", cpu, cpu="200m"), burn_service("sleeper", cpu, cpu="200m")
    )
    platform.wait_ready("burner")
    platform.wait_ready("sleeper")
    burning = Load(platform.gateway, host("burner"), "/?burn=200").start(3)
    sleeping = Load(platform.gateway, host("sleeper"), "/?sleep=200").start(3)
    try:
        wait_until(lambda: len(replicas(platform, "burner")) >= 2, 30, "burner to scale out")
        # A replica still provisioning on the elastic pool has no figures yet.
        measured = [r for r in replicas(platform, "burner") if r.get("cpuCores") is not None]
        assert measured, "no replica of burner had a CPU figure"
        assert max(r["cpuPercentOfRequest"] for r in measured) > 100
        assert most_replicas(platform, "sleeper", 4) == 1
    finally:
        assert set(burning.stop()) == {200}
        assert set(sleeping.stop()) == {200}
    status = autoscaler_status(platform, "burner-00001")
    assert status["metric"]["name"] == "cpu" and status["metric"]["target"] == 0.1, status
    assert "of target" in status["reason"] and "target 100m" in status["reason"], status
    wide = platform.cli("get", "replicas", "-o", "wide").stdout
    assert "CPU/REQ" in wide and "Mi" in wide, wide
    described = platform.cli("describe", "service", "burner").stdout
    assert "CPU/REQ" in described and "of target" in described, described
    code, body = platform.api("GET", "/metrics")
    assert code == 200
    assert b'tidal_replica_cpu_cores{namespace="default",replica=' in body


def test_memory_scales_on_the_working_set(platform):
    """Target 60 MiB per replica; one replica holding ~150 MiB needs three."""
    memory = {
        **HPA_FAST,
        "autoscaling.knative.dev/metric": "memory",
        "autoscaling.knative.dev/target": "60",
    }
    platform.apply(burn_service("holder", memory))
    platform.wait_ready("holder")
    assert most_replicas(platform, "holder", 4) == 1  # an idle Python server is ~20 MiB
    status, _, _ = platform.request(host("holder"), "/?alloc=150")
    assert status == 200
    wait_until(lambda: len(replicas(platform, "holder")) >= 3, 30, "holder to scale out")
    held = max(r.get("memoryBytes") or 0 for r in replicas(platform, "holder"))
    assert held > 150 * 2**20


def autoscaler_status(platform: Platform, revision: str) -> dict[str, Any]:
    code, body = platform.api(
        "GET", f"/apis/serving.knative.dev/v1/namespaces/default/revisions/{revision}"
    )
    assert code == 200, body
    return json.loads(body)["status"].get("autoscaler", {})


RT_FAST = {
    "autoscaling.knative.dev/metric": "rt",
    "autoscaling.knative.dev/max-scale": "6",
    "autoscaling.knative.dev/scale-down-delay": "0s",
}


def test_rt_scales_out_a_queueing_service_and_brings_rt_under_target(platform):
    """CC=1, 100 ms per request, 4 clients: one replica queues them to ~400 ms, over the 250 ms
    target; the KPA on RT adds replicas until the gateway's RT is back under it, and stops."""
    annotations = {**RT_FAST, "autoscaling.knative.dev/target": "250"}
    platform.apply(burn_service("queued", annotations, cc=1))
    platform.wait_ready("queued")
    load = Load(platform.gateway, host("queued"), "/?sleep=100").start(4)
    try:
        wait_until(lambda: len(replicas(platform, "queued")) >= 2, 30, "queued to scale out")
        time.sleep(6)  # a stable window on more replicas
        metric = autoscaler_status(platform, "queued-00001")["metric"]
        assert metric["name"] == "rt" and metric["target"] == 250
        assert metric["observed"] < 250, metric
        assert not metric["guarded"]
        # Not max-scale (6): never more replicas than the 4 requests in flight can use.
        assert most_replicas(platform, "queued", 3) <= 4
    finally:
        assert set(load.stop()) == {200}


def test_rt_guard_when_service_time_alone_is_over_target(platform):
    """300 ms of service time against a 200 ms target: more replicas remove the queue but
    cannot bring RT under target. The status says so, and it does not run to max-scale."""
    annotations = {**RT_FAST, "autoscaling.knative.dev/target": "200"}
    platform.apply(burn_service("slow", annotations, cc=1))
    platform.wait_ready("slow")
    load = Load(platform.gateway, host("slow"), "/?sleep=300").start(2)
    try:
        wait_until(
            lambda: "cannot lower RT" in autoscaler_status(platform, "slow-00001")["reason"],
            30,
            "the guard to show in the status",
        )
        assert autoscaler_status(platform, "slow-00001")["metric"]["guarded"]
        assert most_replicas(platform, "slow", 8) <= 3
    finally:
        assert set(load.stop()) == {200}


def test_rt_guard_with_unlimited_concurrency(platform):
    """CC 0: nothing queues in the gateway, so the service time cannot tell sharing a replica
    from the work itself. 300 ms sleeps against 200 ms: it scales to a replica per request in
    flight (2), then says more replicas cannot lower RT, and not to max-scale (6)."""
    annotations = {**RT_FAST, "autoscaling.knative.dev/target": "200"}
    platform.apply(burn_service("open", annotations, cc=0))
    platform.wait_ready("open")
    load = Load(platform.gateway, host("open"), "/?sleep=300").start(2)
    try:
        wait_until(
            lambda: (
                "already has a replica of its own"
                in autoscaler_status(platform, "open-00001")["reason"]
            ),
            30,
            "the unlimited-concurrency guard to show in the status",
        )
        assert autoscaler_status(platform, "open-00001")["metric"]["guarded"]
        assert most_replicas(platform, "open", 8) <= 3
        described = platform.cli("describe", "service", "open").stdout
        assert "more replicas cannot lower RT" in described, described
    finally:
        assert set(load.stop()) == {200}


def test_predictive_plans_on_the_cpu_history(platform):
    """Four days of stored minutes whose CPU follows the hour (2.4 cores 09-17 UTC, 0.3
    otherwise) under the same concurrency: `tidal forecast` plans 2.4 / (60 % of 500m) = 8
    replicas by day and 1 at night, from the cpu history and the cpu target."""
    annotations = {
        "autoscaling.knative.dev/class": "predictive.tidal.dev",
        "autoscaling.knative.dev/metric": "cpu",
        "autoscaling.knative.dev/target": "60",
    }
    platform.apply(burn_service("planner", annotations, cpu="500m"))
    platform.wait_ready("planner")
    history = MetricHistory(platform.data_dir / "tidal.db")
    end = int(time.time() // 60)
    rows = [
        MinuteRollup(
            "default", "planner", "planner-00000", minute, 120.0, 2.0, 3.0, None, 1.0,
            cpu_cores=2.4 if 9 * 60 <= minute % 1440 < 17 * 60 else 0.3,
        )
        for minute in range(end - 4 * 1440, end - 1)
    ]  # fmt: skip
    history.add(rows)
    history.close()
    code, body = platform.api(
        "GET", "/apis/tidal.dev/v1/namespaces/default/services/planner/forecast"
    )
    assert code == 200, body
    view = json.loads(body)
    assert view["metric"] == "cpu" and view["targetPerReplica"] == 0.3, view["metric"]
    assert set(view["replicas"]) == {1, 8}, sorted(set(view["replicas"]))
    text = platform.cli("forecast", "planner").stdout
    assert "target 0.3 cores (cpu) per replica" in text, text


FAKE_NVML = Path(__file__).resolve().parents[1] / "fakes" / "nvml"


@pytest.fixture(scope="module")
def gpu_platform(tmp_path_factory):
    """A platform with three declared GPUs whose NVML readings the test writes to a file."""
    workdir = tmp_path_factory.mktemp("gpu-metrics")
    config = {
        "autoscaler": FAST_AUTOSCALER,
        "pools": [
            {"name": "gpus", "kind": "reserved", "capacity": {"nvidia.com/gpu": ["0", "1", "2"]}}
        ],
    }
    p = Platform(workdir, config)
    state = workdir / "nvml.json"
    state.write_text("{}")
    p.env["FAKE_NVML_STATE"] = str(state)
    p.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAKE_NVML), p.env.get("PYTHONPATH")]))
    p.start()
    yield p, state
    p.stop()


def test_gpu_utilization_scales_through_nvml(gpu_platform):
    """Target 50 %: a replica whose device reads 95 % needs two; at 10 % it keeps one."""
    platform, state = gpu_platform
    annotations = {
        **HPA_FAST,
        "autoscaling.knative.dev/metric": "gpu",
        "autoscaling.knative.dev/target": "50",
    }
    doc = burn_service("infer", annotations)
    doc["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"nvidia.com/gpu": 1}
    }
    state.write_text(json.dumps({str(d): {"gpu": 10, "used": 2**30} for d in range(3)}))
    platform.apply(doc)
    platform.wait_ready("infer")
    assert most_replicas(platform, "infer", 4) == 1
    [replica] = replicas(platform, "infer")
    assert replica["gpuPercent"] == 10 and replica["gpuMemoryBytes"] == 2**30
    busy = replica["devices"][0]
    state.write_text(json.dumps({busy: {"gpu": 95, "used": 2 * 2**30}}))
    wait_until(lambda: len(replicas(platform, "infer")) >= 2, 30, "infer to scale out on GPU")
    metric = autoscaler_status(platform, "infer-00001")["metric"]
    assert metric["name"] == "gpu" and metric["target"] == 50
