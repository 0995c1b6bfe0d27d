"""Revisions as apps/v1 Deployments on one machine (docs/kubectl.md#deployments): Knative makes
one Deployment per revision, named `<revision>-deployment`, and people reach a revision's pods
through it (`kubectl get deploy`, `kubectl logs deploy/NAME`, `kubectl exec deploy/NAME`,
`kubectl port-forward deploy/NAME`, which pick a pod by its selector). Like pods, these are views
of the live revisions, never stored; the autoscaler owns `replicas`, so they are read-only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from tidal.controller.kubeapi.pods import pod_containers
from tidal.controller.workload import Lifecycle, RevisionWorkload
from tidal.runtime.base import ReplicaState
from tidal.runtime.deployments import REVISION_LABEL

SUFFIX = "-deployment"  # Knative's: `hello-00001-deployment`

# The stored revision's creationTimestamp, by namespace and name (None once it is gone).
Created = Callable[[str, str], str | None]


def deployments(
    workloads: Iterable[RevisionWorkload], namespace: str | None, created: Created
) -> list[dict[str, Any]]:
    return [
        deployment(workload, created)
        for workload in workloads
        if namespace is None or workload.spec.namespace == namespace
    ]


def deployment(workload: RevisionWorkload, created: Created) -> dict[str, Any]:
    spec = workload.spec
    name = f"{spec.revision}{SUFFIX}"
    selector = {REVISION_LABEL: spec.revision}
    current = len(workload.replicas) + len(workload.provisioning) + len(workload.pending)
    ready = sum(r.state is ReplicaState.READY for r in workload.replicas.values())
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": spec.namespace,
        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"tidal-deployment/{spec.namespace}/{name}")),
        "resourceVersion": "1",  # a view: see tidal.controller.kubeapi.pods
        "generation": 1,
        "labels": dict(spec.labels),
    }
    if timestamp := created(spec.namespace, spec.revision):
        metadata["creationTimestamp"] = timestamp
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "replicas": current,
        "updatedReplicas": current,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "conditions": _conditions(workload, ready),
    }
    if current > ready:
        status["unavailableReplicas"] = current - ready
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": workload.desired,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": dict(spec.labels)},
                "spec": pod_containers(workload),
            },
            "progressDeadlineSeconds": int(spec.progress_deadline_s),
        },
        "status": status,
    }


def _conditions(workload: RevisionWorkload, ready: int) -> list[dict[str, str]]:
    """Available once as many replicas are ready as the autoscaler wants; Progressing until the
    revision fails (its reason then says why, as a deadline exceeded does)."""
    available = ready >= workload.desired
    conditions = [
        {
            "type": "Available",
            "status": str(available),
            "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
        }
    ]
    if workload.state is Lifecycle.FAILED and workload.failure is not None:
        reason, message = workload.failure
        conditions.append(
            {"type": "Progressing", "status": "False", "reason": reason, "message": message}
        )
    else:
        conditions.append(
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
        )
    return conditions


def gone_deployment(name: str, namespace: str) -> dict[str, Any]:
    """What a watch reports of a deployment that is gone when only its name is known."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {}, "template": {"spec": {"containers": []}}},
        "status": {},
    }
