"""Secret and ConfigMap documents, and the references a container makes to them, checked as
the Kubernetes API server checks them."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tidal.api.autoscaling import AutoscalerConfig
from tidal.api.config_objects import MAX_BYTES, validate_config_object, values_of
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import validate_service


def secret(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf"}, **fields}


def test_string_data_is_stored_as_data_and_wins() -> None:
    old = base64.b64encode(b"old").decode()
    valid = validate_config_object(
        secret(data={"token": old, "user": old}, stringData={"token": "new"})
    )
    assert valid.doc["data"] == {"token": base64.b64encode(b"new").decode(), "user": old}
    assert "stringData" not in valid.doc and valid.doc["type"] == "Opaque"
    assert values_of(valid.doc) == {"token": "new", "user": "old"}


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        (secret(data={"token": "not base64!"}), "data", "token: not base64 (use stringData"),
        (secret(stringData={"a key": "x"}), "stringData", "'a key' is not a valid key"),
        (secret(stringData={"x": "y"}, extra=1), "extra", "unknown field"),
        (secret(metadata={}), "metadata.name", "a Secret needs a name"),
        (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c"},
                "data": {"..": "x"},
            },
            "data",
            "'..' is not a valid key",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c"},
                "data": {"big": "x" * (MAX_BYTES + 1)},
            },
            "data",
            f"{MAX_BYTES + 1} bytes of data; a ConfigMap holds at most {MAX_BYTES}",
        ),
    ],
)
def test_bad_documents_say_what_is_wrong(doc: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        validate_config_object(doc)
    assert any(f == field and message in m for f, m in info.value.problems), info.value.problems


def test_references_are_checked_in_the_service(hello_doc: dict[str, Any]) -> None:
    container = hello_doc["spec"]["template"]["spec"]["containers"][0]
    ref = {"name": "hf", "key": "token"}
    container["env"] = [{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": ref}}]
    container["envFrom"] = [{"secretRef": {"name": "hf"}, "configMapRef": {"name": "c"}}]
    with pytest.raises(InvalidSpec) as info:
        validate_service(hello_doc, AutoscalerConfig())
    base = "spec.template.spec.containers[0]"
    assert info.value.problems == [
        (f"{base}.env[0].valueFrom", "may not be given with a value"),
        (f"{base}.envFrom[0]", "set exactly one of secretRef and configMapRef"),
    ]
    container["env"] = [{"name": "A", "valueFrom": {}}]
    container["envFrom"] = [{"secretRef": {"name": "hf"}, "prefix": "A=B"}]
    with pytest.raises(InvalidSpec) as info:
        validate_service(hello_doc, AutoscalerConfig())
    assert info.value.problems == [
        (
            f"{base}.envFrom[0].prefix",
            "'A=B' cannot begin a variable name (printable ASCII, no '=')",
        )
    ]
    container["envFrom"][0]["prefix"] = "HF_"
    with pytest.raises(InvalidSpec, match="set exactly one of secretKeyRef and configMapKeyRef"):
        validate_service(hello_doc, AutoscalerConfig())
