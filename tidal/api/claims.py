"""Kubernetes' `v1` PersistentVolumeClaim, so that a bundle that declares the claim its service
mounts applies as it is, and the claim can be listed and removed (docs/containers.md#claims).

On one machine a claim is a folder under the data dir, made when it is applied (or when a
replica first mounts a claim nobody declared) and kept until the claim is deleted. The API
server's rules hold: at least one access mode, a storage request, a spec that stays as created
except for a bigger request. What has no meaning without a cluster's storage (a block volume,
a claim cloned from a snapshot, one bound to a chosen volume by selector) is refused, saying so.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from tidal.api.config_objects import ValidConfigObject
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import parse_document
from tidal.api.service import KModel, ObjectMeta
from tidal.api.units import parse_quantity

CLAIM = "PersistentVolumeClaim"


class ClaimInUse(Exception):
    """A claim that a replica mounts cannot be deleted; the message names the replicas."""


AccessMode = Literal["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]
ACCESS_MODES = {  # as kubectl abbreviates them
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


class ClaimResources(KModel):
    requests: dict[Literal["storage"], str | int]
    limits: dict[Literal["storage"], str | int] | None = None

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, value: dict[str, str | int] | None) -> dict[str, str | int] | None:
        for amount in (value or {}).values():
            if parse_quantity(amount) <= 0:
                raise ValueError(f"storage must be more than 0, got {amount!r}")
        return value

    @field_validator("requests")
    @classmethod
    def _storage(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        if "storage" not in value:
            raise ValueError("storage is required: how much the claim asks for, e.g. 10Gi")
        return value


class ClaimSpec(KModel):
    access_modes: list[AccessMode] = Field(min_length=1)
    resources: ClaimResources
    storage_class_name: str | None = None
    volume_mode: Literal["Filesystem"] = "Filesystem"
    volume_attributes_class_name: str | None = None
    # The volume a cluster bound it to (in an exported claim): here the claim's folder is its
    # volume, so it is accepted and not stored.
    volume_name: str | None = Field(default=None, exclude=True)


class PersistentVolumeClaim(KModel):
    api_version: Literal["v1"]
    kind: Literal["PersistentVolumeClaim"]
    metadata: ObjectMeta
    spec: ClaimSpec
    status: dict[str, Any] | None = None  # from an export: accepted, never stored


# Fields of a claim that need a cluster's storage, and why they are refused here.
CLUSTER_ONLY = {
    "dataSource": "a claim filled from a snapshot or another claim needs a cluster's storage",
    "dataSourceRef": "a claim filled from a snapshot or another claim needs a cluster's storage",
    "selector": "there are no PersistentVolumes here to select: a claim is a folder",
}


def validate_claim(doc: dict[str, Any]) -> ValidConfigObject:
    """Check a PersistentVolumeClaim document; raise InvalidSpec naming every problem."""
    spec = doc.get("spec")
    if isinstance(spec, dict):
        refused = [(f"spec.{key}", why) for key, why in CLUSTER_ONLY.items() if key in spec]
        if spec.get("volumeMode") == "Block":
            refused.append(("spec.volumeMode", "a raw block device needs a cluster's storage"))
        if refused:
            raise InvalidSpec("", "", refused)
    parsed = parse_document(doc, "v1", CLAIM, PersistentVolumeClaim)
    name = parsed.metadata.name
    if not name:  # the metadata's rules made it a DNS label, if given
        raise InvalidSpec("metadata.name", "a PersistentVolumeClaim needs a name")
    stored = parsed.model_dump(by_alias=True, exclude_none=True, exclude={"status"})
    namespace = parsed.metadata.namespace or "default"
    return ValidConfigObject(CLAIM, namespace, name, stored)


def check_claim_update(current: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """The API server's rule: a claim's spec stays as created, but for its resources (whose
    storage request may only grow) and its volume attributes class."""
    if current is None:
        return
    mutable = ("resources", "volumeAttributesClassName")
    before, after = (
        {key: value for key, value in claim["spec"].items() if key not in mutable}
        for claim in (current, new)
    )
    if before != after:
        raise InvalidSpec(
            "spec",
            "spec is immutable after creation except resources.requests and "
            "volumeAttributesClassName for bound claims",
        )
    if parse_quantity(requested_storage(new)) < parse_quantity(requested_storage(current)):
        raise InvalidSpec(
            "spec.resources.requests.storage", "field can not be less than previous value"
        )


def requested_storage(claim: dict[str, Any]) -> str:
    return str(claim["spec"]["resources"]["requests"]["storage"])
