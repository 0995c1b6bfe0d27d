"""A Service as it last ran, for a controller that restores one whose stored spec it refuses
(docs/kubernetes.md#kubectl-on-tidals-resources).

On a cluster a spec can reach the store past the webhook (an older install, the webhook
configuration deleted); tidal does not run it and goes on running what ran before. The store no
longer holds that Service spec, but it holds what tidal made from it, which only tidal writes:
the latest created Revision (the template, less the labels and annotations tidal added) and the
Route (the traffic). Knative keeps running the same way, from the Configuration and the Route.
"""

from __future__ import annotations

import copy
from typing import Any

from tidal.controller.revisions import (
    CONFIGURATION_LABEL,
    GENERATION_LABEL,
    ROUTES_ANNOTATION,
    ROUTING_STATE,
    ROUTING_STATE_MODIFIED,
    SERVICE_LABEL,
    TEMPLATE_HASH,
)

ADDED_LABELS = {SERVICE_LABEL, CONFIGURATION_LABEL, GENERATION_LABEL, ROUTING_STATE}
ADDED_ANNOTATIONS = {TEMPLATE_HASH, ROUTING_STATE_MODIFIED, ROUTES_ANNOTATION}


def as_last_run(
    stored: dict[str, Any], revisions: list[dict[str, Any]], route: dict[str, Any] | None
) -> dict[str, Any] | None:
    """`stored` (a Service) with the template of its latest created revision and the traffic
    of its Route; None when either is missing."""
    latest = stored.get("status", {}).get("latestCreatedRevisionName")
    revision = next((r for r in revisions if r["metadata"]["name"] == latest), None)
    if revision is None or route is None:
        return None
    meta = revision["metadata"]
    template_meta: dict[str, Any] = {
        "labels": {k: v for k, v in meta.get("labels", {}).items() if k not in ADDED_LABELS},
        "annotations": {
            k: v for k, v in meta.get("annotations", {}).items() if k not in ADDED_ANNOTATIONS
        },
    }
    service_name = stored["metadata"]["name"]
    generation = meta.get("labels", {}).get(GENERATION_LABEL, "")
    if not generation.isdigit() or meta["name"] != f"{service_name}-{int(generation):05d}":
        template_meta["name"] = meta["name"]  # the template named its revision
    service = copy.deepcopy(stored)
    service["spec"] = {
        "template": {"metadata": template_meta, "spec": copy.deepcopy(revision["spec"])},
        "traffic": copy.deepcopy(route.get("spec", {}).get("traffic", [])),
    }
    return service
