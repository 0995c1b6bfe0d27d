"""Run what another writer put in the store as an apply of it would
(docs/kubernetes.md#kubectl-on-tidals-resources).

On Kubernetes the store is the cluster's API, and `kubectl apply`, `edit` or `delete` of tidal's
custom resources changes it directly. Each such change reaches `changed` or `deleted` (from
tidal.kubernetes.spec_watch) and goes through the same validation and the same apply as
`tidal apply`: a new template makes a revision, new traffic moves the route, a new policy places
the next replicas. A spec an apply would refuse is not run: what ran before goes on, and the
Service's Ready condition (a DomainMapping's, a log line for a ResourcePolicy) says why.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from tidal.api.domain_mapping import KIND as DOMAIN_MAPPING
from tidal.api.errors import InvalidSpec
from tidal.api.resource_policy import KIND as RESOURCE_POLICY
from tidal.controller.platform import UNCHANGED, Platform
from tidal.store.sqlite import Conflict

log = logging.getLogger("tidal.controller")

# A write that lost to a newer one is read again and retried; each loss means someone else
# wrote, so a few rounds settle it (and the newer write's own event follows anyway).
ATTEMPTS = 3


class OutsideChanges:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def changed(self, doc: dict[str, Any], listed: bool) -> None:
        """`doc` as stored now. `listed`: it was there when the watch began. A Service that
        tidal observed at its current generation was restored already and is left alone; one
        written since (while no controller ran, or between the restore and the list) is
        applied. Policies and mappings carry no such mark, and are few: each is applied again,
        which changes nothing for one the restore loaded."""
        if listed and doc["kind"] == "Service" and _observed(doc):
            return
        kind, meta = doc["kind"], doc["metadata"]
        for _ in range(ATTEMPTS):
            try:
                self._apply(doc)
                return
            except InvalidSpec as exc:
                self._refuse(doc, exc)
                return
            except Conflict:
                current = self.platform.store.get(kind, meta["namespace"], meta["name"])
                if current is None:
                    return  # deleted meanwhile: its deletion follows
                doc = current
        log.warning("%s %s/%s kept changing; its next change applies it", kind, *_where(doc))

    def deleted(self, kind: str, namespace: str, name: str) -> None:
        if kind == "Service":
            self.platform.delete_service(namespace, name)
        elif kind == RESOURCE_POLICY:
            self.platform.delete_policy(namespace, name)
        elif kind == DOMAIN_MAPPING:
            self.platform.delete_domain_mapping(namespace, name)

    def _apply(self, doc: dict[str, Any]) -> None:
        """Apply `doc` pinned to the version read, so a newer write is never overwritten."""
        written = copy.deepcopy(doc)
        written.pop("status", None)
        ((applied, result),) = self.platform.apply_detailed([written])
        if doc["kind"] == "Service" and result == UNCHANGED:
            # The spec was stored already: only the status says it has been observed now.
            status = applied.get("status", {})
            if status != doc.get("status"):
                self.platform.store.put({**doc, "status": status}, _version(doc))

    def _refuse(self, doc: dict[str, Any], exc: InvalidSpec) -> None:
        kind = doc["kind"]
        namespace, name = _where(doc)
        log.error("%s %s/%s as stored is not applied: %s", kind, namespace, name, exc)
        if kind == "Service":
            self.platform.refuse_stored_service(copy.deepcopy(doc), exc)
        elif kind == DOMAIN_MAPPING:
            self.platform.domains.refused[(namespace, name)] = (
                f"not applied: {exc}; what was routed before goes on being routed"
            )


def _observed(service: dict[str, Any]) -> bool:
    observed = service.get("status", {}).get("observedGeneration")
    return observed is not None and observed == service["metadata"].get("generation")


def _where(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["metadata"].get("namespace", "default"), doc["metadata"]["name"]


def _version(doc: dict[str, Any]) -> str | None:
    return doc["metadata"].get("resourceVersion")
