"""The controller as `tidal kubernetes controller` runs it, on the emulator, and what tests of
it share."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient

from tests.kubernetes.emulator import FakeCluster
from tidal.api.config import parse_config
from tidal.controller.platform import Platform
from tidal.kubernetes.controller import cluster_platform, lead
from tidal.kubernetes.spec_watch import SpecWatch
from tidal.runtime.kubernetes import KubernetesRuntime
from tidal.store.kubernetes import RESOURCES, Resources

CONFIG = parse_config(
    {
        "pools": [
            {"name": "ecs", "kind": "reserved", "labels": {"pool": "ecs"}},
            {"name": "eci", "kind": "elastic", "labels": {"type": "virtual-kubelet"}},
        ]
    }
)
SERVICE: dict[str, Any] = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "hello", "namespace": "default"},
    "spec": {
        "template": {
            "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": "1"}},
            "spec": {
                "containers": [
                    {
                        "image": "ghcr.io/example/hello:1",
                        "command": ["python", "app.py"],
                        "ports": [{"containerPort": 9000}],
                    }
                ]
            },
        }
    },
}
POLICY: dict[str, Any] = {
    "apiVersion": "scheduling.alibabacloud.com/v1alpha1",
    "kind": "ResourcePolicy",
    "metadata": {"name": "ecs-first", "namespace": "default"},
    "spec": {
        "selector": {"serving.knative.dev/service": "hello"},
        "units": [
            {"resource": "ecs", "nodeSelector": {"pool": "ecs"}, "max": 2},
            {"resource": "eci", "nodeSelector": {"type": "virtual-kubelet"}},
        ],
    },
}
KEY = "default/hello-00001"


class Controllers:
    """Platforms on the Kubernetes store and runtime, each as a controller process would be."""

    def __init__(self, api: ApiClient, data_dir: Path, resources: Resources = RESOURCES) -> None:
        self.api = api
        self.data_dir = data_dir
        self.resources = resources  # where the install put tidal's kinds
        self.running: list[Platform] = []
        self.watches: dict[int, SpecWatch] = {}

    async def start(self) -> Platform:
        platform = cluster_platform(CONFIG, self.data_dir, self.api, resources=self.resources)
        self.watches[id(platform)] = await lead(platform, self.api, self.resources)
        self.running.append(platform)
        return platform

    async def stop(self, platform: Platform) -> None:
        """What the controller does when it goes: stop following the CRs, detach (its pods
        stay), then stop."""
        self.running.remove(platform)
        self.watches.pop(id(platform)).close()
        assert isinstance(platform.runtime, KubernetesRuntime)
        platform.runtime.detach()
        await platform.stop()


def replicas(cluster: FakeCluster) -> dict[str, int]:
    return {name: d["spec"]["replicas"] for name, d in cluster.deployments().items()}


def ready_all(cluster: FakeCluster) -> None:
    for index, pod in enumerate(cluster.pods()):
        if not (pod.get("status") or {}).get("podIP"):
            cluster.ready(pod, ip=f"10.0.0.{index + 1}")


def as_stored(doc: dict[str, Any], resources: Resources = RESOURCES) -> dict[str, Any]:
    """A user's document as kubectl writes it to the cluster: the install's group for its
    kind."""
    return {**copy.deepcopy(doc), "apiVersion": resources[doc["kind"]].api_version}


class CustomResources:
    """kubectl's verbs on tidal's custom resources of a kind, in the default namespace, where
    `resources` (the install's API groups) puts them."""

    def __init__(self, api: ApiClient, resources: Resources = RESOURCES) -> None:
        self.api = client.CustomObjectsApi(api)
        self.resources = resources

    def where(self, kind: str) -> tuple[str, str, str, str]:
        resource = self.resources[kind]
        return resource.group, resource.version, "default", resource.plural

    def create(self, doc: dict[str, Any]) -> None:
        stored = as_stored(doc, self.resources)
        self.api.create_namespaced_custom_object(*self.where(doc["kind"]), stored)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        listed = self.api.list_namespaced_custom_object(*self.where(kind))
        return next((o for o in listed["items"] if o["metadata"]["name"] == name), None)

    def edit(self, kind: str, name: str, change: Any) -> None:
        """`kubectl edit`: read, change, replace (at the version read)."""
        doc = self.get(kind, name)
        assert doc is not None
        change(doc)
        self.api.replace_namespaced_custom_object(*self.where(kind), name, doc)

    def patch(self, kind: str, name: str, patch: dict[str, Any]) -> None:
        """`kubectl patch --type merge` (and what `kubectl apply` sends)."""
        self.api.patch_namespaced_custom_object(*self.where(kind), name, patch)

    def delete(self, kind: str, name: str) -> None:
        self.api.delete_namespaced_custom_object(*self.where(kind), name)

    def names(self, kind: str) -> list[str]:
        listed = self.api.list_namespaced_custom_object(*self.where(kind))
        return sorted(o["metadata"]["name"] for o in listed["items"])

    def ready(self, name: str) -> dict[str, Any]:
        service = self.get("Service", name) or {}
        return ((service.get("status") or {}).get("conditions") or [{}])[0]


def admission_review(
    uid: str,
    obj: dict[str, Any] | None,
    operation: str = "CREATE",
    user: str = "kubernetes-admin",
    old: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The AdmissionReview the API server sends for a write of `obj` (`old` before it)."""
    doc = obj or old
    assert doc is not None
    resource = RESOURCES[doc["kind"]]
    where = {"group": resource.group, "version": resource.version}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {**where, "kind": doc["kind"]},
            "resource": {**where, "resource": resource.plural},
            "namespace": "default",
            "name": doc["metadata"]["name"],
            "operation": operation,
            "userInfo": {"username": user},
            "object": None if obj is None else as_stored(obj),
            "oldObject": None if old is None else as_stored(old),
        },
    }
