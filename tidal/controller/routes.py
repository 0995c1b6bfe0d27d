"""Routes: a Service's traffic block becomes the gateway's host table and a stored Route
(docs/architecture.md#revisions-traffic-and-rollout), with gradual rollout of a new latest revision,
and the reachability each revision's autoscaler needs (routed revisions are reachable,
docs/autoscaling.md#per-revision-settings)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tidal.api.manifest import ValidService
from tidal.controller.handle import RevisionHandle
from tidal.controller.revisions import (
    ACTIVE,
    RESERVE,
    ROUTING_STATE,
    SERVICE_LABEL,
    set_routing_state,
)
from tidal.controller.rollout import Rollout, advance, start_rollout
from tidal.controller.traffic import host_table, resolve_traffic
from tidal.gateway.hosts import address, url
from tidal.gateway.routing import TrafficRouter
from tidal.store.base import ResourceStore
from tidal.store.sqlite import now_rfc3339


def key_of(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass
class RouteState:
    hosts: set[str] = field(default_factory=set)
    latest: str | None = None
    rollout: Rollout | None = None
    routed: set[str] = field(default_factory=set)
    labelled: bool = False  # the stored revisions' routingState has been checked since start
    stored: tuple[Any, Any] | None = None  # the Route's (spec, status) as last read or written


class Routes:
    def __init__(
        self,
        store: ResourceStore,
        router: TrafficRouter,
        revisions: Mapping[str, RevisionHandle],
        domain: str,
        default_rollout_s: float,
        mapped_domains: Callable[[str, str], list[str]] = lambda namespace, name: [],
    ) -> None:
        self.store = store
        self.router = router
        self.revisions = revisions
        self.domain = domain
        self.default_rollout_s = default_rollout_s
        self.mapped_domains = mapped_domains  # (namespace, service) → its DomainMappings' domains
        self.states: dict[str, RouteState] = {}

    def routed(self, key: str) -> set[str]:
        """Revisions that currently get traffic from the service's hosts."""
        state = self.states.get(key)
        return state.routed if state else set()

    def rolling_out(self) -> list[str]:
        return [key for key, state in self.states.items() if state.rollout is not None]

    def forget(self, key: str) -> None:
        """The service is gone: its hosts answer 404 from the next request on."""
        state = self.states.pop(key, RouteState())
        self.router.set_hosts(state.hosts, {})

    def reconcile(
        self, valid: ValidService, revisions: list[str], service: dict[str, Any] | None = None
    ) -> None:
        """Publish the service's hosts to the gateway and store the resolved Route.
        `revisions`: the names of the service's revisions; `service`: the stored Service when
        the caller has just read it."""
        namespace, name = valid.namespace, valid.name
        if service is None:
            service = self.store.get("Service", namespace, name)
        if service is None:
            return
        status = service.get("status", {})
        latest_ready = status.get("latestReadyRevisionName")
        latest = latest_ready or status["latestCreatedRevisionName"]
        known = set(revisions)
        targets = resolve_traffic(valid.service.spec.traffic, latest, known)
        state = self.states.setdefault(key_of(namespace, name), RouteState())
        now = time.time()
        duration = (
            valid.rollout_duration_s
            if valid.rollout_duration_s is not None
            else self.default_rollout_s
        )
        if state.latest is not None and state.latest != latest and latest_ready == latest:
            percent = sum(t.percent for t in targets if t.latest)
            previous = list(state.rollout.split) if state.rollout else [(state.latest, percent)]
            state.rollout = start_rollout(previous, latest, percent, duration, now)
        if latest_ready == latest:
            state.latest = latest
        if state.rollout is not None:
            state.rollout = advance(state.rollout, now)
            if state.rollout.done:
                state.rollout = None
        split = list(state.rollout.split) if state.rollout else None
        mapped = self.mapped_domains(namespace, name)
        table = host_table(name, namespace, self.domain, targets, split, valid.public, mapped)
        self._store_route(service, valid, targets, state)  # first, then the gateway
        self.router.set_hosts(
            state.hosts,
            {
                host: [(key_of(namespace, rev), pct) for rev, pct in entries]
                for host, entries in table.items()
            },
        )
        state.hosts = set(table)
        routed = {rev for entries in table.values() for rev, pct in entries if pct > 0}
        self._update_reachability(namespace, revisions, routed, status, state)

    def _update_reachability(
        self,
        namespace: str,
        revisions: list[str],
        routed: set[str],
        status: dict[str, Any],
        state: RouteState,
    ) -> None:
        """Routed revisions, and the newest one while it starts, are reachable
        (docs/autoscaling.md#per-revision-settings). A revision that starts or stops being
        routed says so in its routingState label, with when (GC reads it)."""
        pending = status.get("latestCreatedRevisionName")
        for rev in revisions:
            entry = self.revisions.get(key_of(namespace, rev))
            if entry is not None:
                entry.workload.routed = rev in routed
                entry.reachable = rev in routed or (
                    rev == pending
                    and not entry.workload.ever_ready
                    and entry.workload.failed_reason is None
                )
        changed = routed ^ state.routed if state.labelled else set(revisions)
        for rev in changed.intersection(revisions):
            revision = self.store.get("Revision", namespace, rev)
            if revision is None:
                continue
            was_active = revision["metadata"].get("labels", {}).get(ROUTING_STATE) == ACTIVE
            routing_state = ACTIVE if rev in routed else RESERVE if was_active else None
            name = revision["metadata"]["labels"].get(SERVICE_LABEL, "")
            if routing_state is not None and set_routing_state(
                revision, routing_state, name, now_rfc3339()
            ):
                self.store.put(revision)
        state.routed = routed
        state.labelled = True

    def _store_route(
        self, service: dict[str, Any], valid: ValidService, targets: list[Any], state: RouteState
    ) -> None:
        """The Route: the traffic that runs (not a stored spec tidal refused, which `service`
        may hold on a cluster), and how it resolved."""
        meta = service["metadata"]
        public = valid.public
        name, namespace = meta["name"], meta["namespace"]
        domain = self.domain
        traffic = []
        for target in targets:
            entry: dict[str, Any] = {
                "revisionName": target.revision,
                "percent": target.percent,
                "latestRevision": target.latest,
            }
            if target.tag:
                entry["tag"] = target.tag
                entry["url"] = url(name, namespace, domain, target.tag, public)
            traffic.append(entry)
        route = {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Route",
            "metadata": {"name": name, "namespace": namespace, "labels": {SERVICE_LABEL: name}},
            "spec": {
                "traffic": [
                    t.model_dump(by_alias=True, exclude_none=True)
                    for t in valid.service.spec.traffic
                ]
            },
            "status": {
                "url": url(name, namespace, domain, public=public),
                "address": {"url": address(name, namespace)},
                "traffic": traffic,
                **({"rollout": state.rollout.to_dict()} if state.rollout else {}),
            },
        }
        if state.stored is None:  # first time since start: compare with what the store has
            current = self.store.get("Route", namespace, name)
            state.stored = (current["spec"], current["status"]) if current else (None, None)
        wanted = (route["spec"], route["status"])
        if state.stored != wanted:
            self.store.put(route)
            state.stored = wanted
