"""Kubernetes' `v1` Namespace, so that a bundle that starts with one, `kubectl create namespace`
and `kubectl get namespaces` work as on a cluster (docs/kubectl.md#namespaces).

A namespace is a cluster-scoped object: stored under the empty namespace, shown without one.
On one machine a namespace also comes into being when something is first applied in it (a
cluster's API server would refuse that write); deleting one deletes everything in it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tidal.api.config_objects import ValidConfigObject
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import parse_document
from tidal.api.service import KModel, ObjectMeta

NAMESPACE = "Namespace"
CLUSTER_SCOPE = ""  # the namespace cluster-scoped objects are stored under
NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace
# Kubernetes refuses to delete these: its own objects live there.
UNDELETABLE = ("default", "kube-system", "kube-public")
ACTIVE, TERMINATING = "Active", "Terminating"


class NamespaceForbidden(Exception):
    """A namespace that may not be deleted; the message says why, in the API server's words."""


class NamespaceSpec(KModel):
    finalizers: list[str] = Field(default_factory=list)


class Namespace(KModel):
    api_version: Literal["v1"]
    kind: Literal["Namespace"]
    metadata: ObjectMeta
    spec: NamespaceSpec | None = None
    status: dict[str, Any] | None = None  # the server's: accepted so `-o yaml` re-applies


def validate_namespace(doc: dict[str, Any]) -> ValidConfigObject:
    """Check a Namespace document; raise InvalidSpec naming every problem. A namespace given in
    its metadata is dropped, as the API server clears it on a cluster-scoped object."""
    meta = doc.get("metadata")
    if isinstance(meta, dict) and "namespace" in meta:
        doc = {**doc, "metadata": {k: v for k, v in meta.items() if k != "namespace"}}
    parsed = parse_document(doc, "v1", NAMESPACE, Namespace)
    name = parsed.metadata.name
    if not name:  # the metadata's rules made it a DNS label, if given
        raise InvalidSpec("metadata.name", "a Namespace needs a name")
    stored = parsed.model_dump(by_alias=True, exclude_none=True, exclude={"status"})
    stored["metadata"]["labels"] = {**parsed.metadata.labels, NAME_LABEL: name}
    stored["metadata"]["namespace"] = CLUSTER_SCOPE
    return ValidConfigObject(NAMESPACE, CLUSTER_SCOPE, name, stored)


def implied_namespace(name: str) -> dict[str, Any]:
    """The Namespace made when something is first applied in `name`."""
    return validate_namespace(
        {"apiVersion": "v1", "kind": NAMESPACE, "metadata": {"name": name}}
    ).doc


def is_terminating(namespace: dict[str, Any] | None) -> bool:
    return namespace is not None and namespace.get("status", {}).get("phase") == TERMINATING


def namespace_view(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored Namespace as the API server shows one: no namespace of its own, a phase, and
    the `kubernetes` finalizer that a namespace keeps until its content is gone."""
    meta = {k: v for k, v in stored["metadata"].items() if k != "namespace"}
    meta.setdefault("generation", 1)
    return {
        **stored,
        "metadata": meta,
        "spec": {"finalizers": ["kubernetes"], **stored.get("spec", {})},
        "status": stored.get("status", {"phase": ACTIVE}),
    }
