"""`$(VAR)` references expanded as the kubelet expands them (tidal.runtime.expansion): the cases
of Kubernetes' own expansion tests, and the places a container's references are filled in."""

from __future__ import annotations

import dataclasses

import pytest

from tests.runtime.test_container_args import PODMAN, replica_spec
from tidal.api.service import Container
from tidal.controller.environment import resolve_env
from tidal.runtime.base import ContainerSpec, ImageSpec
from tidal.runtime.engine import other_run_args, run_args
from tidal.runtime.expansion import expand

ENV = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_REF": "$(VAR_A)", "VAR_EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$(VAR_A)", "A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)-1", "A-1"),
        ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
        ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),  # $$ escapes
        ("$$$(VAR_A)", "$A"),
        ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
        ("$(VAR_DNE)", "$(VAR_DNE)"),  # undefined: left as written
        ("$(VAR_REF)", "$(VAR_A)"),  # a value is not expanded again
        ("$(VAR_EMPTY)", ""),
        ("$(VAR_A", "$(VAR_A"),  # unclosed
        ("$VAR_A", "$VAR_A"),  # shell syntax is not a reference
        ("$()", "$()"),
        ("$($(VAR_A))", "$($(VAR_A))"),
        ("$", "$"),
        ("$(", "$("),
        ("tail$", "tail$"),
        ("no references", "no references"),
    ],
)
def test_references_expand_as_the_kubelet_expands_them(text: str, expanded: str) -> None:
    assert expand(text, ENV) == expanded


def test_an_env_value_sees_the_variables_defined_before_it() -> None:
    container = Container.model_validate(
        {
            "env": [
                {"name": "HOST", "value": "127.0.0.1"},
                {"name": "URL", "value": "http://$(HOST):$(PORT)/$(LATER)"},
                {"name": "LATER", "value": "v1"},
            ]
        }
    )
    env = resolve_env(container, "default", lambda *_: None)
    # PORT is Knative's and LATER comes after: neither is defined yet, so both stay as written.
    assert env["URL"] == "http://127.0.0.1:$(PORT)/$(LATER)"


def test_engine_command_and_args_see_the_whole_environment() -> None:
    image = ImageSpec(
        "localhost/web:1", entrypoint=("serve", "--port=$(PORT)"), args=("$(K_REVISION)",)
    )
    args = run_args(
        PODMAN, replica_spec(), image, 1, {"PORT": "8080", "K_REVISION": "web-1"}, {}, {}
    )
    assert args[args.index("--entrypoint") + 1 :] == [
        "serve",
        "localhost/web:1",
        "--port=8080",
        "web-1",
    ]
    sidecar = ContainerSpec(
        "puller",
        dataclasses.replace(image, entrypoint=(), args=("--to=$(TARGET)", "$$(TARGET)")),
        {"TARGET": "/models"},
    )
    assert other_run_args(PODMAN, replica_spec(), sidecar, {}, {})[-3:] == [
        "localhost/web:1",
        "--to=/models",
        "$(TARGET)",
    ]
