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
    if any(r["metadata"]["name"] == name for r in existing):
        raise InvalidSpec(
            "spec.template.metadata.name",
            f"revision {name!r} already exists with a different template; "
            "give the new template a new name",
        )
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
