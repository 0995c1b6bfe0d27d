"""Service → Revision: every change of `spec.template` makes a new immutable revision
(docs/architecture.md#revisions-traffic-and-rollout: `<name>-00001`, `-00002`, …, or the template's
own name); a named template applied again makes its revision the latest again."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tidal.api.errors import InvalidSpec
from tidal.api.manifest import ValidService

SERVICE_LABEL = "serving.knative.dev/service"
CONFIGURATION_LABEL = "serving.knative.dev/configuration"
GENERATION_LABEL = "serving.knative.dev/configurationGeneration"
TEMPLATE_HASH = "tidal.dev/template-hash"
ROUTING_STATE = "serving.knative.dev/routingState"
ROUTING_STATE_MODIFIED = "serving.knative.dev/routingStateModified"
ROUTES_ANNOTATION = "serving.knative.dev/routes"
PENDING, ACTIVE, RESERVE = "pending", "active", "reserve"


def set_routing_state(revision: dict[str, Any], state: str, route: str, when: str) -> bool:
    """Knative's Revision.SetRoutingState, with its labeler's routes annotation: the
    routingState label (pending: new, never routed; active: routed; reserve: no longer routed),
    `when` (RFC 3339) it last changed, and while active the route that routes it.
    False when the revision already says so."""
    meta = revision["metadata"]
    labels = meta.setdefault("labels", {})
    annotations = meta.setdefault("annotations", {})
    if labels.get(ROUTING_STATE) == state and ROUTING_STATE_MODIFIED in annotations:
        return False
    labels[ROUTING_STATE] = state
    annotations[ROUTING_STATE_MODIFIED] = when
    if state == ACTIVE:
        annotations[ROUTES_ANNOTATION] = route
    else:
        annotations.pop(ROUTES_ANNOTATION, None)
    return True


def template_hash(service_doc: dict[str, Any]) -> str:
    canonical = json.dumps(service_doc["spec"]["template"], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TemplateChange:
    """What an apply does to a service's revisions: nothing (its latest created revision has
    this template), create `new`, or make the earlier revision `reused` the latest again (its
    named template applied once more: a rollback, as Knative does it)."""

    new: dict[str, Any] | None = None
    reused: str | None = None


def next_revision(
    valid: ValidService,
    service_doc: dict[str, Any],
    existing: list[dict[str, Any]],
    config_generation: int,
    latest_created: str | None,
) -> TemplateChange:
    """`existing` are this service's revisions, `config_generation` the generation of the
    newest, `latest_created` the service's latest created revision."""
    digest = template_hash(service_doc)
    byo_name = valid.service.spec.template.metadata.name
    by_name = {r["metadata"]["name"]: r for r in existing}
    latest = by_name.get(latest_created or "") or max(existing, key=_generation, default=None)
    if latest is not None and latest["metadata"]["annotations"].get(TEMPLATE_HASH) == digest:
        return TemplateChange()
    generation = config_generation + 1
    name = byo_name or f"{valid.name}-{generation:05d}"
    taken = by_name.get(name)
    if taken is not None:
        if byo_name and taken["metadata"]["annotations"].get(TEMPLATE_HASH) == digest:
            return TemplateChange(reused=name)
        raise InvalidSpec("spec.template.metadata.name", _name_taken(valid, name))
    template = service_doc["spec"]["template"]
    metadata = template.get("metadata", {})
    return TemplateChange(
        new={
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
        },
    )


def _generation(revision: dict[str, Any]) -> int:
    return int(revision["metadata"]["labels"][GENERATION_LABEL])


def _name_taken(valid: ValidService, name: str) -> str:
    """Why a new template cannot have `name`, an earlier revision's."""
    if valid.service.spec.template.metadata.name is None:
        return (
            f"the generated revision name {name!r} is taken by an earlier named revision; "
            "give this template a name"
        )
    return f"revision {name!r} already exists with a different template; give this one a new name"
