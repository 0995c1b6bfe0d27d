"""Kubernetes' `v1` ServiceAccount, so that a bundle that declares the account its service runs
as applies as it is (docs/containers.md#service-accounts).

On one machine an account grants nothing (there is no API token to mount), but what it says
about images holds: a revision that names no imagePullSecrets of its own pulls with its
account's, as the API server's ServiceAccount admission gives them to such a pod.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tidal.api.config_objects import ValidConfigObject
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import parse_document
from tidal.api.service import KModel, LocalObjectReference, ObjectMeta

SERVICE_ACCOUNT = "ServiceAccount"


class ObjectReference(KModel):
    """An entry of `secrets` (tokens of the account on a cluster): kept as written."""

    name: str | None = None
    namespace: str | None = None
    kind: str | None = None
    api_version: str | None = None
    uid: str | None = None


class ServiceAccount(KModel):
    api_version: Literal["v1"]
    kind: Literal["ServiceAccount"]
    metadata: ObjectMeta
    secrets: list[ObjectReference] = Field(default_factory=list)
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    automount_service_account_token: bool | None = None


def validate_service_account(doc: dict[str, Any]) -> ValidConfigObject:
    """Check a ServiceAccount document; raise InvalidSpec naming every problem."""
    parsed = parse_document(doc, "v1", SERVICE_ACCOUNT, ServiceAccount)
    name = parsed.metadata.name
    if not name:  # the metadata's rules made it a DNS label, if given
        raise InvalidSpec("metadata.name", "a ServiceAccount needs a name")
    stored = parsed.model_dump(by_alias=True, exclude_none=True)
    return ValidConfigObject(SERVICE_ACCOUNT, parsed.metadata.namespace or "default", name, stored)
