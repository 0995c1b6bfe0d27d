"""A revision's volumes through the Platform: checked at apply (references and what one machine
can mount), filled in with their Secret and ConfigMap files when a replica starts
(tidal.controller.volumes, docs/containers.md#volumes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.controller.fakes import decide, make_platform, runtime_of, service
from tests.controller.test_config_objects import config_map, secret
from tidal.api.errors import InvalidSpec
from tidal.controller.platform import Platform
from tidal.controller.workload import Lifecycle
from tidal.runtime.base import MountSpec, VolumeSpec


def with_volumes(*volumes: dict[str, Any], mounts: list[dict[str, Any]] | None = None) -> Any:
    doc = service(**{"tidal.dev/runtime": "container"})
    spec = doc["spec"]["template"]["spec"]
    spec["containers"][0]["image"] = "localhost/model:1"
    spec["containers"][0]["volumeMounts"] = mounts or [
        {"name": v["name"], "mountPath": f"/mnt/{v['name']}", "readOnly": "emptyDir" not in v}
        for v in volumes
    ]
    spec["volumes"] = list(volumes)
    return doc


TOKEN = {"name": "token", "secret": {"secretName": "hf", "defaultMode": 0o400}}
SETTINGS = {
    "name": "settings",
    "configMap": {
        "name": "llm",
        "items": [{"key": "yaml", "path": "conf/llm.yaml", "mode": 0o444}],
    },
}
BOTH = {
    "name": "both",
    "projected": {"sources": [{"secret": {"name": "hf"}}, {"configMap": {"name": "llm"}}]},
}
SHM = {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = make_platform(tmp_path)
    yield platform
    await platform.stop()


async def started_spec(platform: Platform) -> Any:
    await decide(platform)
    [replica] = runtime_of(platform).running()
    return runtime_of(platform).replicas[replica].spec


async def test_a_replica_starts_with_its_volumes_files(platform: Platform) -> None:
    objects = [secret(token="s3cret", user="me"), config_map("llm", yaml="a: 1", extra="x")]
    platform.apply([*objects, with_volumes(TOKEN, SETTINGS, BOTH, SHM)])
    spec = await started_spec(platform)
    assert spec.volumes == (
        VolumeSpec("token", {"token": (b"s3cret", 0o400), "user": (b"me", 0o400)}),
        VolumeSpec("settings", {"conf/llm.yaml": (b"a: 1", 0o444)}),  # only its items
        VolumeSpec(
            "both",
            {
                "token": (b"s3cret", 0o644),
                "user": (b"me", 0o644),
                "yaml": (b"a: 1", 0o644),
                "extra": (b"x", 0o644),
            },
        ),
        VolumeSpec("shm", memory=True, size_limit=64 * 2**20),
    )
    assert spec.mounts[0] == MountSpec("token", "/mnt/token", read_only=True)
    assert spec.mounts[3] == MountSpec("shm", "/mnt/shm", read_only=False)
    revision = platform.store.get("Revision", "default", "hello-00001")
    assert "s3cret" not in str(revision)  # the revision keeps the references only


async def test_missing_volume_references_refuse_the_apply(platform: Platform) -> None:
    with pytest.raises(InvalidSpec) as info:
        platform.apply([with_volumes(TOKEN, SETTINGS)])
    assert [message for _, message in info.value.problems] == [
        'volume token: secret "hf" not found',
        'volume settings: configmap "llm" not found',
    ]
    with pytest.raises(InvalidSpec, match="volume settings: couldn't find key yaml in ConfigMap"):
        platform.apply([secret(token="s"), config_map("llm", other="x"), with_volumes(SETTINGS)])
    assert platform.store.get("Service", "default", "hello") is None
    optional = {**SETTINGS, "configMap": {**SETTINGS["configMap"], "optional": True}}
    platform.apply([with_volumes(optional)])  # optional: an empty directory
    assert (await started_spec(platform)).volumes == (VolumeSpec("settings", {}),)


async def test_a_replica_whose_configmap_is_gone_fails_to_start(platform: Platform) -> None:
    platform.apply([config_map("llm", yaml="a: 1"), with_volumes(SETTINGS)])
    platform.delete_config_object("ConfigMap", "default", "llm")
    await decide(platform)
    workload = platform.workloads["default/hello-00001"]
    assert workload.state is Lifecycle.FAILED
    assert workload.failed_reason == "CreateContainerConfigError"
    assert workload.failed_message.startswith('volume settings: configmap "llm" not found')


async def test_running_replicas_get_a_changed_secrets_files(platform: Platform) -> None:
    """As the kubelet updates a pod's volumes: a change reaches running replicas that read the
    object; an unchanged apply, another object or a deletion sends nothing."""
    platform.apply([secret(token="one"), config_map("llm", yaml="a: 1"), with_volumes(TOKEN)])
    await started_spec(platform)
    [replica] = runtime_of(platform).running()
    refreshed = runtime_of(platform).refreshed
    platform.apply([secret(token="two")])
    assert refreshed == [(replica, (VolumeSpec("token", {"token": (b"two", 0o400)}),))]
    platform.apply([secret(token="two"), config_map("llm", yaml="a: 2")])  # neither read
    assert platform.delete_config_object("Secret", "default", "hf")
    assert len(refreshed) == 1
