"""Namespace documents (docs/kubectl.md#namespaces): checked by the API server's rules, stored
cluster-scoped, shown as the API server shows them."""

from __future__ import annotations

from typing import Any

import pytest

from tidal.api.errors import InvalidSpec
from tidal.api.namespaces import (
    CLUSTER_SCOPE,
    NAME_LABEL,
    implied_namespace,
    namespace_view,
    validate_namespace,
)


def namespace(**meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "models", **meta}}


def test_a_namespace_is_stored_cluster_scoped_with_its_name_label() -> None:
    valid = validate_namespace(namespace(labels={"team": "ml"}))
    assert (valid.kind, valid.namespace, valid.name) == ("Namespace", CLUSTER_SCOPE, "models")
    assert valid.doc["metadata"]["labels"] == {"team": "ml", NAME_LABEL: "models"}
    assert valid.doc["metadata"]["namespace"] == CLUSTER_SCOPE


def test_a_namespace_in_its_metadata_is_dropped_as_the_api_server_clears_it() -> None:
    valid = validate_namespace(namespace(namespace="elsewhere"))
    assert valid.doc["metadata"]["namespace"] == CLUSTER_SCOPE


def test_an_exported_namespace_with_status_and_finalizers_applies() -> None:
    doc = {**namespace(), "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    valid = validate_namespace(doc)
    assert "status" not in valid.doc
    assert valid.doc["spec"] == {"finalizers": ["kubernetes"]}


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        (namespace(name="Models"), "metadata.name", "not a DNS label"),
        (namespace(name=None), "metadata.name", "needs a name"),
        ({**namespace(), "spec": {"quota": 1}}, "spec.quota", "unknown field"),
        ({**namespace(), "apiVersion": "v2"}, "apiVersion", "v1"),
    ],
)
def test_bad_namespaces_are_refused_naming_the_field(
    doc: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidSpec) as caught:
        validate_namespace(doc)
    assert field in str(caught.value) and message in str(caught.value)


def test_the_view_has_no_namespace_a_phase_and_the_kubernetes_finalizer() -> None:
    stored = implied_namespace("models")
    view = namespace_view(stored)
    assert "namespace" not in view["metadata"]
    assert view["status"] == {"phase": "Active"}
    assert view["spec"] == {"finalizers": ["kubernetes"]}
    assert stored["metadata"]["namespace"] == CLUSTER_SCOPE  # the stored object is unchanged
