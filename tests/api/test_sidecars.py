"""Knative's rules for a revision of several containers (pkg/apis/serving/k8s_validation.go,
docs/containers.md#sidecars): the one container with a port serves, the others are sidecars;
init containers (docs/containers.md#init-containers) run before them; names are defaulted as
Knative defaults them."""

from __future__ import annotations

from typing import Any

import pytest

from tidal.api.autoscaling import AutoscalerConfig
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import validate_service
from tidal.api.service import default_container_names

CONTAINERS = "spec.template.spec.containers"


def doc(
    *containers: dict[str, Any],
    volumes: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
) -> Any:
    spec: dict[str, Any] = {"containers": list(containers)}
    if volumes is not None:
        spec["volumes"] = volumes
    if init is not None:
        spec["initContainers"] = init
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "llm"},
        "spec": {"template": {"spec": spec}},
    }


def problems(document: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSpec) as info:
        validate_service(document, AutoscalerConfig(), require_command=False)
    return info.value.problems


SIDECAR = {"name": "puller", "image": "puller:1"}
SERVER = {"name": "server", "image": "server:1", "ports": [{"containerPort": 9000}]}


def test_the_container_with_the_port_serves_wherever_it_is() -> None:
    valid = validate_service(doc(SIDECAR, SERVER), AutoscalerConfig(), require_command=False)
    spec = valid.service.spec.template.spec
    assert spec.serving_index == 1 and spec.serving.name == "server"
    assert [c.name for c in spec.sidecars] == ["puller"]


def test_one_port_among_several_containers() -> None:
    assert problems(doc(SIDECAR, {"name": "other", "image": "x:1"})) == [
        (
            f"{CONTAINERS}[*].ports",
            "with several containers, give the serving container (only it) a port, e.g. "
            "`ports: [{containerPort: 8080}]`",
        )
    ]
    two = {**SIDECAR, "ports": [{"containerPort": 9100}]}
    assert problems(doc(SERVER, two)) == [
        (
            f"{CONTAINERS}[*].ports",
            "more than one container port is set: only a single port is allowed across all "
            "containers",
        )
    ]


def test_sidecars_have_distinct_names_and_no_probes() -> None:
    probed = {**SIDECAR, "readinessProbe": {"tcpSocket": {}}}
    found = problems(doc(SERVER, SIDECAR, probed))
    assert found == [
        (f"{CONTAINERS}[2].name", "duplicate container name 'puller'"),
        (
            f"{CONTAINERS}[2].readinessProbe",
            "a sidecar is not probed (only the serving container is, as in Knative without "
            "multi-container-probing): remove it",
        ),
    ]


def test_each_containers_fields_are_checked_under_its_own_index() -> None:
    bad = {
        "name": "Puller",
        "image": "puller:1",
        "env": [{"name": "K_SERVICE", "value": "x"}],
        "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
        "volumeMounts": [{"name": "nowhere", "mountPath": "relative"}],
    }
    found = problems(doc(SERVER, bad))
    assert (f"{CONTAINERS}[1].name", "'Puller' is not a DNS label (a container's name)") in found
    assert (f"{CONTAINERS}[1].env[0].name", "K_SERVICE is reserved") in found
    assert (
        f"{CONTAINERS}[1].resources.requests[cpu]",
        "2 must be less than or equal to the cpu limit of 1",
    ) in found
    assert (f"{CONTAINERS}[1].volumeMounts[0].name", "volumeMount has no matching volume") in found
    assert (
        f"{CONTAINERS}[1].volumeMounts[0].mountPath",
        "'relative' is not an absolute path",
    ) in found


def test_a_sidecar_may_set_port_but_not_knatives_other_variables() -> None:
    """Knative's reservedSidecarEnvVars: PORT is the serving container's only."""
    env = [{"name": "PORT", "value": "9091"}]
    validate_service(
        doc(SERVER, {**SIDECAR, "env": env}), AutoscalerConfig(), require_command=False
    )
    assert (f"{CONTAINERS}[0].env[0].name", "PORT is reserved") in problems(
        doc({**SERVER, "env": env}, SIDECAR)
    )
    revision = [{"name": "K_REVISION", "value": "x"}]
    assert (f"{CONTAINERS}[1].env[0].name", "K_REVISION is reserved") in problems(
        doc(SERVER, {**SIDECAR, "env": revision})
    )


def test_a_volume_mounted_by_a_sidecar_only_is_mounted() -> None:
    """Every volume must be mounted by some container; two containers may mount it at the
    same path (uniqueness is per container)."""
    models = [{"name": "models", "emptyDir": {}}]
    mount = [{"name": "models", "mountPath": "/models"}]
    validate_service(
        doc(SERVER, {**SIDECAR, "volumeMounts": mount}, volumes=models),
        AutoscalerConfig(),
        require_command=False,
    )
    validate_service(
        doc({**SERVER, "volumeMounts": mount}, {**SIDECAR, "volumeMounts": mount}, volumes=models),
        AutoscalerConfig(),
        require_command=False,
    )
    assert problems(doc(SERVER, SIDECAR, volumes=models)) == [
        ("spec.template.spec.volumes[0].name", "volume with name 'models' not mounted")
    ]


def test_init_containers_have_names_of_their_own_and_no_probes() -> None:
    fetch = {"name": "fetch", "image": "fetch:1", "env": [{"name": "PORT", "value": "1"}]}
    mount = [{"name": "models", "mountPath": "/models"}]
    valid = validate_service(
        doc(
            SERVER,
            init=[{**fetch, "volumeMounts": mount}],
            volumes=[{"name": "models", "emptyDir": {}}],
        ),
        AutoscalerConfig(),
        require_command=False,
    )
    assert valid.service.spec.template.spec.init_containers[0].name == "fetch"
    probed = {**fetch, "name": "server", "readinessProbe": {"tcpSocket": {}}}
    found = problems(doc(SERVER, init=[fetch, probed]))
    assert found == [
        ("spec.template.spec.initContainers[1].name", "duplicate container name 'server'"),
        (
            "spec.template.spec.initContainers[1].readinessProbe",
            "field not allowed in an init container",
        ),
    ]
    bad = {"name": "Fetch", "image": "f:1", "env": [{"name": "K_SERVICE", "value": "x"}]}
    found = problems(doc(SERVER, init=[bad]))
    assert (
        "spec.template.spec.initContainers[0].name",
        "'Fetch' is not a DNS label (a container's name)",
    ) in found
    assert ("spec.template.spec.initContainers[0].env[0].name", "K_SERVICE is reserved") in found


def test_init_container_names_are_defaulted_apart_from_the_containers() -> None:
    valid = validate_service(
        doc(
            {"image": "s:1"}, init=[{"image": "a:1"}, {"image": "b:1", "name": "init-container-0"}]
        ),
        AutoscalerConfig(),
        require_command=False,
    )
    spec = valid.service.spec.template.spec
    assert spec.container_names() == ["user-container"]
    assert spec.init_container_names() == ["init-container-1", "init-container-0"]


@pytest.mark.parametrize(
    ("given", "defaulted"),
    [
        ([None], ["user-container"]),
        (["server"], ["server"]),
        ([None, None], ["user-container-0", "user-container-1"]),
        (
            ["user-container-0", None, "x", None],
            ["user-container-0", "user-container-1", "x", "user-container-2"],
        ),
    ],
)
def test_container_names_are_defaulted_as_knative_defaults_them(
    given: list[str | None], defaulted: list[str]
) -> None:
    assert default_container_names(given) == defaulted
