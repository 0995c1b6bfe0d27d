"""The control plane of one tidal process: apply/delete, revisions, routes, scaling, GC, restore.

Everything the user changes goes through `apply` and `delete_service`: validated first, written in
one SQLite transaction, then acted on. The gateway's routing table and the replicas follow the
stored state, so a restart (`restore`) rebuilds them from the store alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from prometheus_client import REGISTRY
from pydantic import BaseModel

from tidal.api.claims import CLAIM, ClaimInUse, check_claim_update, validate_claim
from tidal.api.config import PlatformConfig
from tidal.api.config_objects import KINDS as CONFIG_KINDS
from tidal.api.config_objects import ValidConfigObject, check_update, validate_config_object
from tidal.api.domain_mapping import KIND as DOMAIN_MAPPING
from tidal.api.domain_mapping import ValidDomainMapping, validate_domain_mapping
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import (
    TEMPLATE_ANNOTATIONS,
    WARM_STANDBY,
    ValidService,
    validate_service,
)
from tidal.api.namespaces import (
    NAMESPACE,
    NamespaceForbidden,
    implied_namespace,
    validate_namespace,
)
from tidal.api.predictive import REACTIVE, PredictiveAnnotations
from tidal.api.resource_policy import KIND as RESOURCE_POLICY
from tidal.api.resource_policy import ResourcePolicy, validate_resource_policy
from tidal.api.service import Container, LocalObjectReference, Volume
from tidal.api.service_accounts import SERVICE_ACCOUNT, validate_service_account
from tidal.autoscaler.baselines import policy_for_class
from tidal.controller.clock import Clock
from tidal.controller.domains import DomainMappings, mapping_status
from tidal.controller.environment import UnresolvedReference, missing_references, resolve_env
from tidal.controller.factory import RevisionFactory
from tidal.controller.forecasting import Forecaster, account_view, plan_view
from tidal.controller.gc import RevisionAge, revisions_to_collect
from tidal.controller.handle import RevisionHandle, RevisionKey, Revisions, WorkloadView
from tidal.controller.history import HistoryRecorder
from tidal.controller.last_run import as_last_run
from tidal.controller.machine_limits import check_runnable_here
from tidal.controller.namespaces import NamespaceLifecycle, namespace_of
from tidal.controller.placing import CostCollector, Placer
from tidal.controller.registry_auth import read_registry_auth
from tidal.controller.revisions import (
    GENERATION_LABEL,
    PENDING,
    ROUTING_STATE_MODIFIED,
    SERVICE_LABEL,
    next_revision,
    set_routing_state,
)
from tidal.controller.routes import Routes, key_of
from tidal.controller.scaling import ScalingLoop
from tidal.controller.traffic import resolve_traffic
from tidal.controller.usage import resource_view
from tidal.controller.views import live_revision, log_files, read_logs, replica_views
from tidal.controller.volumes import missing_volume_references, reads, resolve_volumes
from tidal.controller.workload import RevisionWorkload, count_remote_answers
from tidal.gateway.feed import feed_of
from tidal.gateway.hosts import address, url
from tidal.gateway.routing import TrafficRouter, add_reported_latency
from tidal.runtime.base import RegistryAuth, Replica, Runtime, VolumeSpec
from tidal.runtime.logs import remove_logs, remove_logs_of_others
from tidal.runtime.resources import monitor_for
from tidal.runtime.volumes import CLAIMS_DIR, VolumeError, claim_folder
from tidal.store.base import ResourceStore
from tidal.store.history import ImportedHistory, MetricHistory, ReplicaSpan
from tidal.store.sqlite import Conflict, Store, now_rfc3339

log = logging.getLogger("tidal.controller")
# The Ready reason of a stored service or revision that a rule added since its apply refuses.
INVALID_SPEC = "InvalidSpec"

SERVER_METADATA = ("resourceVersion", "uid", "generation", "creationTimestamp")
NO_GC = "serving.knative.dev/no-gc"
GC_PERIOD_S = 30.0
ROUTE_PERIOD_S = 0.5
HISTORY_PRUNE_PERIOD_S = 3600.0
PLAN_CHECK_PERIOD_S = 10.0
NAMESPACE_PERIOD_S = 1.0  # how often a terminating namespace's leftovers are tried again


CREATED, CONFIGURED, UNCHANGED = "created", "configured", "unchanged"


class ServiceAddresses(Protocol):
    """Where a Service's cluster-local name is published beyond tidal's own gateway (on
    Kubernetes: a Kubernetes Service of its name, tidal.kubernetes.addresses)."""

    def publish(self, namespace: str, name: str) -> None: ...

    def withdraw(self, namespace: str, name: str) -> None: ...


@dataclass(frozen=True)
class ServicePlan:
    """What one applied Service document will write."""

    valid: ValidService
    doc: dict[str, Any]
    revision: dict[str, Any] | None
    expected_version: str | None
    result: str = CONFIGURED  # created | configured | unchanged, as kubectl prints

    @property
    def key(self) -> str:
        return key_of(self.valid.namespace, self.valid.name)


@dataclass(frozen=True)
class MappingPlan:
    """What one applied DomainMapping document will write."""

    mapping: ValidDomainMapping
    doc: dict[str, Any]
    expected_version: str | None
    result: str = CONFIGURED

    @property
    def key(self) -> str:
        return self.mapping.domain  # one mapping per domain, whatever the namespace


@dataclass(frozen=True)
class ConfigObjectPlan:
    """What one applied Secret, ConfigMap, claim, account or namespace document will write."""

    valid: ValidConfigObject
    doc: dict[str, Any]
    expected_version: str | None
    result: str = CONFIGURED

    @property
    def key(self) -> str:
        return key_of(self.valid.namespace, self.valid.name)


@dataclass(frozen=True)
class PolicyPlan:
    """What one applied ResourcePolicy document will write."""

    policy: ResourcePolicy
    doc: dict[str, Any]
    expected_version: str | None
    result: str = CONFIGURED

    @property
    def key(self) -> str:
        return key_of(self.doc["metadata"]["namespace"], self.doc["metadata"]["name"])


class Platform:
    def __init__(
        self,
        config: PlatformConfig,
        data_dir: Path,
        runtime: Runtime,
        store: ResourceStore | None = None,
        clock: Clock | None = None,
        addresses: ServiceAddresses | None = None,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.addresses = addresses
        self.store: ResourceStore = store if store is not None else Store(data_dir / "tidal.db")
        # On one machine replicas are processes and containers, and Secrets and ConfigMaps are
        # kept here; on Kubernetes replicas are pods, and Secrets and ConfigMaps the cluster's,
        # which the kubelet reads for the environment and volumes of a pod.
        self.on_this_machine = isinstance(self.store, Store)
        self.history = MetricHistory(data_dir / "tidal.db")
        self.runtime = runtime
        self.router = TrafficRouter(on_unreachable=self._on_unreachable)
        self.placer = Placer(config.pools, clock)
        self._cost_collector = CostCollector(self.placer.ledger)
        REGISTRY.register(self._cost_collector)
        self.forecaster = Forecaster(self.history)
        # The one map of revision handles; the router's throttlers and the forecaster's plan
        # entries are tables it keeps in step.
        self.revisions = Revisions(self.router.throttlers, self.forecaster.revisions)
        self.scaling = ScalingLoop(HistoryRecorder(self.history), self.place, self.revisions, clock)
        self.scaling.monitor = monitor_for(runtime)
        self.factory = RevisionFactory(config, data_dir, runtime, self, self.scaling.poke, clock)
        self.services: dict[str, ValidService] = {}
        # Service key → why its stored spec, written past tidal's apply, is not what runs.
        self.refused_specs: dict[str, str] = {}
        self.domains = DomainMappings()
        self.routes = Routes(
            self.store,
            self.router,
            self.revisions,
            config.domain,
            config.rollout_duration_s,
            self.domains.domains_of,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: set[RevisionWorkload] = set()  # removed revisions still stopping replicas
        self._placing: asyncio.Handle | None = None
        self._gateway_reported: dict[str, set[str]] = {}  # revision keys each gateway reported
        # Namespaces are kept here on one machine; on Kubernetes they are the cluster's.
        self.namespaces = (
            NamespaceLifecycle(
                self.store,
                {
                    DOMAIN_MAPPING: self.delete_domain_mapping,
                    "Service": self.delete_service,
                    RESOURCE_POLICY: self.delete_policy,
                    CLAIM: self.delete_claim,
                    **{
                        kind: functools.partial(self.delete_config_object, kind)
                        for kind in (*CONFIG_KINDS, SERVICE_ACCOUNT)
                    },
                },
            )
            if isinstance(self.store, Store)
            else None
        )
        # Told of what happened to a service's replicas: (namespace, service, type, reason,
        # message), as Kubernetes events have them (the kube API records them).
        # Told (namespace, service, type, reason, message) of what happens to a service...
        self.event_listeners: list[Callable[[str, str, str, str, str], None]] = []
        # ... and (namespace, replica, type, reason, message) of what happens to a replica.
        self.replica_event_listeners: list[Callable[[str, str, str, str, str], None]] = []

    @property
    def workloads(self) -> Mapping[str, RevisionWorkload]:
        return WorkloadView(self.revisions)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.restore()
        self.scaling.start()
        self._tasks = [
            asyncio.ensure_future(self._every(ROUTE_PERIOD_S, self._advance_rollouts)),
            asyncio.ensure_future(self._every(GC_PERIOD_S, self.collect_garbage)),
            asyncio.ensure_future(
                self._every(HISTORY_PRUNE_PERIOD_S, lambda: self.history.prune(time.time()))
            ),
            asyncio.ensure_future(self._plan_forever()),
        ]
        if self.namespaces is not None:
            self._tasks.append(
                asyncio.ensure_future(
                    self._every(NAMESPACE_PERIOD_S, self.namespaces.finish_terminating)
                )
            )

    async def _plan_forever(self) -> None:
        """Build missing and hourly plans for predictive revisions; export their numbers."""
        while True:
            try:
                await self.forecaster.replan_due()
                self.forecaster.export()
            except Exception:
                log.exception("planning failed")
            await asyncio.sleep(PLAN_CHECK_PERIOD_S)

    async def stop(self) -> None:
        if self._placing is not None:
            self._placing.cancel()
        for task in self._tasks:
            task.cancel()
        await self.scaling.stop()
        await asyncio.gather(*(w.close() for w in self.workloads.values()), return_exceptions=True)
        await self.runtime.close()
        REGISTRY.unregister(self._cost_collector)
        self.history.close()
        self.store.close()

    async def _every(self, period: float, action: Any) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                action()
            except Exception:
                log.exception("periodic %s failed", action.__name__)

    def restore(self) -> None:
        """Rebuild workloads and routes from the store (after a restart or a kill -9)."""
        if self.namespaces is not None:
            self.namespaces.restore()
        self.history.close_open_spans()
        self.placer.load_spans(self.history.spans())
        for doc in self.store.list(RESOURCE_POLICY):
            try:
                policy = validate_resource_policy(_strip_server_fields(doc))
            except InvalidSpec as exc:  # a rule added since refuses it: place without it
                log.error(
                    "stored resource policy %s is no longer valid: %s", doc["metadata"]["name"], exc
                )
                continue
            self.placer.policies[
                key_of(doc["metadata"]["namespace"], policy.metadata.name or "")
            ] = policy
        for doc in self.store.list(DOMAIN_MAPPING):  # before the services: their routes use them
            try:
                mapping = validate_domain_mapping(_strip_server_fields(doc), self.config.domain)
                self.domains.check_claim(mapping)
            except InvalidSpec as exc:  # a rule added since, or the domain changed: unrouted
                meta = doc["metadata"]
                log.error("stored domain mapping %s is not routed: %s", meta["name"], exc)
                self.domains.refused[(meta["namespace"], meta["name"])] = str(exc)
                continue
            self.domains.add(mapping)
        by_service: dict[tuple[str, str], list[dict[str, Any]]] = {}
        stored: set[tuple[str, str]] = set()
        for revision in self.store.list("Revision"):  # one read, not one per service
            meta = revision["metadata"]
            owner = (meta["namespace"], meta.get("labels", {}).get(SERVICE_LABEL, ""))
            by_service.setdefault(owner, []).append(revision)
            stored.add((meta["namespace"], meta["name"]))
        remove_logs_of_others(self.data_dir / "logs", stored)
        restored: list[tuple[RevisionWorkload, int]] = []
        for doc in self.store.list("Service"):
            if "latestCreatedRevisionName" not in doc.get("status", {}):
                # Stored by another writer (kubectl on a cluster's custom resources) and never
                # applied: nothing of it ran (tidal.controller.outside applies it).
                continue
            where = (doc["metadata"]["namespace"], doc["metadata"]["name"])
            try:
                valid = self._restorable(doc, by_service.get(where, []))
            except InvalidSpec as exc:
                log.error("stored service %s is no longer valid: %s", doc["metadata"]["name"], exc)
                self._mark_invalid(doc, exc)
                continue
            handles: list[tuple[RevisionHandle, int]] = []
            for revision in by_service.get((valid.namespace, valid.name), []):
                desired = int(revision.get("status", {}).get("desiredReplicas", 0))
                try:
                    handle = self.factory.build(valid.name, revision, restored=desired)
                except InvalidSpec as exc:  # an old revision a newer rule refuses
                    log.error(
                        "stored revision %s is no longer valid: %s",
                        revision["metadata"]["name"],
                        exc,
                    )
                    self._mark_invalid(revision, exc)
                    continue
                handles.append((handle, desired))
            runnable = {handle.key.name for handle, _ in handles}
            status = doc.get("status", {})
            latest = status.get("latestReadyRevisionName") or status.get(
                "latestCreatedRevisionName"
            )
            try:  # traffic pinned to a revision left out above (or gone) runs nothing
                self._check_targets(valid, by_service.get((valid.namespace, valid.name), []))
                resolve_traffic(valid.service.spec.traffic, latest or "", runnable)
            except InvalidSpec as exc:
                log.error("stored service %s routes to no runnable revision: %s", valid.name, exc)
                self._mark_invalid(doc, exc)
                continue
            self.services[key_of(valid.namespace, valid.name)] = valid
            if self.addresses is not None:
                self.addresses.publish(valid.namespace, valid.name)
            for handle, desired in handles:
                self.revisions.add(handle)
                if desired:
                    restored.append((handle.workload, desired))
            self.reconcile_route(valid.namespace, valid.name, doc)
        # Replicas start once the loop runs again (placement is coalesced): restore returns as
        # soon as the tables are rebuilt, and the admin API answers meanwhile.
        for workload, desired in restored:
            workload.set_desired(desired)

    def _restorable(self, doc: dict[str, Any], revisions: list[dict[str, Any]]) -> ValidService:
        """The stored Service; or where its spec is refused (another writer's, on a cluster),
        the Service as it last ran (tidal.controller.last_run), its Ready condition saying why
        the stored spec does not run. InvalidSpec, the stored spec's, when neither is valid."""
        try:
            return self._validate_stored(doc)
        except InvalidSpec as exc:
            meta = doc["metadata"]
            route = self.store.get("Route", meta["namespace"], meta["name"])
            last_run = as_last_run(doc, revisions, route)
            if last_run is None:
                raise
            try:
                valid = self._validate_stored(last_run)
            except InvalidSpec:
                raise exc from None
            log.error("stored service %s is not run as stored: %s", meta["name"], exc)
            self._note_refused(meta, exc)
            return valid

    def _validate_stored(self, doc: dict[str, Any]) -> ValidService:
        return validate_service(
            _strip_server_fields(doc),
            self.config.autoscaler,
            self.runtime.requires_command,
            restoring=True,
        )

    def _check_targets(self, valid: ValidService, revisions: list[dict[str, Any]]) -> None:
        """Traffic may name only revisions that run. A stored revision (of `revisions`, the
        service's) that a newer rule refuses is kept but not run (`restore` marks it): naming
        it is refused here, with why, before anything is stored."""
        refused = {
            r["metadata"]["name"]
            for r in revisions
            if any(
                c.get("reason") == INVALID_SPEC for c in r.get("status", {}).get("conditions", [])
            )
        }
        for index, target in enumerate(valid.service.spec.traffic):
            name = target.revision_name
            if name in refused:
                raise InvalidSpec(
                    f"spec.traffic[{index}].revisionName",
                    f"revision {name!r} is not run: its stored spec is no longer valid "
                    f"(tidal describe service {valid.name})",
                )

    def _adopt_revisions(self, valid: ValidService) -> None:
        """Handles for the stored revisions of a service that `restore` left out (its traffic
        named a revision it could not run), once an apply has fixed it; none start."""
        have = {h.key.name for h in self.revisions.of_service(valid.namespace, valid.name)}
        for revision in self._revisions_of(valid.namespace, valid.name):
            if revision["metadata"]["name"] in have:
                continue
            try:
                self.revisions.add(self.factory.build(valid.name, revision, restored=0))
            except InvalidSpec:  # marked at restore; stays out
                continue

    def _mark_invalid(self, stored: dict[str, Any], exc: InvalidSpec) -> None:
        """A stored service or revision that a rule added since its apply refuses is not run;
        its Ready condition says why, so that `get` does not go on showing it Ready."""
        message = str(exc).replace("\n", "; ")
        remedy = (
            "apply a fixed manifest or delete the service"
            if stored["kind"] == "Service"
            else "route no traffic to it; a newer revision of the service runs"
        )
        status = stored.setdefault("status", {})
        status["conditions"] = [
            {
                "type": "Ready",
                "status": "False",
                "reason": INVALID_SPEC,
                "message": f"not run: the stored spec is no longer valid ({message}); {remedy}",
            }
        ]
        if stored["kind"] == "Revision":
            status["desiredReplicas"] = status["actualReplicas"] = 0
        self.store.put(stored)

    # -- apply / delete -----------------------------------------------------------------------

    def apply(
        self, docs: list[dict[str, Any]], dry_run: bool = False, force: bool = False
    ) -> list[dict[str, Any]]:
        """Validate every document, then store all of them in one transaction, or none."""
        return [doc for doc, _ in self.apply_detailed(docs, dry_run, force)]

    def apply_detailed(
        self, docs: list[dict[str, Any]], dry_run: bool = False, force: bool = False
    ) -> list[tuple[dict[str, Any], str]]:
        """`apply`, with what happened to each document: created, configured or unchanged.
        Traffic to a failed revision is refused with its reason unless `force`."""
        plans: list[ServicePlan | PolicyPlan | MappingPlan | ConfigObjectPlan] = []
        seen: set[str] = set()
        errors: list[InvalidSpec] = []
        for index, doc in enumerate(docs):
            try:
                plan = self._plan(doc, force)
                key = f"{plan.doc['kind']} {plan.key}"
                if key in seen:
                    raise InvalidSpec("metadata.name", f"{key} appears twice")
                seen.add(key)
            except InvalidSpec as exc:
                errors.append(exc.prefixed(f"document {index + 1}: ") if len(docs) > 1 else exc)
                continue
            plans.append(plan)
        if not errors:
            errors = self._unresolved_references(plans, len(docs) > 1)
            errors += self._namespace_problems(plans, len(docs) > 1)
        if errors:
            raise InvalidSpec.combine(errors)
        if dry_run:
            return [(p.doc, p.result) for p in plans]
        with self.store.transaction():
            self._make_namespaces(plans)
            for plan in plans:
                if plan.result == UNCHANGED:
                    self._check_version(plan.doc, plan.expected_version)
                    continue
                self.store.put(plan.doc, plan.expected_version)
                if isinstance(plan, ServicePlan) and plan.revision is not None:
                    self.store.put(plan.revision)
        for plan in plans:
            if isinstance(plan, ConfigObjectPlan) and plan.valid.kind == CLAIM:
                self._make_claim_folder(plan.valid.namespace, plan.valid.name)
                continue
            if isinstance(plan, ConfigObjectPlan) and plan.valid.kind == SERVICE_ACCOUNT:
                continue  # read by replicas as they start, for their pulls
            if isinstance(plan, ConfigObjectPlan) and plan.valid.kind == NAMESPACE:
                continue
            if isinstance(plan, ConfigObjectPlan):
                if plan.result != UNCHANGED:
                    self._refresh_volumes(plan.valid.kind, plan.valid.namespace, plan.valid.name)
                continue  # its values are read by replicas as they start
            if isinstance(plan, PolicyPlan):
                self.placer.policies[plan.key] = plan.policy
                continue
            if isinstance(plan, MappingPlan):
                self._route_mapping(plan.mapping, self.domains.add(plan.mapping))
                continue
            adopt = plan.key not in self.services  # new, or left out at restore
            self.refused_specs.pop(plan.key, None)
            self.services[plan.key] = plan.valid
            if plan.revision is not None:
                self.revisions.add(self.factory.build(plan.valid.name, plan.revision, None))
            if adopt:
                self._adopt_revisions(plan.valid)
                if self.addresses is not None:
                    self.addresses.publish(plan.valid.namespace, plan.valid.name)
            self.reconcile_route(plan.valid.namespace, plan.valid.name)
        self.collect_garbage(
            [(p.valid.namespace, p.valid.name) for p in plans if isinstance(p, ServicePlan)]
        )
        self.place()
        return [(p.doc, p.result) for p in plans]

    def _namespace_problems(self, plans: list[Any], several: bool) -> list[InvalidSpec]:
        """Nothing new goes into a namespace being deleted."""
        if self.namespaces is None:
            return []
        errors = []
        for index, plan in enumerate(plans):
            try:
                self.namespaces.check_writable(
                    namespace_of(plan.doc), plan.doc["kind"], plan.result == CREATED
                )
            except InvalidSpec as exc:
                errors.append(exc.prefixed(f"document {index + 1}: ") if several else exc)
        return errors

    def _make_namespaces(self, plans: list[Any]) -> None:
        """The namespaces the plans write in that do not exist yet come into being with them
        (a cluster would refuse the write; docs/kubectl.md#namespaces)."""
        if self.namespaces is None:
            return
        for name in self.namespaces.missing(namespace_of(p.doc) for p in plans):
            if not any(p.doc["kind"] == NAMESPACE and p.valid.name == name for p in plans):
                self.store.put(implied_namespace(name))

    def _unresolved_references(self, plans: list[Any], several: bool) -> list[InvalidSpec]:
        """A new revision whose environment or volumes name a Secret or ConfigMap (or key) that
        neither exists nor comes in the same apply is refused: its replicas could not start."""
        if not self.on_this_machine:
            return []
        applied = {
            (p.valid.kind, p.valid.namespace, p.valid.name): p.doc
            for p in plans
            if isinstance(p, ConfigObjectPlan)
        }

        def lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
            return applied.get((kind, namespace, name)) or self.store.get(kind, namespace, name)

        errors = []
        for index, plan in enumerate(plans):
            if not isinstance(plan, ServicePlan) or plan.revision is None:
                continue
            spec = plan.valid.service.spec.template.spec
            namespace = plan.valid.namespace
            found = [
                (f"spec.template.spec.containers[{position}]", problem)
                for position, container in enumerate(spec.containers)
                for problem in missing_references(container, namespace, lookup)
            ]
            found += [
                (f"spec.template.spec.initContainers[{position}]", problem)
                for position, container in enumerate(spec.init_containers)
                for problem in missing_references(container, namespace, lookup)
            ]
            found += [
                ("spec.template.spec.volumes", problem)
                for problem in missing_volume_references(spec.volumes, namespace, lookup)
            ]
            if found:
                error = InvalidSpec("", "", found)
                errors.append(error.prefixed(f"document {index + 1}: ") if several else error)
        return errors

    def resolve_env(self, namespace: str, container: Container) -> dict[str, str]:
        """A replica's environment with its Secret and ConfigMap references filled in (raises
        UnresolvedReference); on Kubernetes only the plain values, the kubelet fills in the rest."""
        if not self.on_this_machine:
            return {e.name: e.value for e in container.env if e.value_from is None}
        return resolve_env(container, namespace, self.store.get)

    def resolve_volumes(self, namespace: str, volumes: Sequence[Volume]) -> tuple[VolumeSpec, ...]:
        """A replica's volumes with their Secret and ConfigMap files (raises
        UnresolvedReference); none on Kubernetes, where pods carry the revision's volumes."""
        if not self.on_this_machine:
            return ()
        return resolve_volumes(volumes, namespace, self.store.get)

    def registry_auth(
        self, namespace: str, secrets: Sequence[LocalObjectReference], account: str | None
    ) -> RegistryAuth:
        """Credentials for a container's pull: the revision's imagePullSecrets, or where it
        names none, its service account's (as the API server's ServiceAccount admission gives
        them to a pod); none on Kubernetes, where pods carry them for the kubelet."""
        if not self.on_this_machine:
            return RegistryAuth()
        if not secrets and account:
            found = self.store.get(SERVICE_ACCOUNT, namespace, account) or {}
            secrets = [LocalObjectReference(**ref) for ref in found.get("imagePullSecrets", [])]
        return read_registry_auth(secrets, namespace, self.store.get)

    def _check_version(self, doc: dict[str, Any], expected: str | None) -> None:
        """Conflict if `expected` names a version the stored `doc` no longer has: a write
        pinned to a stale read fails even when it would change nothing."""
        meta = doc["metadata"]
        current = self.store.get(doc["kind"], meta["namespace"], meta["name"])
        if expected is not None and (
            current is None or current["metadata"].get("resourceVersion") != expected
        ):
            raise Conflict(
                f"{doc['kind']} {meta['namespace']}/{meta['name']} was modified (expected "
                f"resourceVersion {expected}); read it again and retry"
            )

    def _plan(
        self, doc: dict[str, Any], force: bool = False
    ) -> ServicePlan | PolicyPlan | MappingPlan | ConfigObjectPlan:
        kind = doc.get("kind")
        if kind == "Service":
            return self._plan_service(doc, force)
        if kind in CONFIG_KINDS:
            return self._plan_config_object(validate_config_object(doc), check_update)
        if kind == CLAIM:
            return self._plan_config_object(validate_claim(doc), check_claim_update)
        if kind == SERVICE_ACCOUNT:
            return self._plan_config_object(validate_service_account(doc))
        if kind == NAMESPACE:
            return self._plan_config_object(validate_namespace(doc))
        if kind == RESOURCE_POLICY:
            policy = validate_resource_policy(doc)
            return PolicyPlan(policy, *self._to_store(policy, policy.metadata.namespace))
        if kind == DOMAIN_MAPPING:
            mapping = validate_domain_mapping(doc, self.config.domain)
            self.domains.check_claim(mapping)
            return MappingPlan(mapping, *self._to_store(mapping.doc, mapping.namespace))
        supported = ", ".join(
            (
                "Service",
                DOMAIN_MAPPING,
                RESOURCE_POLICY,
                *CONFIG_KINDS,
                CLAIM,
                SERVICE_ACCOUNT,
                NAMESPACE,
            )
        )
        raise InvalidSpec("kind", f"unsupported kind {kind!r} (supported: {supported})")

    def _plan_config_object(
        self,
        valid: ValidConfigObject,
        check: Callable[[dict[str, Any] | None, dict[str, Any]], None] | None = None,
    ) -> ConfigObjectPlan:
        if not self.on_this_machine:
            raise InvalidSpec(
                "kind",
                f"on Kubernetes a {valid.kind} is the cluster's: create it there (kubectl "
                "apply -f ...); services refer to it as usual",
            )
        return ConfigObjectPlan(valid, *self._to_store(valid.doc, valid.namespace, check))

    def delete_config_object(self, kind: str, namespace: str, name: str) -> bool:
        """Replicas that started with its values keep them, as containers do, and so do their
        volumes' files, as the kubelet keeps them."""
        return self.store.delete(kind, namespace, name)

    def delete_namespace(self, name: str) -> bool:
        """Delete a namespace and everything in it (docs/kubectl.md#namespaces); False if there
        is none. NamespaceForbidden for `default` and Kubernetes' own."""
        if self.namespaces is None:
            raise NamespaceForbidden("on Kubernetes a namespace is the cluster's: delete it there")
        return self.namespaces.delete(name)

    def _make_claim_folder(self, namespace: str, name: str) -> None:
        """A claim applied here is its folder from then on (docs/containers.md#claims)."""
        try:
            claim_folder(self.data_dir / CLAIMS_DIR, namespace, name)
        except VolumeError as exc:  # a replica that mounts it will fail, saying the same
            log.warning("%s", exc)

    def claim_users(self, namespace: str, name: str) -> list[str]:
        """The replicas (running, starting or still stopping) whose volumes include the claim."""
        return [
            replica_id
            for workload in (*self.workloads.values(), *self._closing)
            if workload.spec.namespace == namespace
            and any(
                volume.persistent_volume_claim is not None
                and volume.persistent_volume_claim.claim_name == name
                for volume in workload.spec.volumes
            )
            for replica_id in (*workload.replicas, *workload.provisioning)
        ]

    def delete_claim(self, namespace: str, name: str) -> bool:
        """Delete a claim and its folder, with what replicas wrote there. Refused (ClaimInUse)
        while a replica mounts it: the API server would keep it until no pod does."""
        users = self.claim_users(namespace, name)
        if users:
            raise ClaimInUse(
                f'persistentvolumeclaim "{name}" is in use by pod {", ".join(users)}: delete '
                "or change the services that mount it first"
            )
        if not self.store.delete(CLAIM, namespace, name):
            return False
        folder = self.data_dir / CLAIMS_DIR / namespace / name
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():
            log.warning("cannot remove all of %s: remove it by hand", folder)
        return True

    def _refresh_volumes(self, kind: str, namespace: str, name: str) -> None:
        """Running replicas whose volumes read this Secret or ConfigMap get its current files,
        as the kubelet updates a pod's; a replica whose volumes can no longer all be filled in
        keeps the files it has. (Only on this machine: on Kubernetes neither kind is applied
        here.)"""
        for workload in self.workloads.values():
            spec = workload.spec
            if spec.namespace != namespace or not reads(spec.volumes, kind, name):
                continue
            try:
                volumes = resolve_volumes(spec.volumes, namespace, self.store.get)
            except UnresolvedReference as exc:
                log.warning("volumes of %s not updated: %s", spec.revision, exc)
                continue
            workload.refresh_volumes(volumes)

    def _to_store(
        self,
        model: BaseModel | dict[str, Any],
        namespace: str | None,
        check: Callable[[dict[str, Any] | None, dict[str, Any]], None] | None = None,
    ) -> tuple[dict[str, Any], str | None, str]:
        """A validated document (a model, or already dumped) as it is stored (no status, no
        server metadata), the resourceVersion it was read at, and kubectl's word for its apply;
        `check(current, new)` may refuse the change."""
        stored = (
            model
            if isinstance(model, dict)
            else model.model_dump(by_alias=True, exclude_none=True, exclude={"status"})
        )
        meta = stored["metadata"]
        namespace = "default" if namespace is None else namespace  # "": a cluster-scoped kind
        current = self.store.get(stored["kind"], namespace, meta.get("name", ""))
        if check is not None:
            check(current, stored)
        expected = _pinned_version(meta, current)
        for server_field in SERVER_METADATA:
            meta.pop(server_field, None)
        meta["namespace"] = namespace
        return stored, expected, _apply_result(current, stored)

    def _route_mapping(
        self, mapping: ValidDomainMapping | None, previous: ValidDomainMapping | None
    ) -> None:
        """Route a mapping's domain to its service, and off the service it mapped before."""
        for target in (previous, mapping):
            if target is not None:
                self.reconcile_route(target.namespace, target.service)

    def live_domain_mapping(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A stored DomainMapping with its status, which follows its Service's existence."""
        meta, ref = doc["metadata"], doc["spec"]["ref"]
        exists = key_of(meta["namespace"], ref["name"]) in self.services
        refused = self.domains.refused.get((meta["namespace"], meta["name"]))
        return {**doc, "status": mapping_status(meta["name"], ref["name"], exists, refused)}

    def delete_domain_mapping(self, namespace: str, name: str) -> bool:
        """Delete it, or unroute one another writer removed from the store."""
        stored = self.store.delete(DOMAIN_MAPPING, namespace, name)
        previous = self.domains.remove(namespace, name)
        if previous is None and not stored:
            return False
        self._route_mapping(None, previous)
        return True

    def refuse_stored_service(self, stored: dict[str, Any], exc: InvalidSpec) -> None:
        """A Service spec that another writer stored (kubectl on a cluster's custom resources)
        and an apply would refuse: what ran before goes on, and its Ready condition says why
        the new spec does not run. A newer write wins over this status write."""
        meta = stored["metadata"]
        self._note_refused(meta, exc)
        status = stored.setdefault("status", {})
        status["observedGeneration"] = meta.get("generation")
        self._set_service_conditions(stored)
        with contextlib.suppress(Conflict):
            self.store.put(stored, meta.get("resourceVersion"))

    def _note_refused(self, meta: dict[str, Any], exc: InvalidSpec) -> None:
        """The Service's Ready condition says, until a valid change, why its stored spec does
        not run."""
        why = str(exc).replace("\n", "; ")
        self.refused_specs[key_of(meta["namespace"], meta["name"])] = (
            f"generation {meta.get('generation')} of the spec is not applied: {why}; "
            "what ran before goes on running"
        )

    def _plan_service(self, doc: dict[str, Any], force: bool = False) -> ServicePlan:
        valid = validate_service(doc, self.config.autoscaler, self.runtime.requires_command)
        try:
            policy_for_class(valid.autoscaling.autoscaler_class)
        except ValueError as exc:
            field = f"{TEMPLATE_ANNOTATIONS}[autoscaling.knative.dev/class]"
            raise InvalidSpec(field, str(exc)) from None
        if self.on_this_machine:
            check_runnable_here(valid.service.spec.template)
        pod = valid.service.spec.template.spec
        every = [(f"containers[{i}]", c) for i, c in enumerate(pod.containers)]
        every += [(f"initContainers[{i}]", c) for i, c in enumerate(pod.init_containers)]
        for where, container in every:
            if not self.on_this_machine and not container.image:
                raise InvalidSpec(
                    f"spec.template.spec.{where}.image",
                    "a pod runs an image, and this container names none (a command alone runs "
                    "only on one machine, as a process)",
                )
        standby = valid.warm_standby_pool
        if standby is not None and standby not in self.placer.pools_by_name:
            pools = ", ".join(self.placer.pools_by_name)
            raise InvalidSpec(
                f"spec.template.metadata.annotations[{WARM_STANDBY}]",
                f"no pool named {standby!r} (pools: {pools})",
            )
        service = valid.service.model_dump(by_alias=True, exclude_none=True, exclude={"status"})
        current = self.store.get("Service", valid.namespace, valid.name)
        expected = _pinned_version(service["metadata"], current)
        for server_field in SERVER_METADATA:
            service["metadata"].pop(server_field, None)
        service["metadata"]["namespace"] = valid.namespace
        status = dict(current.get("status", {})) if current else {}
        revisions = self._revisions_of(valid.namespace, valid.name)
        change = next_revision(
            valid,
            service,
            revisions,
            int(status.get("configurationGeneration", 0)),
            status.get("latestCreatedRevisionName"),
        )
        revision = change.new
        known = {r["metadata"]["name"] for r in revisions}
        if revision is not None:
            set_routing_state(revision, PENDING, valid.name, now_rfc3339())
            known.add(revision["metadata"]["name"])
            status["configurationGeneration"] = int(
                revision["metadata"]["labels"][GENERATION_LABEL]
            )
            status["latestCreatedRevisionName"] = revision["metadata"]["name"]
        elif change.reused is not None:
            status["latestCreatedRevisionName"] = change.reused
            workload = self.workloads.get(key_of(valid.namespace, change.reused))
            if workload is not None and workload.ever_ready and workload.failed_reason is None:
                status["latestReadyRevisionName"] = change.reused
        latest = status.get("latestReadyRevisionName") or status["latestCreatedRevisionName"]
        self._check_targets(valid, revisions)
        resolved = resolve_traffic(valid.service.spec.traffic, latest, known)
        if not force:
            self._refuse_failed_targets(valid, resolved)
        changed = current is None or current.get("spec") != service["spec"]
        generation = int(current["metadata"].get("generation", 1)) if current else 0
        service["metadata"]["generation"] = generation + 1 if changed else generation
        status["observedGeneration"] = service["metadata"]["generation"]
        status["url"] = url(valid.name, valid.namespace, self.config.domain, public=valid.public)
        status["address"] = {"url": address(valid.name, valid.namespace)}
        service["status"] = status
        self._set_service_conditions(service)
        result = _apply_result(current, service) if revision is None else CONFIGURED
        return ServicePlan(valid, service, revision, expected, CREATED if not current else result)

    def _refuse_failed_targets(self, valid: ValidService, resolved: list[Any]) -> None:
        """Traffic to a failed revision would answer every request with 503: refuse it, with
        the revision's reason (`tidal traffic --force` routes it anyway)."""
        problems = []
        for index, target in enumerate(resolved):
            workload = self.workloads.get(key_of(valid.namespace, target.revision))
            failed = workload is not None and workload.failed_reason is not None
            if target.percent and not target.latest and failed:
                assert workload is not None
                problems.append(
                    (
                        f"spec.traffic[{index}]",
                        f"revision {target.revision!r} failed: {_failure(workload)}; "
                        "fix it, or route to it anyway with --force",
                    )
                )
        if problems:
            raise InvalidSpec("", "", problems)

    def delete_policy(self, namespace: str, name: str) -> bool:
        """Delete it, or forget one deleted from the store by another writer (kubectl on a
        cluster's custom resources)."""
        stored = self.store.delete(RESOURCE_POLICY, namespace, name)
        if self.placer.policies.pop(key_of(namespace, name), None) is None and not stored:
            return False
        self.place()
        return True

    def delete_service(self, namespace: str, name: str) -> bool:
        """Delete it with its revisions and route, or finish the deletion of one that another
        writer (kubectl on a cluster's custom resources) removed from the store."""
        key = key_of(namespace, name)
        self.refused_specs.pop(key, None)
        if self.store.get("Service", namespace, name) is None and key not in self.services:
            return False
        revisions = self._revisions_of(namespace, name)
        with self.store.transaction():  # store first: a failed commit leaves the routes as they are
            self.store.delete("Service", namespace, name)
            self.store.delete("Route", namespace, name)
            for revision in revisions:
                self.store.delete("Revision", namespace, revision["metadata"]["name"])
        self.routes.forget(key)
        for revision in revisions:
            self._remove_revision(RevisionKey.of(namespace, revision["metadata"]["name"]))
        self.services.pop(key, None)
        if self.addresses is not None:
            self.addresses.withdraw(namespace, name)
        return True

    # -- revisions and replicas ---------------------------------------------------------------

    def _revisions_of(self, namespace: str, service: str) -> list[dict[str, Any]]:
        revisions = self.store.list("Revision", namespace, {SERVICE_LABEL: service})
        return sorted(revisions, key=lambda r: int(r["metadata"]["labels"][GENERATION_LABEL]))

    def _remove_revision(self, key: RevisionKey) -> None:
        """Out of every table in one step; its replicas drain and stop in the background."""
        handle = self.revisions.remove(key)
        if handle is None:
            return
        self.scaling.forget(handle)
        if handle.planned is not None:
            self.forecaster.forget(handle.planned)
        task = asyncio.ensure_future(handle.workload.close())
        self._tasks.append(task)
        self._closing.add(handle.workload)
        task.add_done_callback(self._tasks.remove)
        task.add_done_callback(lambda _: self._closing.discard(handle.workload))
        task.add_done_callback(lambda _: self._forget_logs(key, handle.workload.spec.log_dir))

    def _forget_logs(self, key: RevisionKey, log_dir: Path) -> None:
        """A removed revision's logs go once its replicas have stopped, unless a revision of
        the same name (a re-created service) runs meanwhile and writes there."""
        if self.revisions.get(key) is None:
            remove_logs(log_dir)

    # -- workload events (tidal.controller.workload.WorkloadEvents) -----------------------------

    def place(self) -> None:
        """Let the scheduler place or remove replicas of every revision (idle ones at zero have
        nothing to place, unless they keep a warm standby)."""
        self.placer.place(
            h.workload
            for h in self.revisions.values()
            if not h.idle or h.workload.spec.standby_pool is not None
        )

    def needs_placement(self, workload: RevisionWorkload) -> None:
        """Place once the current step is done: many changes in one step, one placement."""
        if self._placing is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.place()
            return
        self._placing = loop.call_soon(self._place_soon)

    def _place_soon(self) -> None:
        self._placing = None
        self.place()

    def replica_started(
        self, workload: RevisionWorkload, replica_id: str, pool: str, gpus: int
    ) -> None:
        spec = workload.spec
        now = time.time()
        assigned = f"Successfully assigned {spec.namespace}/{replica_id} to {pool}"
        self._replica_event(spec.namespace, replica_id, "Normal", "Scheduled", assigned)
        self.placer.ledger.start(replica_id, spec.service, spec.revision, pool, gpus, now)
        self.history.start_span(
            ReplicaSpan(replica_id, spec.service, spec.revision, pool, gpus, now, None)
        )

    def replica_not_ready(self, workload: RevisionWorkload, replica: Replica) -> None:
        namespace, replica_id = workload.spec.namespace, replica.replica_id
        if not replica.down and not replica.reason_code:  # (a kill says why when it ends)
            self._replica_event(
                namespace, replica_id, "Warning", "Unhealthy", "Readiness probe failed"
            )
        for container in replica.down:
            code = replica.last_exit.get(container)
            message = f"Back-off restarting failed container {container} in pod {replica_id}"
            if code is not None:
                message += f" (it exited with code {code})"
            self._replica_event(namespace, replica_id, "Warning", "BackOff", message)

    def replica_stopping(self, workload: RevisionWorkload, replica: Replica) -> None:
        stopping = f"Stopping container {workload.spec.container_name}"
        self._replica_event(
            workload.spec.namespace, replica.replica_id, "Normal", "Killing", stopping
        )

    def replica_gone(self, workload: RevisionWorkload, replica_id: str) -> None:
        now = time.time()
        self.placer.ledger.stop(replica_id, now)
        self.history.stop_span(replica_id, now)

    def replica_ready(self, workload: RevisionWorkload, replica: Replica) -> None:
        spec = replica.spec
        started = f"Started container {workload.spec.container_name}"
        if replica.startup_seconds is not None:
            started += f" (ready {replica.startup_seconds:.1f}s after its start)"
        self._replica_event(spec.namespace, replica.replica_id, "Normal", "Started", started)
        if replica.startup_seconds is not None:
            self.history.add_ready_time(
                spec.namespace,
                spec.service,
                spec.revision,
                spec.pool,
                time.time(),
                replica.startup_seconds,
            )

    def replica_exited(self, workload: RevisionWorkload, replica: Replica) -> None:
        spec = workload.spec
        why = replica.reason or f"exited with code {replica.exit_code}"
        message = f'Replica {replica.replica_id} of revision "{spec.revision}": {why}'
        log.warning("%s/%s: %s", spec.namespace, spec.service, message)
        for listener in self.event_listeners:
            listener(spec.namespace, spec.service, "Warning", "ReplicaExited", message)
        reason = replica.reason_code or "Failed"
        self._replica_event(spec.namespace, replica.replica_id, "Warning", reason, why)

    def _replica_event(
        self, namespace: str, replica_id: str, kind: str, reason: str, message: str
    ) -> None:
        for listener in self.replica_event_listeners:
            listener(namespace, replica_id, kind, reason, message)

    def _on_unreachable(self, key: str, replica_id: str) -> None:
        handle = self.revisions.get(key)
        if handle is not None:
            handle.workload.replace(replica_id)

    def status_changed(self, workload: RevisionWorkload) -> None:
        spec = workload.spec
        revision = self.store.get("Revision", spec.namespace, spec.revision)
        if revision is None:
            return
        status = {
            **{k: v for k, v in revision.get("status", {}).items() if k != "pendingReplicas"},
            **workload.status_dict(),
        }
        status["everReady"] = workload.ever_ready
        if status != revision.get("status"):
            revision["status"] = status
            self.store.put(revision)
        service = self.store.get("Service", spec.namespace, spec.service)
        if service is None:
            return
        svc_status = service.setdefault("status", {})
        before = json.dumps(svc_status, sort_keys=True)
        if (
            workload.ever_ready
            and workload.failed_reason is None
            and self._becomes_latest_ready(revision, svc_status)
        ):
            svc_status["latestReadyRevisionName"] = spec.revision
        self._set_service_conditions(service)
        if json.dumps(svc_status, sort_keys=True) != before:
            self.store.put(service)
            self.reconcile_route(spec.namespace, spec.service)
            self.collect_garbage([(spec.namespace, spec.service)])

    def _becomes_latest_ready(self, revision: dict[str, Any], status: dict[str, Any]) -> bool:
        """A ready revision is the latest ready one if it is the latest created, or newer than
        the latest ready but older than the latest created (which is then not ready yet), as in
        Knative. The latest created need not be the newest: a named template applied again
        makes its older revision the latest."""
        namespace, name = revision["metadata"]["namespace"], revision["metadata"]["name"]
        created = status.get("latestCreatedRevisionName")
        if name == created:
            return True
        current = status.get("latestReadyRevisionName")
        generation = _generation(revision)
        newer = current is None or generation > self._generation_of(namespace, current)
        return newer and (created is None or generation < self._generation_of(namespace, created))

    def _generation_of(self, namespace: str, revision: str) -> int:
        doc = self.store.get("Revision", namespace, revision)
        return _generation(doc) if doc else 0

    def _set_service_conditions(self, service: dict[str, Any]) -> None:
        status = service["status"]
        latest = status.get("latestCreatedRevisionName")
        workload = self.workloads.get(key_of(service["metadata"]["namespace"], latest or ""))
        if workload is not None and workload.failed_reason is not None:
            condition = {
                "type": "Ready",
                "status": "False",
                "reason": "RevisionFailed",
                "message": f"Revision {latest!r} failed: {workload.failed_reason}: "
                f"{workload.failed_message}",
            }
        elif latest is not None and status.get("latestReadyRevisionName") == latest:
            condition = {"type": "Ready", "status": "True"}
        else:
            condition = {
                "type": "Ready",
                "status": "Unknown",
                "reason": "RevisionMissing",
                "message": f"Revision {latest!r} is not ready yet",
            }
        namespace = service["metadata"]["namespace"]
        for target in service.get("spec", {}).get("traffic", []):
            routed = self.workloads.get(key_of(namespace, target.get("revisionName") or ""))
            if target.get("percent") and routed is not None and routed.failed_reason is not None:
                condition = {
                    "type": "Ready",
                    "status": "False",
                    "reason": "RevisionFailed",
                    "message": f"Revision {routed.spec.revision!r} gets {target['percent']}% of "
                    f"the traffic and failed: {_failure(routed)}",
                }
                break
        refused = self.refused_specs.get(key_of(namespace, service["metadata"]["name"]))
        if refused is not None:
            condition = {
                "type": "Ready",
                "status": "False",
                "reason": INVALID_SPEC,
                "message": refused,
            }
        status["conditions"] = [condition]

    # -- routes -------------------------------------------------------------------------------

    def reconcile_route(
        self, namespace: str, name: str, service: dict[str, Any] | None = None
    ) -> None:
        valid = self.services.get(key_of(namespace, name))
        if valid is not None:
            names = [h.key.name for h in self.revisions.of_service(namespace, name)]
            self.routes.reconcile(valid, names, service)

    def _advance_rollouts(self) -> None:
        for key in self.routes.rolling_out():
            namespace, name = key.split("/", 1)
            self.reconcile_route(namespace, name)

    # -- garbage collection -------------------------------------------------------------------

    def collect_garbage(self, services: Iterable[tuple[str, str]] | None = None) -> list[str]:
        """Delete old revisions by Knative's GC rules; returns the deleted names. `services`
        (namespace, name): only these, after they changed; None (the periodic pass): those
        with more revisions than GC keeps anyway, counted in memory (the latest is never
        collected, so a service with one revision costs nothing)."""
        keep = max(1, self.config.gc.min_non_active_revisions)
        if services is None:
            services = [
                s for s in self.revisions.services() if len(self.revisions.of_service(*s)) > keep
            ]
        deleted: list[str] = []
        now = time.time()
        for namespace, name in services:
            deleted += self._collect_service(namespace, name, now)
        return deleted

    def _collect_service(self, namespace: str, name: str, now: float) -> list[str]:
        if key_of(namespace, name) not in self.services:
            return []
        service = self.store.get("Service", namespace, name)
        if service is None:
            return []
        status = service.get("status", {})
        active = {status.get("latestReadyRevisionName"), status.get("latestCreatedRevisionName")}
        active |= self.routes.routed(key_of(namespace, name))
        ages = [
            _age(revision, active=revision["metadata"]["name"] in active)
            for revision in self._revisions_of(namespace, name)
        ]
        deleted = []
        for revision in revisions_to_collect(ages, self.config.gc, now):
            self.store.delete("Revision", namespace, revision)
            self._remove_revision(RevisionKey.of(namespace, revision))
            deleted.append(f"{namespace}/{revision}")
        return deleted

    # -- views for the admin API --------------------------------------------------------------

    def live_revision(self, revision: dict[str, Any]) -> dict[str, Any]:
        meta = revision["metadata"]
        return live_revision(revision, self.revisions.get(key_of(meta["namespace"], meta["name"])))

    async def forecast(self, namespace: str, service: str) -> dict[str, Any]:
        """A fresh plan for the service's newest routed revision, and why it runs as it does.
        A service that is not predictive gets the plan it would have, in observer terms."""
        revisions = [r["metadata"]["name"] for r in self._revisions_of(namespace, service)]
        routed = self.routes.routed(key_of(namespace, service))
        candidates = [r for r in revisions if r in routed] or revisions
        if not candidates:
            raise InvalidSpec("metadata.name", f"service {service!r} has no revisions")
        revision = candidates[-1]
        key = key_of(namespace, revision)
        planned = self.forecaster.revisions.get(key)
        spec = planned.spec if planned else self.revisions[key].decider  # the plan's metric
        settings = planned.settings if planned else PredictiveAnnotations(mode=REACTIVE)
        plan = await self.forecaster.build(namespace, service, spec, settings)
        if planned is not None:
            planned.plan, planned.planned_at = plan, time.time()
            planned.autoscaler.set_plan(plan)
        last = planned.autoscaler.last if planned else None
        view = plan_view(
            namespace, service, revision, settings, spec.scaling_metric, plan, last, self.history
        )
        if planned is not None:
            ready_s = self.forecaster.ready_s(namespace, service, settings)
            view["account"] = account_view(planned.autoscaler.ledger, spec, ready_s)
        else:
            view["reason"] = (
                "not predictive: set autoscaling.knative.dev/class: predictive.tidal.dev on the "
                "template to act on this plan"
            )
        return view

    def import_history(
        self,
        namespace: str,
        service: str,
        timestamps: list[float],
        values: list[float],
        field: str,
    ) -> ImportedHistory:
        if self.store.get("Service", namespace, service) is None:
            raise InvalidSpec("metadata.name", f"service {service!r} not found in {namespace}")
        imported = self.history.import_series(
            namespace,
            service,
            np.asarray(timestamps, float),
            np.asarray(values, float),
            field,
            now_epoch=time.time(),
        )
        for planned in self.forecaster.revisions.values():
            if (planned.namespace, planned.service) == (namespace, service):
                planned.plan = None  # rebuild with the new history at the next check
        return imported

    # -- other gateway processes (tidal.gateway.mirror) ----------------------------------------

    async def gateway_state(
        self, epoch: str = "", since: int = 0, wait_s: float = 0.0, gateway: str = ""
    ) -> dict[str, Any]:
        """The routing state changed since version `since` of `epoch` (all of it for another
        epoch), waiting up to `wait_s` for a change (tidal.gateway.feed)."""
        return await feed_of(self.router).delta(epoch, since, wait_s, gateway)

    def gateway_stats(self, gateway: str, revisions: dict[str, dict[str, Any]]) -> None:
        """One second of a gateway's stats: into the autoscaler and /metrics, and its in-flight
        requests per replica into the drain logic. Costs the revisions it reports (and those it
        reported last time), not all of them."""
        now = time.monotonic()
        reported = self._gateway_reported.setdefault(gateway, set())
        for key in reported - revisions.keys():
            throttler = self.router.throttlers.get(key)
            if throttler is not None:
                throttler.remote_in_flight.pop(gateway, None)
        reported.clear()
        for key, stats in revisions.items():
            throttler = self.router.throttlers.get(key)
            if throttler is None:
                continue
            reported.add(key)
            throttler.remote_seen = now
            throttler.remote_in_flight[gateway] = {
                str(k): int(v) for k, v in stats.get("inFlight", {}).items()
            }
            self.scaling.add_remote(
                key,
                gateway,
                float(stats["concurrency"]),
                float(stats["requests"]),
                float(stats["peak"]),
                [(float(rt), float(s)) for rt, s in stats.get("latencies", [])],
            )
            count_remote_answers(throttler, stats.get("codes", {}), stats.get("coldStarts", []))
            labels = (throttler.namespace, throttler.service, throttler.revision)
            for code, (total, *counts) in stats.get("latency", {}).items():
                add_reported_latency((*labels, str(code)), total, counts)

    def gateway_poke(self, key: str, unreachable: str | None = None) -> None:
        """A gateway's first request at zero for `key`, or a replica that refused it."""
        if unreachable is not None:
            self._on_unreachable(key, unreachable)
        else:
            self.scaling.poke(key)

    def pool_usage(self) -> list[dict[str, Any]]:
        return self.placer.pool_usage(self.workloads.values())

    def cost(self, start: float, end: float, now: float) -> list[dict[str, Any]]:
        return self.placer.cost(start, end, now)

    def replicas(self, namespace: str | None = None) -> list[dict[str, Any]]:
        def measured(workload: RevisionWorkload, replica_id: str) -> dict[str, Any]:
            key = key_of(workload.spec.namespace, workload.spec.revision)
            return resource_view(self.scaling.revisions.get(key), replica_id)

        return replica_views(self.workloads.values(), namespace, measured)

    async def logs(self, namespace: str, service: str, revision: str | None, tail: int) -> str:
        """The replica logs' last `tail` lines: from the log files this machine keeps, or (on
        Kubernetes, where the pods keep them) the running replicas' from the runtime."""
        if self.runtime.keeps_log_files:
            return self.log_tail(namespace, service, revision, tail)[1]
        replicas = self.running_replicas(namespace, service, revision)
        tails = await asyncio.gather(  # on Kubernetes a request each: off the event loop
            *(asyncio.to_thread(self.runtime.log_tail, r.spec, tail) for _, r in replicas)
        )
        return "\n".join(
            f"==> {name}/{replica.replica_id} <==\n" + "\n".join(lines)
            for (name, replica), lines in zip(replicas, tails, strict=True)
        )

    def running_replicas(
        self, namespace: str, service: str, revision: str | None
    ) -> list[tuple[str, Replica]]:
        """(revision name, replica) of each replica of the service (or of `revision` only)."""
        names = [revision] if revision else self._revision_names(namespace, service)
        return [
            (name, replica)
            for name in names
            if (workload := self.workloads.get(key_of(namespace, name))) is not None
            for replica in workload.replicas.values()
        ]

    def log_tail(
        self, namespace: str, service: str, revision: str | None, tail: int
    ) -> tuple[list[Path], str]:
        """The replica logs (the one written last at the end) and their last `tail` lines under
        headers that mark the stopped replicas."""
        files = log_files(self.log_dirs(namespace, service, revision))
        workloads = (
            self.workloads.get(key_of(namespace, r)) for r in {p.parent.name for p in files}
        )
        running = {rid for w in workloads if w is not None for rid in w.replicas}
        return files, read_logs(files, tail, running)

    def log_dirs(self, namespace: str, service: str, revision: str | None) -> list[Path]:
        """The log folders of the service's revisions (or of `revision` only)."""
        names = [revision] if revision else self._revision_names(namespace, service)
        return [self.data_dir / "logs" / namespace / name for name in names]

    def _revision_names(self, namespace: str, service: str) -> list[str]:
        return [r["metadata"]["name"] for r in self._revisions_of(namespace, service)]


def _failure(workload: RevisionWorkload) -> str:
    """A failed revision's reason and the first line of its message."""
    first_line = workload.failed_message.splitlines()[0] if workload.failed_message else ""
    return f"{workload.failed_reason}: {first_line}" if first_line else str(workload.failed_reason)


def _apply_result(current: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """kubectl's word for an apply: nothing stored yet, the same content (spec, or a Secret's
    data) and metadata, or not."""
    if current is None:
        return CREATED

    def content(doc: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in doc.items() if k not in ("metadata", "status")}

    same = content(current) == content(new) and all(
        current["metadata"].get(key, {}) == new["metadata"].get(key, {})
        for key in ("labels", "annotations")
    )
    return UNCHANGED if same else CONFIGURED


def _pinned_version(meta: dict[str, Any], current: dict[str, Any] | None) -> str | None:
    """The resourceVersion an apply is pinned to: the document's, if it was read from the object
    stored here. A document exported from another cluster (another uid), or of an object since
    deleted, carries a version that means nothing here, and is applied unpinned, as kubectl
    apply creates or patches it."""
    version = meta.get("resourceVersion")
    if version is None or current is None:
        return None
    uid = meta.get("uid")
    return None if uid is not None and uid != current["metadata"].get("uid") else version


def _strip_server_fields(doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    doc.pop("status", None)
    for server_field in SERVER_METADATA:
        doc["metadata"].pop(server_field, None)
    return doc


def _generation(revision: dict[str, Any]) -> int:
    return int(revision["metadata"]["labels"][GENERATION_LABEL])


def _age(revision: dict[str, Any], active: bool) -> RevisionAge:
    meta = revision["metadata"]
    created = _epoch(meta["creationTimestamp"])
    annotations = meta.get("annotations", {})
    modified = annotations.get(ROUTING_STATE_MODIFIED)
    last_active = created if modified is None else _epoch(modified)
    return RevisionAge(
        name=meta["name"],
        created=created,
        last_active=last_active,
        active=active or annotations.get(NO_GC) == "true",
    )


def _epoch(timestamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 time as Kubernetes writes it, or of the epoch
    seconds that earlier tidal versions wrote in routingStateModified."""
    try:
        return float(timestamp)
    except ValueError:
        return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
