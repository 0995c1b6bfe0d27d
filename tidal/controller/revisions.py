"""Service → Revision: every change of `spec.template` makes a new immutable revision
(docs/architecture.md#revisions-traffic-and-rollout: `<name>-00001`, `-00002`, …, or the template's
own name)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tidal.api.errors import InvalidSpec
from tidal.api.manifest import ValidService

SERVICE_LABEL = "serving.knative.dev/service"
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
GENERATION_LABEL = "serving.knative.dev/configurationGeneration"
TEMPLATE_HASH = "tidal.dev/template-hash"


def template_hash(service_doc: dict[str, Any]) -> str:
    canonical = json.dumps(service_doc["spec"]["template"], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def next_revision(
    valid: ValidService,
    service_doc: dict[str, Any],
    existing: list[dict[str, Any]],
    config_generation: int,
) -> dict[str, Any] | None:
    """The Revision to create for this apply, or None when the template did not change.

    `existing` are this service's revisions, `config_generation` the generation of the newest.
    """
    digest = template_hash(service_doc)
    byo_name = valid.service.spec.template.metadata.name
    latest = max(existing, key=_generation, default=None)
    if latest is not None and latest["metadata"]["annotations"].get(TEMPLATE_HASH) == digest:
        return None
    generation = config_generation + 1
    name = byo_name or f"{valid.name}-{generation:05d}"
    taken = next((r for r in existing if r["metadata"]["name"] == name), None)
    if taken is not None:
        raise InvalidSpec("spec.template.metadata.name", _name_taken(valid, taken, digest))
    template = service_doc["spec"]["template"]
    metadata = template.get("metadata", {})
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": {
            "name": name,
            "namespace": valid.namespace,
            "labels": {
                **metadata.get("labels", {}),
                SERVICE_LABEL: valid.name,
                CONFIGURATION_LABEL: valid.name,
                GENERATION_LABEL: str(generation),
            },
            "annotations": {**metadata.get("annotations", {}), TEMPLATE_HASH: digest},
        },
        "spec": template["spec"],
        "status": {
            "conditions": [{"type": "Ready", "status": "Unknown", "reason": "Deploying"}],
        },
    }


def _generation(revision: dict[str, Any]) -> int:
    return int(revision["metadata"]["labels"][GENERATION_LABEL])


def _name_taken(valid: ValidService, taken: dict[str, Any], digest: str) -> str:
    """Why a new template cannot have `taken`'s name, and what to do instead."""
    name = taken["metadata"]["name"]
    if valid.service.spec.template.metadata.name is None:
        return (
            f"the generated revision name {name!r} is taken by an earlier named revision; "
            "give this template a name"
        )
    if taken["metadata"]["annotations"].get(TEMPLATE_HASH) == digest:
        return (
            f"revision {name!r} (this template) already exists; to send traffic back to it, "
            f"`tidal traffic {valid.name} --to {name}=100` (or set spec.traffic), or give the "
            "template a new name"
        )
    return f"revision {name!r} already exists with a different template; give this one a new name"
