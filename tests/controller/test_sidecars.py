"""A revision with sidecars through the Platform (docs/containers.md#sidecars): each sidecar's
settings reach the runtime with its Secret references filled in and Knative's variables but no
PORT; a replica asks its pool for all its containers' requests; what one machine cannot run is
refused at apply, the field named, nothing stored."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.controller.fakes import decide, make_platform, runtime_of, service, settle
from tests.controller.test_config_objects import secret
from tidal.api.errors import InvalidSpec
from tidal.controller.kubeapi.pods import (
    DEFAULT_CONTAINER,
    pod_ready_column,
    pod_status_column,
    pods,
)
from tidal.controller.platform import Platform
from tidal.runtime.base import ContainerSpec, ImageSpec, MountSpec, SecurityContext


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = make_platform(tmp_path)
    runtime_of(platform).requires_command = False  # as on a host with an engine
    yield platform
    await platform.stop()


def with_sidecar(**sidecar: Any) -> dict[str, Any]:
    """A model server (the container with the port) and an unnamed sidecar after it, run in
    containers as the template asks."""
    doc = service(**{"tidal.dev/runtime": "container"})
    spec = doc["spec"]["template"]["spec"]
    spec["containers"] = [
        {
            "name": "server",
            "image": "localhost/model:1",
            "command": ["python", "serve.py"],
            "ports": [{"containerPort": 8080}],
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            "volumeMounts": [{"name": "models", "mountPath": "/models", "readOnly": True}],
        },
        {
            "image": "localhost/puller:1",
            "command": ["pull"],
            "args": ["--to", "/models"],
            "env": [
                {"name": "MODEL", "value": "small"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            ],
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
            "securityContext": {"runAsUser": 1000},
            "volumeMounts": [{"name": "models", "mountPath": "/models"}],
            **sidecar,
        },
    ]
    spec["volumes"] = [{"name": "models", "emptyDir": {}}]
    return doc


async def test_a_sidecar_reaches_the_runtime_with_its_own_settings(platform: Platform) -> None:
    platform.apply([secret(token="s3cret"), with_sidecar()])
    await decide(platform)
    [replica] = runtime_of(platform).running()
    spec = runtime_of(platform).replicas[replica].spec
    assert spec.image is not None and spec.image.image == "localhost/model:1"
    assert spec.env["K_REVISION"] == "hello-00001"
    assert spec.sidecars == (
        ContainerSpec(
            name="user-container-0",  # Knative's default name for the unnamed one
            image=ImageSpec("localhost/puller:1", entrypoint=("pull",), args=("--to", "/models")),
            env={
                "MODEL": "small",
                "TOKEN": "s3cret",
                "K_SERVICE": "hello",
                "K_CONFIGURATION": "hello",
                "K_REVISION": "hello-00001",
            },
            security=SecurityContext(run_as_user=1000),
            mounts=(MountSpec("models", "/models"),),
        ),
    )
    assert spec.log_of(spec.sidecars[0]).name == f"{replica}.user-container-0.log"
    demand = platform.workloads["default/hello-00001"].spec.demand()
    assert (demand.cpu, demand.memory) == (1.25, 1.25 * 2**30)  # both containers' requests


async def test_a_replica_is_a_pod_of_its_containers_for_kubectl(platform: Platform) -> None:
    """`kubectl get pods` (tidal.controller.kubeapi.pods): a container per manifest container,
    named as Knative names them, the serving one kubectl's default; Ready once probed."""
    platform.apply([secret(token="s3cret"), with_sidecar()])
    await decide(platform)
    [replica] = runtime_of(platform).running()
    [pod] = pods(platform.workloads.values(), "default")
    assert pod["metadata"]["name"] == replica
    assert pod["metadata"]["annotations"] == {DEFAULT_CONTAINER: "server"}
    assert [c["name"] for c in pod["spec"]["containers"]] == ["server", "user-container-0"]
    assert (pod_ready_column(pod), pod_status_column(pod)) == ("0/2", "ContainerCreating")
    runtime_of(platform).ready(replica)
    await settle()
    [pod] = pods(platform.workloads.values(), None)
    assert (pod_ready_column(pod), pod_status_column(pod)) == ("2/2", "Running")
    assert pods(platform.workloads.values(), "other") == []


async def test_init_containers_reach_the_runtime_and_size_the_replica(
    platform: Platform,
) -> None:
    """An init container's settings reach the runtime as a sidecar's do; the replica asks its
    pool for the larger of its containers' requests together and an init container's alone,
    as the Kubernetes scheduler counts a pod."""
    doc = with_sidecar()
    pod = doc["spec"]["template"]["spec"]
    pod["initContainers"] = [
        {
            "image": "localhost/fetch:1",
            "command": ["fetch"],
            "resources": {"requests": {"cpu": "2", "memory": "256Mi"}},
            "volumeMounts": [{"name": "models", "mountPath": "/models"}],
        }
    ]
    platform.apply([secret(token="s3cret"), doc])
    await decide(platform)
    [replica] = runtime_of(platform).running()
    spec = runtime_of(platform).replicas[replica].spec
    [init] = spec.init_containers
    assert (init.name, init.image.image, init.mounts) == (
        "init-container",
        "localhost/fetch:1",
        (MountSpec("models", "/models"),),
    )
    assert init.env["K_REVISION"] == "hello-00001" and "PORT" not in init.env
    assert spec.log_paths()[1].name == f"{replica}.init-container.log"
    runtime_of(platform).replicas[replica].phase = "Init:0/1"  # as the runtime marks it
    [pod] = pods(platform.workloads.values(), "default")
    assert pod_status_column(pod) == "Init:0/1"
    assert pod["spec"]["initContainers"] == [
        {"name": "init-container", "image": "localhost/fetch:1"}
    ]
    assert pod["status"]["initContainerStatuses"][0]["state"] == {"running": {}}
    demand = platform.workloads["default/hello-00001"].spec.demand()
    assert (demand.cpu, demand.memory) == (2, 1.25 * 2**30)  # the init's CPU, the pod's memory


async def test_a_sidecars_missing_secret_refuses_the_apply(platform: Platform) -> None:
    with pytest.raises(InvalidSpec) as info:
        platform.apply([with_sidecar()])
    assert info.value.problems == [
        ("spec.template.spec.containers[1]", 'env TOKEN: secret "hf" not found')
    ]
    assert platform.store.list("Service") == []


def as_process(doc: dict[str, Any]) -> None:
    del doc["spec"]["template"]["metadata"]  # an image with a command: a process here


def sidecar_without_image(doc: dict[str, Any]) -> None:
    del doc["spec"]["template"]["metadata"]
    serving, sidecar = doc["spec"]["template"]["spec"]["containers"]
    del serving["command"], sidecar["image"]  # the server in a container, the sidecar not


def sidecar_with_gpu(doc: dict[str, Any]) -> None:
    sidecar = doc["spec"]["template"]["spec"]["containers"][1]
    sidecar["resources"] = {"limits": {"nvidia.com/gpu": 1}}


def shared_memory(doc: dict[str, Any]) -> None:
    doc["spec"]["template"]["spec"]["volumes"][0]["emptyDir"] = {"medium": "Memory"}


CONTAINERS = "spec.template.spec.containers"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            as_process,
            f"{CONTAINERS}[0]",
            "sidecars share the serving container's network, which a process has not",
        ),
        (
            sidecar_without_image,
            f"{CONTAINERS}[1].image",
            "runs an image here, and names none",
        ),
        (
            sidecar_with_gpu,
            f"{CONTAINERS}[1].resources",
            "GPUs go to the serving container on this machine",
        ),
        (
            shared_memory,
            f"{CONTAINERS}[1].volumeMounts[0].name",
            "an in-memory emptyDir is mounted once here (by one container)",
        ),
    ],
)
async def test_what_one_machine_cannot_run_of_a_sidecar_is_refused(
    platform: Platform, change: Any, field: str, message: str
) -> None:
    doc = with_sidecar(env=[])
    change(doc)
    with pytest.raises(InvalidSpec, match=re.escape(message)) as info:
        platform.apply([doc])
    assert info.value.field == field
    assert platform.store.list("Service") == []
