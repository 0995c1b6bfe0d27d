"""Pure pieces of the Kubernetes runtime: Deployments from Knative revisions, pod states.

One Deployment per (revision, pool), plus the per-replica labels the scheduler adds (a
ResourcePolicy unit's podLabels, the warm-standby label) since one Deployment has one pod
template. Pods carry Knative's labels (serving.knative.dev/service, configuration, revision),
the pool, and land where the pool is: its labels are the nodeSelector, elastic pools tolerate
virtual-kubelet's taint.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidal.api.pools import GPU, Pool
from tidal.api.service import DEFAULT_CONTAINER_PORT, INIT_CONTAINER, default_container_names

MANAGED_BY = {"app.kubernetes.io/managed-by": "tidal"}
POOL_LABEL = "tidal.dev/pool"
DEPLOYMENT_LABEL = "tidal.dev/deployment"
SERVICE_LABEL = "serving.knative.dev/service"
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
REVISION_LABEL = "serving.knative.dev/revision"
# Labels that change while a revision lives, so its pods do not carry them (Knative's
# excludeLabels): which route sends it traffic, and its routing state.
ROUTING_LABELS = ("serving.knative.dev/route", "serving.knative.dev/routingState")
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
LOWEST_DELETION_COST = str(-(2**31))
VIRTUAL_KUBELET_TOLERATION = {
    "key": "virtual-kubelet.io/provider",
    "operator": "Exists",
    "effect": "NoSchedule",
}


@dataclass(frozen=True)
class PodPlacement:
    """Where a pool's pods run."""

    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, str]] = ()


def placements_from_pools(pools: Sequence[Pool]) -> dict[str, PodPlacement]:
    """A pool's labels are node labels; elastic pools also tolerate virtual-kubelet nodes."""
    return {
        pool.name: PodPlacement(
            dict(pool.labels), (VIRTUAL_KUBELET_TOLERATION,) if pool.kind == "elastic" else ()
        )
        for pool in pools
    }


def deployment_name(revision: str, pool: str, extra_labels: Mapping[str, str]) -> str:
    """`<revision>-<pool>`, with a digest of the extra labels; at most 63 characters."""
    name = f"{revision}-{pool}"
    if extra_labels:
        name += "-" + _digest(sorted(extra_labels.items()))[:6]
    return name if len(name) <= 63 else f"{name[:54]}-{_digest(name)[:8]}"


def _digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


def serving_container(revision_spec: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The name and spec of the container with the port (Knative's serving container), or of
    the only one."""
    containers = revision_spec["containers"]
    init = revision_spec.get("initContainers") or []
    names = default_container_names(
        [c.get("name") for c in containers], taken=[c.get("name") for c in init]
    )
    index = next((i for i, c in enumerate(containers) if c.get("ports")), 0)
    return names[index], containers[index]


def container_port(container: Mapping[str, Any]) -> int:
    ports = container.get("ports") or []
    return int(ports[0]["containerPort"]) if ports else DEFAULT_CONTAINER_PORT


def revision_labels(revision: Mapping[str, Any]) -> dict[str, str]:
    """The labels every pod of the revision carries, as Knative labels its pods."""
    meta = revision["metadata"]
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in ROUTING_LABELS}
    service = labels.get(SERVICE_LABEL, meta["name"])
    labels.update(
        {
            SERVICE_LABEL: service,
            CONFIGURATION_LABEL: labels.get(CONFIGURATION_LABEL, service),
            REVISION_LABEL: meta["name"],
        }
    )
    return labels


def deployment_manifest(
    revision: Mapping[str, Any],
    name: str,
    pool: str,
    placement: PodPlacement,
    extra_labels: Mapping[str, str],
    termination_grace_s: float,
    revision_api_version: str,
) -> dict[str, Any]:
    """The Deployment for one revision on one pool, at zero replicas; `revision_api_version`
    is where the cluster keeps Revisions (tidal.store.kubernetes)."""
    meta = revision["metadata"]
    labels = {**revision_labels(revision), **extra_labels, POOL_LABEL: pool, **MANAGED_BY}
    selector = {DEPLOYMENT_LABEL: name, **MANAGED_BY}
    pod_labels = {**labels, **selector}
    spec = revision["spec"]
    containers, init = spec["containers"], spec.get("initContainers") or []
    serving, _ = serving_container(spec)
    given, init_given = [c.get("name") for c in containers], [c.get("name") for c in init]
    names = default_container_names(given, taken=init_given)
    pod_spec: dict[str, Any] = {
        "containers": [
            _container(c, name, labels, serving=name == serving)
            for c, name in zip(containers, names, strict=True)
        ],
        "terminationGracePeriodSeconds": int(termination_grace_s),
        # As Knative by default: no docker-link variables for every Service.
        "enableServiceLinks": bool(spec.get("enableServiceLinks", False)),
    }
    if init:
        init_names = default_container_names(init_given, INIT_CONTAINER, given)
        pod_spec["initContainers"] = [
            _container(c, name, labels, serving=False)
            for c, name in zip(init, init_names, strict=True)
        ]
    if placement.node_selector:
        pod_spec["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in placement.tolerations]
    if spec.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = spec["serviceAccountName"]
    if spec.get("automountServiceAccountToken") is False:
        pod_spec["automountServiceAccountToken"] = False
    for key in ("volumes", "imagePullSecrets"):  # the kubelet reads the cluster's Secrets
        if spec.get(key):
            pod_spec[key] = copy.deepcopy(spec[key])
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": meta["namespace"], "labels": labels},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }
    if meta.get("uid"):  # the tidal Revision owns it: deleting the revision deletes its pods
        deployment["metadata"]["ownerReferences"] = [
            {
                "apiVersion": revision_api_version,
                "kind": "Revision",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
            }
        ]
    return deployment


def _container(
    container: Mapping[str, Any], name: str, labels: Mapping[str, str], serving: bool
) -> dict[str, Any]:
    """A pod's container as Knative makes it: Knative's variables in every one; the port, PORT
    and the probes in the serving container only (sidecars are not probed)."""
    port = container_port(container)
    service = labels[SERVICE_LABEL]
    env = [  # references to the cluster's Secrets and ConfigMaps are the kubelet's to fill in
        {"name": e["name"], "valueFrom": copy.deepcopy(e["valueFrom"])}
        if e.get("valueFrom")
        else {"name": e["name"], "value": str(e.get("value", ""))}
        for e in container.get("env") or []
    ]
    if serving:
        env.append({"name": "PORT", "value": str(port)})
    env += [
        {"name": "K_SERVICE", "value": service},
        {"name": "K_CONFIGURATION", "value": labels[CONFIGURATION_LABEL]},
        {"name": "K_REVISION", "value": labels[REVISION_LABEL]},
    ]
    result: dict[str, Any] = {"name": name, "image": container["image"], "env": env}
    if serving:
        result["ports"] = [{"name": "user-port", "containerPort": port, "protocol": "TCP"}]
        result["readinessProbe"] = _probe(container.get("readinessProbe") or {}, port, 1)
        for key in ("livenessProbe", "startupProbe"):  # the kubelet restarts on failure
            if container.get(key):
                result[key] = _probe(container[key], port, 10)
    copied = (
        "command",
        "args",
        "workingDir",
        "imagePullPolicy",
        "securityContext",
        "envFrom",
        "volumeMounts",
    )
    for key in (*copied, "terminationMessagePath", "terminationMessagePolicy"):
        if container.get(key):
            result[key] = copy.deepcopy(container[key])
    resources = _resources(container.get("resources") or {})
    if resources:
        result["resources"] = resources
    return result


def _probe(probe: Mapping[str, Any], port: int, default_period: int) -> dict[str, Any]:
    """Knative's probe on the user port, with `default_period` for a period of 0: for readiness
    (queue-proxy's aggressive probing) 1 s, the shortest the kubelet knows; for liveness and
    startup 10 s, the kubelet's default."""
    handler: dict[str, Any]
    if probe.get("httpGet") is not None:
        handler = {"httpGet": {"path": probe["httpGet"].get("path", "/"), "port": port}}
    elif probe.get("exec") is not None:
        handler = {"exec": {"command": list(probe["exec"]["command"])}}
    elif probe.get("grpc") is not None:
        handler = {"grpc": {"port": port}}
        if probe["grpc"].get("service"):
            handler["grpc"]["service"] = probe["grpc"]["service"]
    else:
        handler = {"tcpSocket": {"port": port}}
    result: dict[str, Any] = {
        **handler,
        "periodSeconds": int(probe.get("periodSeconds") or default_period),
    }
    for key in ("initialDelaySeconds", "timeoutSeconds", "failureThreshold", "successThreshold"):
        if probe.get(key) is not None:
            result[key] = probe[key]
    return result


def _resources(resources: Mapping[str, Any]) -> dict[str, Any]:
    """Requests and limits as written; a GPU request is also a limit (Kubernetes wants both)."""
    result = {
        key: {name: str(amount) for name, amount in (resources.get(key) or {}).items()}
        for key in ("requests", "limits")
        if resources.get(key)
    }
    gpus = result.get("requests", {}).get(GPU)
    if gpus is not None and GPU not in result.get("limits", {}):
        result.setdefault("limits", {})[GPU] = gpus
    return result


@dataclass(frozen=True)
class PodState:
    """What the runtime reads from a pod: readiness, address, an exit, why it waits."""

    ready: bool
    ip: str | None
    exit_code: int | None
    failed: bool
    terminating: bool
    reason: str


def pod_state(pod: Mapping[str, Any]) -> PodState:
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready", {}).get("status") == "True"
    exit_code, reason = None, ""
    for container in status.get("containerStatuses") or []:
        for state in (container.get("state") or {}, container.get("lastState") or {}):
            if state.get("terminated"):
                exit_code = int(state["terminated"].get("exitCode", 0))
                reason = state["terminated"].get("reason") or f"exit code {exit_code}"
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and not reason:
            reason = waiting.get("reason", "")
    scheduled = conditions.get("PodScheduled", {})
    if not reason and scheduled.get("status") == "False":
        reason = f"{scheduled.get('reason', 'Unschedulable')}: {scheduled.get('message', '')}"
    return PodState(
        ready=ready,
        ip=status.get("podIP"),
        exit_code=exit_code,
        failed=status.get("phase") == "Failed",
        terminating=bool(pod.get("metadata", {}).get("deletionTimestamp")),
        reason=reason or status.get("phase", "Pending"),
    )
