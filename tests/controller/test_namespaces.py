"""Namespaces through the Platform (docs/kubectl.md#namespaces): made when something is first
applied in one, deleted with everything in them, kept Terminating while a claim is still
mounted, and finished after a restart."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_claims import CLAIM
from tests.controller.fakes import decide, make_platform, runtime_of, service, settle
from tests.controller.test_domain_mappings import mapping
from tests.controller.test_volumes import with_volumes
from tidal.api.errors import InvalidSpec
from tidal.api.namespaces import NamespaceForbidden
from tidal.controller.platform import Platform
from tidal.store.sqlite import Store


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = make_platform(tmp_path)
    yield platform
    await platform.stop()


def namespace(name: str = "ml", **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def in_namespace(doc: dict[str, Any], name: str = "ml") -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = name
    return doc


def config_map(name: str = "settings", ns: str = "ml") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": {"threshold": "0.5"},
    }


def namespaces(platform: Platform) -> dict[str, str]:
    return {
        ns["metadata"]["name"]: ns.get("status", {}).get("phase", "Active")
        for ns in platform.store.list("Namespace")
    }


async def test_applying_in_a_new_namespace_makes_it_once(platform: Platform) -> None:
    platform.apply([in_namespace(service())])
    platform.apply([config_map()])
    [made] = platform.store.list("Namespace")
    assert made["metadata"]["name"] == "ml" and made["metadata"]["namespace"] == ""
    assert made["metadata"]["labels"] == {"kubernetes.io/metadata.name": "ml"}


async def test_a_bundle_that_declares_its_namespace_keeps_the_declared_one(
    platform: Platform,
) -> None:
    results = platform.apply_detailed([namespace(team="vision"), in_namespace(service())])
    assert [result for _, result in results] == ["created", "created"]
    [stored] = platform.store.list("Namespace")
    assert stored["metadata"]["labels"]["team"] == "vision"
    assert platform.apply_detailed([namespace(team="vision")])[0][1] == "unchanged"


async def test_a_dry_run_or_a_refused_apply_makes_no_namespace(platform: Platform) -> None:
    platform.apply([in_namespace(service())], dry_run=True)
    broken = in_namespace(service("bad"), "other")
    broken["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 0}]
    with pytest.raises(InvalidSpec):
        platform.apply([config_map(ns="other"), broken])
    assert platform.store.list("Namespace") == []


async def test_deleting_a_namespace_deletes_everything_in_it_and_nothing_else(
    platform: Platform,
) -> None:
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "puller"}}
    policy = {
        "apiVersion": "scheduling.alibabacloud.com/v1alpha1",
        "kind": "ResourcePolicy",
        "metadata": {"name": "gpus"},
        "spec": {"units": [{"resource": "ecs"}]},
    }
    secret = {**config_map("token"), "kind": "Secret", "data": {}}
    content = [service(), config_map(), secret, account, policy, mapping(), CLAIM]
    platform.apply([in_namespace(doc) for doc in content])
    platform.apply([service(), config_map(ns="default")])
    await decide(platform)
    assert len(runtime_of(platform).running()) == 2

    assert platform.namespaces is not None
    assert platform.delete_namespace("ml")
    platform.namespaces.finish_terminating()  # within the grace: nothing goes yet
    assert namespaces(platform)["ml"] == "Terminating"
    assert len(platform.store.list("Service", "ml")) == 1
    assert platform.delete_service("ml", "hello")  # as `kubectl delete -f bundle.yaml` does next
    platform.namespaces.clock = lambda: time.monotonic() + 2  # a grace later
    platform.namespaces.finish_terminating()
    await settle()
    assert namespaces(platform) == {"default": "Active"}
    for kind in ("Service", "Revision", "Route", "ConfigMap", "Secret", "ServiceAccount"):
        assert platform.store.list(kind, "ml") == [], kind
    for kind in ("ResourcePolicy", "DomainMapping", "PersistentVolumeClaim"):
        assert platform.store.list(kind, "ml") == [], kind
    assert list(platform.services) == ["default/hello"]
    assert len(platform.store.list("ConfigMap", "default")) == 1
    assert not (platform.data_dir / "claims" / "ml" / "model-cache").exists()
    assert not platform.delete_namespace("ml")  # gone: nothing to delete


async def test_a_namespace_whose_claim_is_mounted_terminates_once_the_replica_is_gone(
    tmp_path: Path,
) -> None:
    platform = make_platform(tmp_path)
    assert platform.namespaces is not None
    platform.namespaces.grace_s = 0.0
    mounted = {"name": "models", "persistentVolumeClaim": {"claimName": "model-cache"}}
    platform.apply([CLAIM, in_namespace(with_volumes(mounted))])
    await decide(platform)
    assert platform.claim_users("ml", "model-cache")

    platform.delete_namespace("ml")
    platform.namespaces.finish_terminating()  # the service goes; its replica is still draining
    assert namespaces(platform)["ml"] == "Terminating"
    assert [c["metadata"]["name"] for c in platform.store.list("PersistentVolumeClaim")] == [
        "model-cache"
    ]
    with pytest.raises(InvalidSpec, match="unable to create new content in namespace ml"):
        platform.apply([config_map()])
    with pytest.raises(InvalidSpec, match="is being terminated"):
        platform.apply([namespace()])
    assert platform.store.list("ConfigMap") == []
    await platform.stop()

    restarted = make_platform(tmp_path)  # the replica is gone with the old platform
    try:
        restarted.restore()
        assert restarted.namespaces is not None and restarted.namespaces.terminating == {"ml": 0.0}
        restarted.namespaces.finish_terminating()
        assert namespaces(restarted) == {"default": "Active"}
        assert restarted.store.list("PersistentVolumeClaim") == []
    finally:
        await restarted.stop()


async def test_default_may_not_be_deleted(platform: Platform) -> None:
    platform.restore()
    with pytest.raises(NamespaceForbidden, match='namespaces "default" is forbidden'):
        platform.delete_namespace("default")
    assert namespaces(platform) == {"default": "Active"}


async def test_restore_gives_every_namespace_in_use_its_object(tmp_path: Path) -> None:
    store = Store(tmp_path / "tidal.db")  # written before namespaces were kept
    store.put(config_map(ns="vision"))
    store.close()
    platform = make_platform(tmp_path)
    try:
        platform.restore()
        assert namespaces(platform) == {"default": "Active", "vision": "Active"}
    finally:
        await platform.stop()
