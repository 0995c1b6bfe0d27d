"""KubernetesRuntime against the emulated API server, with a fake ReplicaSet controller/kubelet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

from tests.kubernetes.emulator import DELETION_COST, FakeCluster, eventually
from tidal.runtime.base import ProbeSpec, Replica, ReplicaSpec, ReplicaState
from tidal.runtime.deployments import PodPlacement
from tidal.runtime.kubernetes import KubernetesRuntime
from tidal.runtime.resources import monitor_for

REVISION: dict[str, Any] = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Revision",
    "metadata": {
        "name": "hello-00001",
        "namespace": "default",
        "uid": "0b7c4a52-1d1c-4a43-9a57-6d1f0b2b1a11",
        "labels": {
            "serving.knative.dev/service": "hello",
            "serving.knative.dev/configuration": "hello",
            "serving.knative.dev/configurationGeneration": "1",
        },
    },
    "spec": {
        "containerConcurrency": 0,
        "containers": [
            {
                "image": "ghcr.io/example/hello:1",
                "command": ["python", "app.py"],
                "env": [{"name": "TARGET", "value": "world"}],
                "ports": [{"containerPort": 9000}],
                "resources": {"requests": {"cpu": "500m", "nvidia.com/gpu": 1}},
                "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 0},
                "livenessProbe": {"httpGet": {"path": "/livez"}, "failureThreshold": 5},
                "startupProbe": {"exec": {"command": ["test", "-f", "/tmp/loaded"]}},
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "envFrom": [{"secretRef": {"name": "hf"}}],
                "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
            }
        ],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
        "imagePullSecrets": [{"name": "registry"}],
        "automountServiceAccountToken": False,
    },
}
PLACEMENTS = {
    "ecs": PodPlacement({"pool": "ecs"}),
    "eci": PodPlacement(
        {"type": "virtual-kubelet"},
        ({"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"},),
    ),
}


def replica_spec(replica_id: str, pool: str = "ecs", **labels: str) -> ReplicaSpec:
    return ReplicaSpec(
        replica_id=replica_id,
        namespace="default",
        service="hello",
        revision="hello-00001",
        command=("python", "app.py"),
        env={},
        working_dir=None,
        probe=ProbeSpec(),
        log_path=Path("/dev/null"),
        pool=pool,
        labels={**REVISION["metadata"]["labels"], **labels},
    )


class Recorder:
    def __init__(self) -> None:
        self.states: dict[str, list[ReplicaState]] = {}

    def __call__(self, replica: Replica) -> None:
        self.states.setdefault(replica.replica_id, []).append(replica.state)


@pytest.fixture
async def runtime(api: ApiClient) -> AsyncIterator[KubernetesRuntime]:
    runtime = KubernetesRuntime(
        api, lambda ns, name: REVISION, PLACEMENTS, termination_grace_s=1, adopt_grace_s=0.5
    )
    yield runtime
    await runtime.close()


def deployment(cluster: FakeCluster, name: str) -> dict[str, Any] | None:
    return cluster.deployments().get(name)


async def test_start_creates_the_deployment_and_the_pod_becomes_the_replica(
    runtime: KubernetesRuntime, cluster: FakeCluster
) -> None:
    events = Recorder()
    replica = await runtime.start(replica_spec("r1"), events)
    created = await eventually(lambda: deployment(cluster, "hello-00001-ecs"))
    assert created["spec"]["replicas"] == 1
    template = created["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert labels["serving.knative.dev/service"] == "hello"
    assert labels["serving.knative.dev/configuration"] == "hello"
    assert labels["serving.knative.dev/revision"] == "hello-00001"
    assert labels["tidal.dev/pool"] == "ecs"
    pod_spec = template["spec"]
    assert pod_spec["nodeSelector"] == {"pool": "ecs"}
    container = pod_spec["containers"][0]
    assert container["image"] == "ghcr.io/example/hello:1"
    assert container["command"] == ["python", "app.py"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "TARGET": "world",
        "PORT": "9000",
        "K_SERVICE": "hello",
        "K_CONFIGURATION": "hello",
        "K_REVISION": "hello-00001",
    }
    assert container["ports"][0]["containerPort"] == 9000
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 9000}
    assert container["livenessProbe"] == {  # the kubelet restarts the container when it fails
        "httpGet": {"path": "/livez", "port": 9000},
        "periodSeconds": 10,
        "failureThreshold": 5,
    }
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["envFrom"] == [{"secretRef": {"name": "hf"}}]  # the kubelet fills it in
    assert container["volumeMounts"] == [{"name": "shm", "mountPath": "/dev/shm"}]
    assert created["spec"]["template"]["spec"]["volumes"] == REVISION["spec"]["volumes"]
    assert created["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "registry"}]
    assert created["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert created["spec"]["template"]["spec"]["enableServiceLinks"] is False  # Knative's default
    assert container["startupProbe"] == {
        "exec": {"command": ["test", "-f", "/tmp/loaded"]},
        "periodSeconds": 10,
    }
    assert created["metadata"]["ownerReferences"][0]["uid"] == REVISION["metadata"]["uid"]

    pod = (await eventually(lambda: cluster.pods(created)))[0]
    assert replica.state is ReplicaState.STARTING
    cluster.ready(pod, ip="10.1.2.3")
    await eventually(lambda: replica.state is ReplicaState.READY, message="READY")
    assert (replica.host, replica.port) == ("10.1.2.3", 9000)
    assert events.states["r1"] == [ReplicaState.STARTING, ReplicaState.READY]


async def test_pending_pods_stay_starting(runtime: KubernetesRuntime, cluster: FakeCluster) -> None:
    replica = await runtime.start(replica_spec("r1", pool="eci"), Recorder())
    created = await eventually(lambda: deployment(cluster, "hello-00001-eci"))
    assert created["spec"]["template"]["spec"]["tolerations"][0]["key"] == (
        "virtual-kubelet.io/provider"
    )
    pod = (await eventually(lambda: cluster.pods(created)))[0]
    unschedulable = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    }
    cluster.set_status(pod, {"phase": "Pending", "conditions": [unschedulable]})
    await eventually(lambda: "Insufficient" in replica.reason, message="pending reason")
    assert replica.state is ReplicaState.STARTING


async def test_stop_removes_exactly_that_pod(
    runtime: KubernetesRuntime, cluster: FakeCluster
) -> None:
    events = Recorder()
    replicas = [await runtime.start(replica_spec(f"r{i}"), events) for i in range(3)]
    created = await eventually(lambda: deployment(cluster, "hello-00001-ecs"))
    pods = await eventually(lambda: len(cluster.pods(created)) == 3 and cluster.pods(created))
    for index, pod in enumerate(pods):
        cluster.ready(pod, ip=f"10.0.0.{index + 1}")
    await eventually(lambda: all(r.state is ReplicaState.READY for r in replicas))
    victim = replicas[1]
    await runtime.stop(victim, grace_s=1)
    assert victim.state is ReplicaState.STOPPED
    left = cluster.pods(created)
    assert deployment(cluster, "hello-00001-ecs")["spec"]["replicas"] == 2
    assert sorted(p["status"]["podIP"] for p in left) == sorted(
        r.host for r in replicas if r is not victim
    )
    assert all(DELETION_COST not in (p["metadata"].get("annotations") or {}) for p in left)


async def test_a_container_that_exits_before_ready_fails_the_replica(
    runtime: KubernetesRuntime, cluster: FakeCluster
) -> None:
    replica = await runtime.start(replica_spec("r1"), Recorder())
    created = await eventually(lambda: deployment(cluster, "hello-00001-ecs"))
    pod = (await eventually(lambda: cluster.pods(created)))[0]
    status = {
        "name": "user-container",
        "image": "ghcr.io/example/hello:1",
        "imageID": "",
        "ready": False,
        "restartCount": 1,
        "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}},
    }
    cluster.set_status(pod, {"phase": "Running", "containerStatuses": [status]})
    await eventually(lambda: replica.state is ReplicaState.FAILED, message="FAILED")
    assert replica.exit_code == 3
    await eventually(lambda: deployment(cluster, "hello-00001-ecs")["spec"]["replicas"] == 0)


async def test_unit_pod_labels_get_a_deployment_of_their_own(
    runtime: KubernetesRuntime, cluster: FakeCluster
) -> None:
    await runtime.start(replica_spec("r1", pool="eci"), Recorder())
    await runtime.start(replica_spec("r2", pool="eci", **{"tidal.dev/standby": "true"}), Recorder())
    names = await eventually(lambda: len(cluster.deployments()) == 2 and cluster.deployments())
    standby = next(d for n, d in names.items() if n != "hello-00001-eci")
    assert standby["spec"]["template"]["metadata"]["labels"]["tidal.dev/standby"] == "true"


async def test_a_new_runtime_adopts_running_pods_and_removes_the_rest(
    api: ApiClient, runtime: KubernetesRuntime, cluster: FakeCluster
) -> None:
    replicas = [await runtime.start(replica_spec(f"r{i}"), Recorder()) for i in range(2)]
    created = await eventually(lambda: deployment(cluster, "hello-00001-ecs"))
    pods = await eventually(lambda: len(cluster.pods(created)) == 2 and cluster.pods(created))
    for index, pod in enumerate(pods):
        cluster.ready(pod, ip=f"10.0.0.{index + 1}")
    await eventually(lambda: all(r.state is ReplicaState.READY for r in replicas))
    await runtime.close()  # the controller goes; its pods stay

    successor = KubernetesRuntime(api, lambda ns, name: REVISION, PLACEMENTS, adopt_grace_s=0.5)
    try:
        await eventually(lambda: True)  # let the old watch wind down
        adopted = await successor.start(replica_spec("new"), Recorder())
        await eventually(lambda: adopted.state is ReplicaState.READY, message="adopted READY")
        assert adopted.host in ("10.0.0.1", "10.0.0.2")
        assert deployment(cluster, "hello-00001-ecs")["spec"]["replicas"] in (1, 2)
        # The pod nobody adopted goes after the grace period.
        await eventually(lambda: len(cluster.pods(created)) == 1, message="orphan removed")
        assert cluster.pods(created)[0]["status"]["podIP"] == adopted.host
    finally:
        await successor.close()


async def test_replica_use_comes_from_the_metrics_api(
    runtime: KubernetesRuntime, cluster: FakeCluster
) -> None:
    """`kubectl top`'s source: PodMetrics per pod; a pod without them is left out."""
    replica = await runtime.start(replica_spec("r1"), Recorder())
    created = await eventually(lambda: deployment(cluster, "hello-00001-ecs"))
    pod = (await eventually(lambda: cluster.pods(created)))[0]
    cluster.ready(pod)
    await eventually(lambda: replica.state is ReplicaState.READY, message="READY")
    monitor = monitor_for(runtime)
    assert monitor.sample([replica]) == {}
    cluster.report_usage(pod, cpu="250m", memory="64Mi")
    measured = monitor.sample([replica])["r1"]
    assert measured.cpu_cores == 0.25 and measured.memory_bytes == 64 * 2**20
