"""Replicas as core/v1 Pods, for `kubectl get pods`, `kubectl logs` and `kubectl delete pod` on
one machine (docs/kubectl.md#pods). A replica is what a pod is on a cluster: one per running
copy of a revision, with Knative's labels, a container per manifest container, Ready when the
revision's readiness probe passes. The objects are views of the live replicas, never stored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tidal.api.service import Container
from tidal.controller.workload import RevisionWorkload
from tidal.runtime.base import Replica, ReplicaState
from tidal.runtime.deployments import POOL_LABEL

# kubectl logs and exec pick this container when none is named (the serving one).
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
HOST = "127.0.0.1"
# Wall-clock time at monotonic 0, taken once, so a replica's start reads the same every time.
WALL_AT_MONOTONIC_ZERO = time.time() - time.monotonic()


def pods(workloads: Iterable[RevisionWorkload], namespace: str | None) -> list[dict[str, Any]]:
    """Every replica of these revisions as a Pod, oldest first within each revision: running
    ones, ones waiting for their pool, and ones pending for want of room."""
    found = []
    for workload in workloads:
        if namespace is not None and workload.spec.namespace != namespace:
            continue
        for replica in workload.replicas.values():
            status = _running(workload, replica)
            found.append(_pod(workload, replica.replica_id, replica.started_at, status))
        for replica_id, entry in workload.provisioning.items():
            status = {**_waiting("ContainerCreating"), "pool": entry.pool}
            found.append(_pod(workload, replica_id, entry.since, status))
        for index, pending in enumerate(workload.pending):
            name = f"{workload.spec.revision}-pending-{index}"
            found.append(_pod(workload, name, None, _unschedulable(pending.reason)))
    return found


def pod_uid(namespace: str, name: str) -> str:
    """The same for every view of one replica's pod, so that its events find it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"tidal-pod/{namespace}/{name}"))


def gone_pod(name: str, namespace: str) -> dict[str, Any]:
    """What a watch reports of a pod that is gone when only its name is known."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": []},
        "status": {"phase": "Succeeded", "containerStatuses": []},
    }


def container_log(
    workload: RevisionWorkload, replica: Replica, container: str, previous: bool = False
) -> Path | None:
    """The log file of one container of a replica (with `previous`, of a sidecar's instance
    before its last restart), None for a container it has not."""
    spec = replica.spec
    if container == workload.spec.container_name:
        return None if previous else spec.log_path
    for sidecar in spec.sidecars:
        if sidecar.name == container:
            return spec.previous_log_of(sidecar) if previous else spec.log_of(sidecar)
    for init in spec.init_containers:
        if init.name == container:
            return None if previous else spec.log_of(init)
    return None


def container_names(workload: RevisionWorkload) -> list[str]:
    return [workload.spec.container_name, *(s.name for s in workload.spec.sidecars)]


def init_container_names(workload: RevisionWorkload) -> list[str]:
    return [other.name for other in workload.spec.init_containers]


def _init_statuses(workload: RevisionWorkload, done: int, running: bool) -> list[dict[str, Any]]:
    """The init containers' states: the first `done` completed, the next running (when
    `running`), the rest waiting."""
    statuses = []
    for index, other in enumerate(workload.spec.init_containers):
        if index < done:
            state: dict[str, Any] = {"terminated": {"exitCode": 0, "reason": "Completed"}}
        elif index == done and running:
            state = {"running": {}}
        else:
            state = {"waiting": {"reason": "PodInitializing"}}
        statuses.append(
            {
                "name": other.name,
                "image": other.image.image,
                "imageID": "",
                "ready": index < done,
                "restartCount": 0,
                "state": state,
            }
        )
    return statuses


def _pod(
    workload: RevisionWorkload, name: str, since: float | None, status: dict[str, Any]
) -> dict[str, Any]:
    spec = workload.spec
    labels = {**spec.labels, **workload.replica_labels.get(name, {})}
    if status.get("pool"):
        labels[POOL_LABEL] = status["pool"]
    meta: dict[str, Any] = {
        "name": name,
        "namespace": spec.namespace,
        "uid": pod_uid(spec.namespace, name),
        # Not stored, so never versioned: one version, which a list reports, so that a watch
        # from it (`kubectl get -w` lists first) sends changes only.
        "resourceVersion": "1",
        "labels": labels,
        "annotations": {DEFAULT_CONTAINER: spec.container_name},
    }
    started = _timestamp(since)
    if started:
        meta["creationTimestamp"] = started
    if status.get("terminating"):
        meta["deletionTimestamp"] = _timestamp(time.monotonic())  # being drained and stopped
    images = _images(workload)
    ready = status["ready"]
    containers = [
        _container_status(container, images[container], status, container == spec.container_name)
        for container in container_names(workload)
    ]
    conditions = [
        {"type": "PodScheduled", **status["scheduled"]},
        {"type": "Ready", "status": "True" if ready else "False"},
        {"type": "ContainersReady", "status": "True" if ready else "False"},
    ]
    pod_status: dict[str, Any] = {
        "phase": "Running" if status["running"] else "Pending",
        "conditions": conditions,
        "containerStatuses": containers,
    }
    if spec.init_containers:
        done = len(spec.init_containers) if status["running"] else status.get("init_done", 0)
        pod_status["initContainerStatuses"] = _init_statuses(
            workload, done, status.get("initializing", False)
        )
    if status["running"]:
        pod_status.update(hostIP=HOST, podIP=HOST, podIPs=[{"ip": HOST}], startTime=started)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"nodeName": status.get("pool", ""), **pod_containers(workload)},
        "status": pod_status,
    }


def _container_status(
    name: str, image: str, status: dict[str, Any], serving: bool
) -> dict[str, Any]:
    """One container's status: a sidecar restarted in place counts its restarts and shows how
    it last ended, and waits (CrashLoopBackOff) while it is down."""
    down, last_exit = status.get("down", {}), status.get("last_exit", {})
    entry: dict[str, Any] = {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": status.get("serving_ready", status["ready"])
        if serving
        else status["running"] and name not in down,
        "started": status["running"] and name not in down,
        "restartCount": status.get("restarts", {}).get(name, 0),
        "state": {"waiting": {"reason": down[name]}} if name in down else status["state"],
    }
    if name in last_exit:
        code = last_exit[name]
        reason = "Error" if code else "Completed"
        entry["lastState"] = {"terminated": {"exitCode": code, "reason": reason}}
    return entry


def _images(workload: RevisionWorkload) -> dict[str, str]:
    """Each container's image by name; "" for a process replica's, which has none."""
    spec = workload.spec
    images = {spec.container_name: spec.image.image if spec.image else ""}
    images.update({s.name: s.image.image for s in spec.sidecars})
    return images


def _resources(container: Container) -> dict[str, Any]:
    """The container's requests and limits (`kubectl describe node` adds them up), or nothing;
    a limit with no request is also the request, as the API server defaults it."""
    given = container.resources
    wanted = {
        kind: {name: str(value) for name, value in values.items()}
        for kind, values in (
            ("requests", {**given.limits, **given.requests}),
            ("limits", given.limits),
        )
        if values
    }
    return {"resources": wanted} if wanted else {}


def pod_containers(workload: RevisionWorkload) -> dict[str, Any]:
    """The containers of a revision's pods, as a pod's spec lists them: the serving one with
    its port, its sidecars, its init containers."""
    spec, images = workload.spec, _images(workload)
    serving = {"containerPort": spec.container.port, "protocol": "TCP"}
    if spec.container.ports and spec.container.ports[0].name:
        serving["name"] = spec.container.ports[0].name
    manifests = [spec.container, *(sidecar.container for sidecar in spec.sidecars)]
    containers: list[dict[str, Any]] = [
        {"name": name, "image": images[name], **_resources(manifest)}
        for name, manifest in zip(container_names(workload), manifests, strict=True)
    ]
    containers[0]["ports"] = [serving]
    return {
        "initContainers": [
            {"name": other.name, "image": other.image.image} for other in spec.init_containers
        ],
        "containers": containers,
    }


def _running(workload: RevisionWorkload, replica: Replica) -> dict[str, Any]:
    """A started replica: running once its process (or container) is, ready once probed."""
    if replica.pid is None and replica.state is ReplicaState.STARTING:
        waiting = _waiting(replica.phase or "ContainerCreating")
        initializing = replica.phase.startswith("Init:")  # Init:<done>/<all>, from the runtime
        done = int(replica.phase[5:].split("/")[0]) if initializing else 0
        return {
            **waiting,
            "pool": replica.spec.pool,
            "initializing": initializing,
            "init_done": done,
        }
    ready = replica.state is ReplicaState.READY
    return {
        "running": True,
        "ready": ready,
        # The serving container stays ready while a sidecar is down; the pod is not.
        "serving_ready": ready or (replica.probe_ready and bool(replica.down)),
        "restarts": replica.restarts,
        "down": replica.down,
        "last_exit": replica.last_exit,
        "state": {"running": {"startedAt": _timestamp(replica.started_at)}},
        "scheduled": {"status": "True"},
        "pool": replica.spec.pool,
        "terminating": workload.is_stopping(replica.replica_id),
    }


def _waiting(reason: str) -> dict[str, Any]:
    return {
        "running": False,
        "ready": False,
        "state": {"waiting": {"reason": reason}},
        "scheduled": {"status": "True"},
    }


def _unschedulable(why: str) -> dict[str, Any]:
    """No pool has room: Pending, as the scheduler leaves a pod it cannot place."""
    return {
        "running": False,
        "ready": False,
        "state": {"waiting": {}},
        "scheduled": {"status": "False", "reason": "Unschedulable", "message": why},
    }


def pod_status_column(pod: dict[str, Any]) -> str:
    """kubectl's STATUS of a pod: Terminating, the reason a container waits, or the phase."""
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for container in pod["status"].get("containerStatuses", []):
        reason = container["state"].get("waiting", {}).get("reason")
        if reason:
            return str(reason)
    return str(pod["status"]["phase"])


def pod_ready_column(pod: dict[str, Any]) -> str:
    """kubectl's READY of a pod: ready containers / containers."""
    containers = pod["status"].get("containerStatuses", [])
    return f"{sum(c['ready'] for c in containers)}/{len(containers)}"


def _timestamp(monotonic: float | None) -> str:
    """A time of `time.monotonic()` as the RFC 3339 wall-clock time Kubernetes writes."""
    if monotonic is None:
        return ""
    wall = WALL_AT_MONOTONIC_ZERO + monotonic
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
