"""PersistentVolumeClaim documents by the API server's rules, with what needs a cluster's
storage refused, saying why (tidal.api.claims, docs/containers.md#claims)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tidal.api.claims import check_claim_update, validate_claim
from tidal.api.errors import InvalidSpec

CLAIM: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "model-cache", "namespace": "ml"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
}


def claim(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(CLAIM)
    doc["spec"].update(spec)
    return doc


def test_a_claim_is_stored_without_what_a_cluster_wrote_on_it() -> None:
    exported = claim(volumeName="pvc-0b7c4a52", storageClassName="standard")
    exported["status"] = {"phase": "Bound", "capacity": {"storage": "10Gi"}}
    valid = validate_claim(exported)
    assert (valid.kind, valid.namespace, valid.name) == (
        "PersistentVolumeClaim",
        "ml",
        "model-cache",
    )
    assert valid.doc["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "10Gi"}},
        "storageClassName": "standard",
        "volumeMode": "Filesystem",
    }
    assert "status" not in valid.doc


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"accessModes": []}, "spec.accessModes", "List should have at least 1 item"),
        ({"accessModes": ["ReadWriteSometimes"]}, "spec.accessModes[0]", "ReadWriteOnce"),
        ({"resources": {"requests": {}}}, "spec.resources.requests", "storage is required"),
        ({"resources": {"requests": {"storage": "0"}}}, "spec.resources.requests", "more than 0"),
        ({"volumeMode": "Block"}, "spec.volumeMode", "a raw block device needs a cluster"),
        ({"dataSource": {"kind": "VolumeSnapshot", "name": "s"}}, "spec.dataSource", "snapshot"),
        ({"selector": {"matchLabels": {"a": "b"}}}, "spec.selector", "no PersistentVolumes"),
    ],
)
def test_bad_claims_are_refused_naming_the_field(spec: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        validate_claim(claim(**spec))
    assert any(f == field and message in m for f, m in info.value.problems), info.value.problems


def test_a_claim_keeps_its_spec_but_may_ask_for_more_storage() -> None:
    current = validate_claim(CLAIM).doc
    bigger = validate_claim(claim(resources={"requests": {"storage": "20Gi"}})).doc
    check_claim_update(current, bigger)
    with pytest.raises(InvalidSpec, match="can not be less than previous value"):
        check_claim_update(bigger, current)
    shared = validate_claim(claim(accessModes=["ReadWriteMany"])).doc
    with pytest.raises(InvalidSpec, match="spec is immutable after creation"):
        check_claim_update(current, shared)
