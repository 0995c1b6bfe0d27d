"""Secrets and ConfigMaps through the Platform: stored as the API server stores them, checked
at apply, read into a replica's environment as it starts (tidal.controller.environment)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.controller.fakes import decide, make_platform, runtime_of, service
from tidal.api.errors import InvalidSpec
from tidal.controller.platform import Platform
from tidal.controller.workload import Lifecycle

KEY = "default/hello-00001"


def secret(name: str = "hf", **values: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": values}


def config_map(name: str = "model-config", **values: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": values}


def with_references(optional: bool = False) -> dict[str, Any]:
    doc = service()
    container = doc["spec"]["template"]["spec"]["containers"][0]
    token = {"name": "hf", "key": "token", **({"optional": True} if optional else {})}
    container["env"] = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": token}},
        {"name": "MODEL", "value": "large"},  # env wins over envFrom
    ]
    container["envFrom"] = [{"configMapRef": {"name": "model-config"}, "prefix": "CFG_"}]
    return doc


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = make_platform(tmp_path)
    yield platform
    await platform.stop()


async def test_a_replica_starts_with_the_values_its_references_name(platform: Platform) -> None:
    config = config_map(MODEL="small", THREADS="4")
    platform.apply([secret(token="s3cret"), config, with_references()])
    await decide(platform)
    [replica] = runtime_of(platform).running()
    env = runtime_of(platform).replicas[replica].spec.env
    assert env["HF_TOKEN"] == "s3cret"
    assert (env["CFG_MODEL"], env["CFG_THREADS"], env["MODEL"]) == ("small", "4", "large")
    stored = platform.store.get("Secret", "default", "hf")
    assert stored is not None and "stringData" not in stored
    assert base64.b64decode(stored["data"]["token"]) == b"s3cret"
    # The revision stores the references, never the values.
    revision = platform.store.get("Revision", "default", "hello-00001")
    assert "s3cret" not in str(revision)


async def test_missing_references_refuse_the_apply_and_store_nothing(platform: Platform) -> None:
    with pytest.raises(InvalidSpec) as info:
        platform.apply([with_references()])
    assert [message for _, message in info.value.problems] == [
        'envFrom: configmap "model-config" not found',
        'env HF_TOKEN: secret "hf" not found',
    ]
    assert platform.store.get("Service", "default", "hello") is None
    platform.apply([config_map(MODEL="small"), secret(other="x")])
    with pytest.raises(InvalidSpec, match="couldn't find key token in Secret default/hf"):
        platform.apply([with_references()])
    platform.apply([with_references(optional=True)])  # optional: left unset
    await decide(platform)
    [replica] = runtime_of(platform).running()
    assert "HF_TOKEN" not in runtime_of(platform).replicas[replica].spec.env


async def test_a_replica_whose_secret_is_gone_fails_to_start_with_why(platform: Platform) -> None:
    """Deleting a Secret in use leaves running replicas alone, as in Kubernetes; the next one
    cannot be created: CreateContainerConfigError, with the kubelet's words."""
    platform.apply([secret(token="s3cret"), config_map(MODEL="small"), with_references()])
    await decide(platform)
    [replica] = runtime_of(platform).running()
    assert platform.delete_config_object("Secret", "default", "hf")
    assert runtime_of(platform).running() == [replica]
    runtime_of(platform).exit(replica, code=1)  # never ready: the revision fails
    workload = platform.workloads[KEY]
    assert workload.state is Lifecycle.FAILED and workload.failed_reason == "ExitCode1"

    platform.apply([secret(token="s3cret")])
    doc = with_references()
    doc["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = "larger"
    platform.apply([doc])  # a new revision, hello-00002
    platform.delete_config_object("Secret", "default", "hf")
    await decide(platform)
    second = platform.workloads["default/hello-00002"]
    assert second.state is Lifecycle.FAILED
    assert second.failed_reason == "CreateContainerConfigError"
    assert second.failed_message.startswith('env HF_TOKEN: secret "hf" not found')


async def test_an_immutable_object_keeps_its_data(platform: Platform) -> None:
    frozen = secret(token="a") | {"immutable": True}
    platform.apply([frozen])
    assert platform.apply_detailed([frozen])[0][1] == "unchanged"
    with pytest.raises(InvalidSpec, match="Secret hf is immutable"):
        platform.apply([secret(token="b") | {"immutable": True}])
    assert platform.delete_config_object("Secret", "default", "hf")
    platform.apply([secret(token="b")])  # deleted and created again: allowed
