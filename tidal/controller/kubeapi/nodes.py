"""Pools as core/v1 Nodes on one machine (docs/kubectl.md#nodes): a pool is where replicas are
placed, as a node is where pods are scheduled, so `kubectl get nodes` lists the pools and
`kubectl describe node reserved` shows what it holds (its capacity in CPU, memory, replicas and
`nvidia.com/gpu`, the pods placed on it, what they request) and `kubectl top node` what they
use (against this machine's CPUs and memory where the pool does not bound them). A pod's
`spec.nodeName` is its pool. Views of the live placement, never stored.
"""

from __future__ import annotations

import os
import platform as host
import uuid
from typing import Any

import psutil

from tidal.api.pools import GPU
from tidal.runtime.deployments import POOL_LABEL

HOST = "127.0.0.1"
ROLE_LABEL = "node-role.kubernetes.io/"  # kubectl's ROLES column: the pool's kind


def nodes(usage: list[dict[str, Any]], started: str, kubelet_version: str) -> list[dict[str, Any]]:
    """A Node for each pool of `usage` (Platform.pool_usage), up since `started`."""
    return [node(pool, started, kubelet_version) for pool in usage]


def node(pool: dict[str, Any], started: str, kubelet_version: str) -> dict[str, Any]:
    name = pool["name"]
    capacity = _quantities(pool["capacity"])
    labels = {
        **pool["labels"],
        POOL_LABEL: name,
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        f"{ROLE_LABEL}{pool['kind']}": "",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"tidal-node/{name}")),
            "resourceVersion": "1",  # a view: see tidal.controller.kubeapi.pods
            "creationTimestamp": started,
            "labels": labels,
            "annotations": {"tidal.dev/startup-delay": f"{pool['startupDelaySeconds']:g}s"},
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": f"tidal {pool['kind']} pool",
                    "lastHeartbeatTime": started,
                    "lastTransitionTime": started,
                },
            ],
            "addresses": [
                {"type": "InternalIP", "address": HOST},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kubeletVersion": kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    host.machine(), host.machine()
                ),
                "osImage": _os_image(),
                "kernelVersion": host.release(),
                "containerRuntimeVersion": "tidal://local",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def gone_node(name: str, _: str) -> dict[str, Any]:
    """What a watch reports of a node that is gone when only its name is known."""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": {}}


def _os_image() -> str:
    """The distribution's name, as the kubelet reports it (`Debian GNU/Linux 12 (bookworm)`)."""
    try:
        return host.freedesktop_os_release().get("PRETTY_NAME", host.system())
    except OSError:
        return host.system()


def _quantities(capacity: dict[str, Any]) -> dict[str, str]:
    """What a pool bounds, as a node's capacity: a pool that does not bound CPU or memory has
    this machine's, where all its replicas run; unbounded replicas are left out."""
    cpu = capacity["cpu"] if capacity["cpu"] is not None else os.cpu_count() or 1
    memory = capacity["memory"] if capacity["memory"] is not None else psutil.virtual_memory().total
    quantities = {"cpu": f"{round(cpu * 1000)}m", "memory": f"{int(memory) // 1024}Ki"}
    if capacity["replicas"] is not None:
        quantities["pods"] = str(capacity["replicas"])
    if capacity["gpus"]:
        quantities[GPU] = str(len(capacity["gpus"]))
    return quantities
