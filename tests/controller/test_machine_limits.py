"""What one machine cannot run as a pod would is refused at apply, the field named, nothing
stored (tidal.controller.machine_limits, docs/containers.md#volumes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.controller.fakes import make_platform, service
from tests.controller.test_volumes import SHM, with_volumes
from tidal.api.errors import InvalidSpec
from tidal.controller.platform import Platform


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = make_platform(tmp_path)
    yield platform
    await platform.stop()


async def test_what_one_machine_cannot_mount_is_refused_at_apply(platform: Platform) -> None:
    process = with_volumes({"name": "cache", "emptyDir": {}})
    del process["spec"]["template"]["metadata"]  # a command runs as a process here
    with pytest.raises(InvalidSpec, match="this revision runs as a process") as info:
        platform.apply([process])
    assert info.value.field == "spec.template.spec.volumes"
    twice = [
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "shm", "mountPath": "/scratch"},
    ]
    with pytest.raises(InvalidSpec, match="an in-memory emptyDir is mounted once here"):
        platform.apply([with_volumes(SHM, mounts=twice)])
    at_sub_path = [{"name": "shm", "mountPath": "/dev/shm", "subPath": "a"}]
    with pytest.raises(InvalidSpec, match="an in-memory emptyDir has no subPath here"):
        platform.apply([with_volumes(SHM, mounts=at_sub_path)])
    assert platform.store.list("Service") == []


@pytest.mark.parametrize(
    ("security", "field"),
    [
        ({"capabilities": {"drop": ["ALL"]}}, "capabilities"),
        ({"readOnlyRootFilesystem": True}, "readOnlyRootFilesystem"),
        ({"seccompProfile": {"type": "RuntimeDefault"}}, "seccompProfile"),
    ],
)
async def test_a_containers_security_settings_are_refused_for_a_process(
    platform: Platform, security: dict[str, object], field: str
) -> None:
    doc = service()
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"] = security
    with pytest.raises(InvalidSpec, match="a container's setting, and this revision runs as a "):
        platform.apply([doc])
    with pytest.raises(InvalidSpec) as info:
        platform.apply([doc])
    assert info.value.field == f"spec.template.spec.containers[0].securityContext.{field}"
    contained = service(**{"tidal.dev/runtime": "container"})
    container = contained["spec"]["template"]["spec"]["containers"][0]
    container.update(image="localhost/model:1", securityContext=security)
    platform.apply([contained])  # in a container it is honoured


async def test_a_localhost_seccomp_profile_is_a_nodes_file(platform: Platform) -> None:
    doc = service(**{"tidal.dev/runtime": "container"})
    profile = {"type": "Localhost", "localhostProfile": "profiles/model.json"}
    doc["spec"]["template"]["spec"]["containers"][0].update(
        image="localhost/model:1", securityContext={"seccompProfile": profile}
    )
    with pytest.raises(InvalidSpec, match="a Localhost profile is a file on a Kubernetes node"):
        platform.apply([doc])
    assert platform.store.list("Service") == []
