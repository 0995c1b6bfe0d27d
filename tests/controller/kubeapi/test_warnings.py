"""The warnings kubectl prints for a write that is taken (tidal.controller.kubeapi.warnings)."""

from __future__ import annotations

from typing import Any

from tidal.controller.kubeapi.warnings import write_warnings, written


def service(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    spec = {"containers": list(containers), "initContainers": list(init)}
    return {"kind": "Service", "spec": {"template": {"spec": spec}}}


def test_only_a_process_with_a_relative_folder_is_warned_about() -> None:
    assert write_warnings(service({"command": ["python"], "workingDir": "/srv/app"})) == []
    assert write_warnings(service({"image": "example/app:1", "workingDir": "app"})) == []
    assert write_warnings(service({"command": ["python"]})) == []
    assert write_warnings({"kind": "Route", "spec": {}}) == []
    [warning] = write_warnings(service({"command": ["python"]}, init=({"workingDir": "fetch"},)))
    assert warning.startswith("spec.template.spec.initContainers[0].workingDir 'fetch' is relative")


def test_the_header_is_a_quoted_299_warning() -> None:
    response = written(service({"command": ["python"], "workingDir": 'say "hi"'}), status=201)
    assert response.status == 201
    [header] = response.headers.getall("Warning")
    assert header.startswith('299 - "spec.template.spec.containers[0].workingDir')
    assert "'say \\\"hi\\\"'" in header and header.endswith('"')


def test_a_folder_outside_ascii_still_makes_a_header() -> None:
    [header] = written(service({"command": ["python"], "workingDir": "modèle"})).headers.getall(
        "Warning"
    )
    assert header.isascii() and "mod\\xe8le" in header
