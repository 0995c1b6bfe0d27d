"""KubernetesStore against the emulated API server: CRs of tidal's groups, Knative-shaped."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from tests.controller.fakes import FakeClock, FakeRuntime
from tidal.api.config import load_config
from tidal.api.errors import InvalidSpec
from tidal.controller.platform import Platform
from tidal.store.kubernetes import KubernetesStore
from tidal.store.sqlite import Conflict


def service(name: str = "hello", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"template": {"spec": {"containers": [{"image": "hello:1"}]}}},
        "status": {"latestCreatedRevisionName": f"{name}-00001"},
    }


def test_put_stores_a_custom_resource_of_tidals_group(api: ApiClient) -> None:
    store = KubernetesStore(api)
    stored = store.put(service())
    assert stored["metadata"]["resourceVersion"] and stored["metadata"]["uid"]
    raw = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "serving.tidal.dev", "v1", "default", "services", "hello"
    )
    assert raw["apiVersion"] == "serving.tidal.dev/v1"
    assert raw["spec"] == service()["spec"]
    assert raw["status"] == {"latestCreatedRevisionName": "hello-00001"}  # via /status
    got = store.get("Service", "default", "hello")
    assert got is not None
    assert got["apiVersion"] == "serving.knative.dev/v1"  # what the user applied
    assert got["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


def test_expected_version_conflicts_like_the_sqlite_store(api: ApiClient) -> None:
    store = KubernetesStore(api)
    first = copy.deepcopy(store.put(service()))
    store.put(service())  # someone else wrote since `first` was read
    with pytest.raises(Conflict):
        store.put(service(), expected_version=first["metadata"]["resourceVersion"])
    with pytest.raises(Conflict):
        store.put(service("absent"), expected_version="1")
    current = store.get("Service", "default", "hello")
    assert current is not None
    store.put(service(), expected_version=current["metadata"]["resourceVersion"])


def test_list_by_namespace_and_labels_and_delete(api: ApiClient) -> None:
    store = KubernetesStore(api)
    store.put(service("b", team="x"))
    store.put(service("a", team="y"))
    other = service("c", team="x")
    other["metadata"]["namespace"] = "other"
    store.put(other)
    assert [o["metadata"]["name"] for o in store.list("Service")] == ["a", "b", "c"]
    assert [o["metadata"]["name"] for o in store.list("Service", "default")] == ["a", "b"]
    assert [o["metadata"]["name"] for o in store.list("Service", None, {"team": "x"})] == [
        "b",
        "c",
    ]
    assert store.delete("Service", "default", "a") is True
    assert store.delete("Service", "default", "a") is False
    assert store.get("Service", "default", "a") is None


def test_a_failed_transaction_undoes_its_writes(api: ApiClient) -> None:
    store = KubernetesStore(api)
    store.put(service("kept"))
    with pytest.raises(Conflict), store.transaction():
        store.put(service("new"))
        changed = service("kept")
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = "hello:2"
        store.put(changed)
        store.put(service("third"), expected_version="stale")
    assert store.get("Service", "default", "new") is None
    kept = store.get("Service", "default", "kept")
    assert kept is not None
    assert kept["spec"] == service()["spec"]


async def test_on_kubernetes_secrets_are_the_clusters(api: ApiClient, tmp_path: Path) -> None:
    """A Secret is refused by `tidal apply` there, saying where it belongs, and a service that
    refers to one (in its environment or a volume) is not checked against tidal's store: the
    kubelet fills it in. Every replica is a pod, so one with a command may have volumes."""
    platform = Platform(load_config(None), tmp_path, FakeRuntime(FakeClock()), KubernetesStore(api))
    try:
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf"}}
        with pytest.raises(InvalidSpec, match="on Kubernetes a Secret is the cluster's"):
            platform.apply([secret])
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}}
        with pytest.raises(InvalidSpec, match="on Kubernetes a Namespace is the cluster's"):
            platform.apply([namespace])
        assert platform.namespaces is None  # namespaces made and deleted by the cluster
        doc = service()
        doc.pop("status")
        container = doc["spec"]["template"]["spec"]["containers"][0]
        container["command"] = ["python", "app.py"]
        container["env"] = [
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
        ]
        container["volumeMounts"] = [{"name": "hf", "mountPath": "/etc/hf", "readOnly": True}]
        volumes = [{"name": "hf", "secret": {"secretName": "hf"}}]
        doc["spec"]["template"]["spec"]["volumes"] = volumes
        platform.apply([doc])
        spec = platform.services["default/hello"].service.spec.template.spec
        assert platform.resolve_volumes("default", spec.volumes) == ()
        del container["image"]  # a process here; a pod needs an image
        with pytest.raises(InvalidSpec, match="a pod runs an image, and this container names"):
            platform.apply([doc])
        assert (
            platform.resolve_env(
                "default",
                platform.services["default/hello"].service.spec.template.spec.containers[0],
            )
            == {}
        )
    finally:
        await platform.stop()
