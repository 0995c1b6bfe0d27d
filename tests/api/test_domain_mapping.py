"""DomainMapping validation: Knative's webhook rules and tidal's own, each error naming its field
(docs/architecture.md#domain-mappings)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tidal.api.domain_mapping import validate_domain_mapping
from tidal.api.errors import InvalidSpec

MAPPING: dict[str, Any] = {
    "apiVersion": "serving.knative.dev/v1beta1",
    "kind": "DomainMapping",
    "metadata": {"name": "api.example.org", "namespace": "team"},
    "spec": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "hello"}},
}


def mapping(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MAPPING)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = doc
        for key in parents:
            node = node[key]
        node[leaf] = value
    return doc


def test_a_mapping_names_its_domain_namespace_and_service():
    valid = validate_domain_mapping(mapping(), "example.com")
    assert (valid.domain, valid.namespace, valid.service) == ("api.example.org", "team", "hello")


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        (mapping(metadata__name="API.example.org"), "metadata.name", "lower-case fully qualified"),
        (mapping(metadata__name="a" * 64 + ".example.org"), "metadata.name", "fully qualified"),
        (mapping(metadata__name="example.org"), "metadata.name", "three labels or more"),
        (mapping(metadata__name="localhost"), "metadata.name", "at least two segments"),
        (mapping(metadata__name="x.team.svc.cluster.local"), "metadata.name", "subdomain of"),
        (mapping(metadata__name="hello.team.example.com"), "metadata.name", "platform's domain"),
        (mapping(spec__ref__kind="Deployment"), "spec.ref", "Knative Services"),
        (mapping(spec__ref__namespace="other"), "spec.ref.namespace", "own namespace 'team'"),
        (mapping(spec__ref__name="Bad_Name"), "spec.ref.name", "not a Service name"),
        (mapping(spec__tls={"secretName": "cert"}), "spec.tls", "--tls-cert"),
        (mapping(spec__extra=1), "spec.extra", "unknown field"),
        (mapping(metadata__namespace="Bad_NS"), "metadata.namespace", "not a DNS label"),
    ],
)
def test_bad_mappings_are_named(doc, field, message):
    with pytest.raises(InvalidSpec) as info:
        validate_domain_mapping(doc, "example.com")
    assert info.value.field == field
    assert message in str(info.value)
