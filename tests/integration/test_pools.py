"""Pools and ResourcePolicy end to end: reserved first, burst to elastic, shed elastic first;
whole GPUs per replica; cost per pool."""

from __future__ import annotations

import collections
import json
import re

import pytest

from tests.integration.harness import (
    FAST_AUTOSCALER,
    Load,
    Platform,
    hello_service,
    host,
    kubectl_minor,
    wait_until,
)

POOLS = [
    {
        "name": "reserved",
        "kind": "reserved",
        "labels": {"tier": "ecs"},
        "capacity": {"nvidia.com/gpu": ["0", "1"]},
        "price": {"replicaSecond": 0.0002, "gpuSecond": 0.0008},
    },
    {
        "name": "elastic",
        "kind": "elastic",
        "labels": {"tier": "eci"},
        "startupDelay": "1s",
        "price": {"replicaSecond": 0.0005, "gpuSecond": 0.002},
    },
    {
        "name": "standby",
        "kind": "elastic",
        "labels": {"tier": "spot"},
        "price": {"replicaSecond": 0.00005},
    },
]

POLICY = {
    "apiVersion": "scheduling.alibabacloud.com/v1alpha1",
    "kind": "ResourcePolicy",
    "metadata": {"name": "burst", "namespace": "default"},
    "spec": {
        "selector": {"serving.knative.dev/service": "burst"},
        "strategy": "prefer",
        "units": [
            {"resource": "ecs", "nodeSelector": {"tier": "ecs"}, "max": 2},
            {"resource": "eci", "nodeSelector": {"tier": "eci"}},
        ],
    },
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(
        tmp_path_factory.mktemp("pools"), {"autoscaler": FAST_AUTOSCALER, "pools": POOLS}
    ).start()
    yield p
    p.stop()


def ready_by_pool(platform: Platform, service: str) -> dict[str, int]:
    return dict(
        collections.Counter(r["pool"] for r in platform.replicas(service) if r["state"] == "Ready")
    )


def test_reserved_first_burst_to_elastic_shed_elastic_first(platform):
    # One replica per in-flight request: target 1 at 100% utilization.
    annotations = {
        "autoscaling.knative.dev/target": "1",
        "autoscaling.knative.dev/target-utilization-percentage": "100",
        "autoscaling.knative.dev/max-scale": "5",
    }
    out = platform.apply(POLICY, hello_service("burst", annotations)).stdout
    assert "resourcepolicy/burst created" in out
    platform.wait_ready("burst")
    load = Load(platform.gateway, host("burst"), "/?sleep=400").start(5)
    try:
        wait_until(
            lambda: ready_by_pool(platform, "burst") == {"reserved": 2, "elastic": 3},
            60,
            "2 reserved + 3 elastic replicas",
            period=0.5,
        )
        load.concurrency = 2
        seen = []

        def shed() -> bool:
            pools = ready_by_pool(platform, "burst")
            seen.append(pools)
            live = [r for r in platform.replicas("burst") if r["state"] != "Draining"]
            return pools == {"reserved": 2} and len(live) == 2

        wait_until(shed, 60, "the elastic replicas to go", period=0.5)
        # While shrinking, the reserved replicas never went below 2: elastic went first.
        assert all(p.get("reserved", 0) == 2 for p in seen), seen
    finally:
        statuses = load.stop()
    assert statuses and set(statuses) == {200}, collections.Counter(statuses)
    pools = {p["name"]: p for p in platform.get_json("pools")["items"]}
    assert pools["reserved"]["used"]["replicas"] >= 2
    assert "reserved" in platform.cli("get", "pools").stdout
    costs = json.loads(platform.cli("cost", "-o", "json").stdout)["items"]
    burst = {c["pool"]: c for c in costs if c["service"] == "burst"}
    assert burst["elastic"]["replicaSeconds"] > 0 and burst["reserved"]["replicaSeconds"] > 0
    elastic = burst["elastic"]
    assert elastic["cost"] == pytest.approx(elastic["replicaSeconds"] * 0.0005)
    metrics = platform.api("GET", "/metrics")[1].decode()
    assert 'tidal_cost_total{pool="elastic",revision="burst-00001",service="burst"}' in metrics


def test_whole_gpus_per_replica_and_pending_with_reason(platform):
    doc = hello_service("gpu", {"autoscaling.knative.dev/min-scale": "3"})
    doc["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"nvidia.com/gpu": 1}
    }
    platform.apply(doc)
    wait_until(lambda: ready_by_pool(platform, "gpu") == {"reserved": 2}, 30, "2 GPU replicas")
    replicas = platform.replicas("gpu")
    devices = sorted(d for r in replicas if r["state"] == "Ready" for d in r["devices"])
    assert devices == ["0", "1"]
    pending = [r for r in replicas if r["state"] == "Pending"]
    assert len(pending) == 1 and "nvidia.com/gpu" in pending[0]["reason"]
    assert "pending:" in platform.cli("describe", "service", "gpu").stdout
    if kubectl_minor():  # the pools as kubectl's nodes, GPUs and who holds them
        nodes = platform.kubectl("get", "nodes")
        assert re.search(r"^reserved\s+Ready\s+reserved\s", nodes, re.M)
        assert re.search(r"^standby\s+Ready\s+elastic\s", nodes, re.M)
        described = platform.kubectl("describe", "node", "reserved")
        capacity = described.split("Capacity:")[1].split("Allocatable:")[0]
        assert re.search(r"nvidia.com/gpu:\s+2\n", capacity)
        allocated = described.split("Allocated resources:")[1]
        assert re.search(r"nvidia.com/gpu\s+2\s+2\n", allocated)  # requests, limits
        on_reserved = platform.kubectl(
            "get", "pods", "--field-selector", "spec.nodeName=reserved", "-o", "name"
        )
        ready = [r["name"] for r in replicas if r["state"] == "Ready"]
        assert all(f"pod/{name}" in on_reserved for name in ready)
    seen = {
        json.loads(platform.request(host("gpu"), "/env")[2])["CUDA_VISIBLE_DEVICES"]
        for _ in range(20)
    }
    assert seen <= {"0", "1"} and seen
    # The other service's replicas see no GPU at all.
    env = json.loads(platform.request(host("burst"), "/env")[2])
    assert env["CUDA_VISIBLE_DEVICES"] == ""


def test_bad_policy_is_rejected(platform):
    bad = json.loads(json.dumps(POLICY))
    bad["metadata"]["name"] = "bad"
    bad["spec"]["whenTryNextUnits"] = {"policy": "Sometimes"}
    result = platform.apply(bad, check=False)
    assert result.returncode != 0 and "spec.whenTryNextUnits.policy" in result.stderr
    result = platform.cli("get", "resourcepolicies", "bad", check=False)
    assert result.returncode != 0


def test_warm_standby_replica_instead_of_zero(platform):
    platform.apply(hello_service("warm", {"tidal.dev/warm-standby-pool": "standby"}))
    platform.wait_ready("warm")

    def standby_only():
        replicas = [r for r in platform.replicas("warm") if r["state"] != "Draining"]
        return [r["pool"] for r in replicas if r["state"] == "Ready"] == ["standby"] and len(
            replicas
        ) == 1

    # The initial replica goes after the stable window; a standby replica takes its place.
    wait_until(standby_only, 40, "one ready replica on the standby pool", period=0.5)
    status, headers, _ = platform.request(host("warm"))
    assert status == 200 and headers["X-Tidal-Revision"] == "warm-00001"
    metrics = platform.api("GET", "/metrics")[1].decode()
    assert 'tidal_cold_starts_total{namespace="default",revision="warm-00001"' not in metrics
    # Traffic brings a regular replica on the first pool; then the standby goes.
    wait_until(
        lambda: [r["pool"] for r in platform.replicas("warm")] == ["reserved"],
        30,
        "the regular replica to replace the standby",
        period=0.5,
    )


def test_warm_standby_pool_must_exist(platform):
    result = platform.apply(
        hello_service("nowarm", {"tidal.dev/warm-standby-pool": "nowhere"}), check=False
    )
    assert result.returncode != 0
    assert "tidal.dev/warm-standby-pool" in result.stderr and "nowhere" in result.stderr
