"""One revision's replicas: start, readiness, drain, replacement and failure.

A `RevisionWorkload` carries out the scheduler's decisions for one revision (start this many
replicas on these pools, stop these), keeps the gateway's endpoints in step with replica readiness,
and decides when a revision has failed:
- a replica of a revision that was never ready exits → Failed, reason `ExitCode<N>` (or
  `StartupProbeFailed`, `LivenessProbeFailed` when killed for failing one,
  `CreateContainerConfigError` when a Secret or ConfigMap it needs is gone) with the last log
  lines (Knative marks the revision ContainerHealthy=False the same way);
- no replica becomes ready within the progress deadline → Failed, `ProgressDeadlineExceeded`;
- a replica of a revision that was ready exits → replaced, with back-off; after
  CRASH_LOOP_LIMIT failed starts in a row, waiting requests get a 503 with the reason.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import Counter, Histogram

from tidal.api.pools import Pool
from tidal.api.resource_policy import ResourcePolicy
from tidal.api.service import (
    USER_CONTAINER,
    Container,
    LocalObjectReference,
    Probe,
    Volume,
)
from tidal.api.units import parse_quantity
from tidal.controller.clock import Clock, MonotonicClock
from tidal.controller.environment import UnresolvedReference
from tidal.controller.volumes import mount_specs
from tidal.gateway.activator import Endpoint, RevisionThrottler
from tidal.gateway.routing import REQUESTS
from tidal.runtime.base import (
    ContainerSpec,
    ImageSpec,
    ProbeSpec,
    RegistryAuth,
    Replica,
    ReplicaSpec,
    ReplicaState,
    Runtime,
    SecurityContext,
    VolumeSpec,
)
from tidal.scheduler.placement import Decision, Demand, Pending, Placed, Request

STANDBY_LABEL = "tidal.dev/standby"
CRASH_LOOP_LIMIT = 3
# With other gateway processes about, wait for them to see a drain (their poll) and to report
# what they still have in flight (their stats) before trusting the in-flight count.
REMOTE_DRAIN_SETTLE_S = 1.5
REMOTE_RECENT_S = 10.0
MAX_BACKOFF_S = 30.0
LOG_LINES_IN_REASON = 8
LIVE_STATES = (ReplicaState.STARTING, ReplicaState.READY, ReplicaState.NOT_READY)

COLD_STARTS = Counter(
    "tidal_cold_starts",
    "Requests that found no ready replica and waited for one",
    ["namespace", "service", "revision"],
)
COLD_START_SECONDS = Histogram(
    "tidal_cold_start_duration_seconds",
    "From the first request held at zero ready replicas to the first replica ready",
    ["namespace", "service", "revision"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
REPLICA_STARTUP_SECONDS = Histogram(
    "tidal_replica_startup_seconds",
    "From replica start to ready (the revision's Ready Time)",
    ["namespace", "service", "revision", "pool"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)


class Lifecycle(enum.StrEnum):
    """A revision's lifecycle, as its workload sees it."""

    DEPLOYING = "Deploying"  # no replica has been ready yet
    READY = "Ready"  # a replica has been ready; lost replicas are replaced at once
    BACKING_OFF = "BackingOff"  # replacements wait (`next_start_at`) after failed starts
    FAILED = "Failed"  # never ready and gave up: starts nothing until a replica turns ready
    CLOSED = "Closed"  # collected, deleted or shutting down: starts nothing, ever


# Every allowed move; `RevisionWorkload._enter` refuses any other.
TRANSITIONS: dict[Lifecycle, frozenset[Lifecycle]] = {
    Lifecycle.DEPLOYING: frozenset({Lifecycle.READY, Lifecycle.FAILED, Lifecycle.CLOSED}),
    Lifecycle.READY: frozenset({Lifecycle.BACKING_OFF, Lifecycle.CLOSED}),
    Lifecycle.BACKING_OFF: frozenset({Lifecycle.READY, Lifecycle.BACKING_OFF, Lifecycle.CLOSED}),
    Lifecycle.FAILED: frozenset({Lifecycle.READY, Lifecycle.FAILED, Lifecycle.CLOSED}),
    Lifecycle.CLOSED: frozenset(),
}


class WorkloadEvents(Protocol):
    """What the platform hears from a workload."""

    def status_changed(self, workload: RevisionWorkload) -> None: ...

    def needs_placement(self, workload: RevisionWorkload) -> None: ...

    def replica_started(
        self, workload: RevisionWorkload, replica_id: str, pool: str, gpus: int
    ) -> None: ...

    def replica_ready(self, workload: RevisionWorkload, replica: Replica) -> None: ...

    def replica_not_ready(self, workload: RevisionWorkload, replica: Replica) -> None:
        """A replica that was ready is not: its probe fails, or one of its containers is down."""
        ...

    def replica_stopping(self, workload: RevisionWorkload, replica: Replica) -> None:
        """A replica is being drained and stopped (scale-in, a delete, a replacement)."""
        ...

    def replica_gone(self, workload: RevisionWorkload, replica_id: str) -> None: ...

    def replica_exited(self, workload: RevisionWorkload, replica: Replica) -> None:
        """A replica ended on its own (a crash, a failed liveness probe, a failed start)."""
        ...

    def resolve_env(self, namespace: str, container: Container) -> dict[str, str]:
        """The container's environment, its Secret and ConfigMap references filled in; raises
        UnresolvedReference (tidal.controller.environment)."""
        ...

    def resolve_volumes(self, namespace: str, volumes: Sequence[Volume]) -> tuple[VolumeSpec, ...]:
        """The volumes with their Secret and ConfigMap files; raises UnresolvedReference."""
        ...

    def registry_auth(
        self, namespace: str, secrets: Sequence[LocalObjectReference], account: str | None
    ) -> RegistryAuth:
        """The credentials the imagePullSecrets (or else the service account's) hold, for
        pulling the images."""
        ...


@dataclass(frozen=True)
class OtherContainer:
    """A container of the revision other than the serving one (a sidecar or an init
    container), and the image it runs."""

    name: str
    container: Container
    image: ImageSpec


@dataclass(frozen=True)
class RevisionRuntimeSpec:
    namespace: str
    service: str
    revision: str
    container: Container  # the serving container
    container_concurrency: int
    timeout_s: float
    progress_deadline_s: float
    log_dir: Path
    termination_grace_s: float
    labels: Mapping[str, str] = field(default_factory=dict)
    standby_pool: str | None = None  # keep one replica here instead of none (warm standby)
    image: ImageSpec | None = None  # set: replicas run this image in a container engine
    volumes: tuple[Volume, ...] = ()  # the revision's, mounted by its containers' volumeMounts
    image_pull_secrets: tuple[LocalObjectReference, ...] = ()
    service_account: str | None = None  # its imagePullSecrets serve where the revision has none
    sidecars: tuple[OtherContainer, ...] = ()
    init_containers: tuple[OtherContainer, ...] = ()  # run in turn before the containers
    container_name: str = USER_CONTAINER  # the serving container's, defaulted as Knative does

    def probe(self) -> ProbeSpec:
        """The readiness probe as queue-proxy would run it (docs/autoscaling.md#readiness-probe)."""
        probe = self.container.readiness_probe
        if probe is None:
            return ProbeSpec()
        aggressive = probe.period_seconds == 0
        return ProbeSpec(
            **_action(probe),
            period_s=float(probe.period_seconds),
            timeout_s=float(probe.timeout_seconds or 1),
            failure_threshold=probe.failure_threshold or 3,
            success_threshold=1 if aggressive else probe.success_threshold,
        )

    def liveness(self) -> ProbeSpec | None:
        """The liveness probe with the kubelet's defaults (docs/reliability.md#liveness-probes)."""
        return _kubelet_probe(self.container.liveness_probe)

    def startup(self) -> ProbeSpec | None:
        """The startup probe with the kubelet's defaults: readiness and liveness wait for it
        to pass once; failing it `failure_threshold` times kills the replica."""
        return _kubelet_probe(self.container.startup_probe)

    def demand(self) -> Demand:
        """What one replica takes from its pool, as the Kubernetes scheduler counts a pod: the
        sum of its containers' requests, or an init container's where that is more (each runs
        alone, before them)."""
        containers = [self.container, *(sidecar.container for sidecar in self.sidecars)]
        init = [other.container for other in self.init_containers]

        def most(amount: Callable[[Container], float]) -> float:
            return max([sum(map(amount, containers)), *map(amount, init)])

        return Demand(
            cpu=most(lambda c: parse_quantity(c.resources.requests.get("cpu", 0))),
            memory=most(lambda c: parse_quantity(c.resources.requests.get("memory", 0))),
            gpus=int(most(lambda c: c.gpus())),
        )


def _kubelet_probe(probe: Probe | None) -> ProbeSpec | None:
    """A probe the kubelet would run (liveness, startup), with its defaults."""
    if probe is None:
        return None
    return ProbeSpec(
        **_action(probe),
        period_s=float(probe.period_seconds or 10),
        timeout_s=float(probe.timeout_seconds or 1),
        failure_threshold=probe.failure_threshold or 3,
        initial_delay_s=float(probe.initial_delay_seconds),
    )


def _action(probe: Probe) -> dict[str, Any]:
    """What a probe does, as ProbeSpec fields: kind, and the HTTP path, gRPC service or
    command."""
    if probe.http_get is not None:
        return {"kind": "http", "path": probe.http_get.path}
    if probe.grpc is not None:
        return {"kind": "grpc", "path": probe.grpc.service or ""}
    if probe.exec is not None:
        return {"kind": "exec", "command": tuple(probe.exec.command)}
    return {"kind": "tcp"}


@dataclass
class Provisioning:
    """A replica placed on a pool and waiting for the pool's start-up delay."""

    pool: str
    devices: tuple[str, ...]
    labels: Mapping[str, str]
    since: float
    task: asyncio.Task[None] | None = None
    launched: bool = False  # the runtime is starting it: too late to cancel, stop instead
    cancelled: bool = False


class RevisionWorkload:
    def __init__(
        self,
        spec: RevisionRuntimeSpec,
        runtime: Runtime,
        throttler: RevisionThrottler,
        events: WorkloadEvents,
        ever_ready: bool = False,
        failure: tuple[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`ever_ready` and `failure` (reason, message) restore a stored revision's state."""
        self.spec = spec
        self.runtime = runtime
        self.throttler = throttler
        self.events = events
        self.demand = spec.demand()
        self.replicas: dict[str, Replica] = {}
        self.provisioning: dict[str, Provisioning] = {}
        self.replica_labels: dict[str, Mapping[str, str]] = {}
        self.pending: tuple[Pending, ...] = ()
        self.desired = 0
        self.ahead = 0  # of `desired`, held ahead of demand (tidal/scheduler/placement.py)
        self.routed = True
        self.clock: Clock = clock or MonotonicClock()
        self.state = (
            Lifecycle.FAILED
            if failure is not None
            else Lifecycle.READY
            if ever_ready
            else Lifecycle.DEPLOYING
        )
        self.ever_ready = ever_ready  # a fact once true, whatever state follows
        self.failure = failure  # (reason, message) while FAILED
        self.crash_streak = 0  # replicas in a row that failed before ready
        self.next_start_at = 0.0  # BACKING_OFF: no replica starts before this
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping: set[str] = set()
        self._were_ready: set[str] = set()  # replicas whose Ready Time is counted already

    # -- lifecycle ------------------------------------------------------------------------------

    def _enter(
        self,
        state: Lifecycle,
        failure: tuple[str, str] | None = None,
        next_start_at: float = 0.0,
    ) -> None:
        """The one place the lifecycle moves (see TRANSITIONS)."""
        if state not in TRANSITIONS[self.state]:
            raise RuntimeError(f"revision {self.spec.revision}: no move {self.state} -> {state}")
        if state is Lifecycle.READY:
            self.ever_ready = True
            self.failure = None
            self.crash_streak = 0
        elif state is Lifecycle.FAILED:
            self.failure = failure
        elif state is Lifecycle.BACKING_OFF:
            self.next_start_at = next_start_at
        self.state = state

    @property
    def failed_reason(self) -> str | None:
        return self.failure[0] if self.failure is not None else None

    @property
    def failed_message(self) -> str:
        return self.failure[1] if self.failure is not None else ""

    def may_start(self, now: float) -> bool:
        """Whether new replicas may start now (a failed, backing-off or closed one sheds only)."""
        if self.state is Lifecycle.BACKING_OFF and now >= self.next_start_at:
            return True
        return self.state in (Lifecycle.DEPLOYING, Lifecycle.READY)

    # -- observed state -----------------------------------------------------------------------

    def ready_count(self) -> int:
        return sum(
            1
            for r in self.replicas.values()
            if r.state is ReplicaState.READY and r.replica_id not in self._stopping
        )

    def is_stopping(self, replica_id: str) -> bool:
        return replica_id in self._stopping

    def is_standby(self, replica_id: str) -> bool:
        return self.replica_labels.get(replica_id, {}).get(STANDBY_LABEL) == "true"

    def standby_ids(self) -> list[str]:
        """The warm-standby replicas that are not already on their way out."""
        return [
            rid
            for rid in [*self.replicas, *self.provisioning]
            if self.is_standby(rid) and rid not in self._stopping
        ]

    def serving_ready_count(self) -> int:
        """Ready replicas other than the warm standby."""
        return sum(
            1
            for r in self.replicas.values()
            if r.state is ReplicaState.READY
            and r.replica_id not in self._stopping
            and not self.is_standby(r.replica_id)
        )

    def live_count(self) -> int:
        """Replicas that count towards the desired number: provisioning, starting or running
        (the warm standby is extra)."""
        running = sum(
            1
            for r in self.replicas.values()
            if r.replica_id not in self._stopping
            and r.state in LIVE_STATES
            and not self.is_standby(r.replica_id)
        )
        return running + sum(1 for rid in self.provisioning if not self.is_standby(rid))

    def status_dict(self) -> dict[str, object]:
        if self.failed_reason is not None:
            condition = {
                "type": "Ready",
                "status": "False",
                "reason": self.failed_reason,
                "message": self.failed_message,
            }
        elif self.ever_ready:
            condition = {"type": "Ready", "status": "True"}
        else:
            condition = {"type": "Ready", "status": "Unknown", "reason": "Deploying"}
        # A failed revision starts no replica, whatever its autoscaler wants (see `request`).
        failed = self.failed_reason is not None
        status: dict[str, object] = {
            "conditions": [condition],
            "desiredReplicas": min(self.desired, self.live_count()) if failed else self.desired,
            "actualReplicas": self.ready_count(),
        }
        if self.pending:
            status["pendingReplicas"] = [p.reason for p in self.pending]
        return status

    # -- placement ----------------------------------------------------------------------------

    def set_desired(self, count: int) -> None:
        if count != self.desired:
            self.desired = count
            self.events.status_changed(self)
            self.events.needs_placement(self)

    def set_ahead(self, count: int) -> None:
        """How many of the desired replicas the autoscaler holds ahead of demand: they are
        placed after every revision's needed ones, and stopped for requests that wait."""
        if count != self.ahead:
            self.ahead = count
            self.events.needs_placement(self)

    def placed(self) -> list[tuple[Placed, Demand]]:
        """Every replica that holds resources in a pool, stopping ones included."""
        items = [
            (Placed(rid, p.pool, p.since, p.devices, ready=False, labels=p.labels), self.demand)
            for rid, p in self.provisioning.items()
        ]
        for replica in self.replicas.values():
            spec = replica.spec
            items.append(
                (
                    Placed(
                        replica.replica_id,
                        spec.pool,
                        replica.started_at,
                        spec.devices,
                        ready=replica.state is ReplicaState.READY,
                        terminating=replica.replica_id in self._stopping,
                        labels=self.replica_labels.get(replica.replica_id, {}),
                    ),
                    self.demand,
                )
            )
        return items

    def request(self, now: float, policy: ResourcePolicy | None, others: list[Placed]) -> Request:
        """What the scheduler should place for this revision now. A failed revision, or one
        backing off after crashes, may shed replicas but start none."""
        desired = self.desired
        if not self.may_start(now):
            desired = min(desired, self.live_count())
        return Request(
            revision=f"{self.spec.namespace}/{self.spec.revision}",
            desired=desired,
            demand=self.demand,
            replicas=[p for p, _ in self.placed() if not self.is_standby(p.replica_id)],
            labels=self.spec.labels,
            policy=policy,
            others=others,
            pending_since=[p.since for p in self.pending],
            ahead=min(self.ahead, desired),
        )

    def apply(self, decision: Decision, pools: Mapping[str, Pool]) -> None:
        for start in decision.start:
            self._start(pools[start.pool], start.devices, {**self.spec.labels, **start.labels})
        for replica_id in decision.stop:
            self._stop(replica_id)
        if decision.pending != self.pending:
            changed = [p.reason for p in decision.pending] != [p.reason for p in self.pending]
            self.pending = decision.pending
            if changed:
                self.events.status_changed(self)

    def wants_standby(self) -> bool:
        """At zero, routed and healthy: keep one warm replica on the standby pool."""
        return (
            self.spec.standby_pool is not None
            and self.desired == 0
            and self.routed
            and self.ever_ready
            and self.state in (Lifecycle.READY, Lifecycle.BACKING_OFF)
        )

    def start_standby(self, pool: Pool, devices: tuple[str, ...]) -> None:
        self._start(pool, devices, {**self.spec.labels, STANDBY_LABEL: "true"})

    def stop(self, replica_id: str) -> None:
        self._stop(replica_id)

    def refresh_volumes(self, volumes: tuple[VolumeSpec, ...]) -> None:
        """Running replicas get these files in their Secret and ConfigMap volumes."""
        for replica in self.replicas.values():
            self.runtime.refresh_volumes(replica, volumes)

    def _start(self, pool: Pool, devices: tuple[str, ...], labels: Mapping[str, str]) -> None:
        replica_id = f"{self.spec.revision}-{secrets.token_hex(3)}"
        entry = Provisioning(pool.name, devices, labels, self.clock.now())
        self.provisioning[replica_id] = entry
        self.replica_labels[replica_id] = labels
        self.events.replica_started(self, replica_id, pool.name, len(devices))
        entry.task = self._spawn(self._launch(replica_id, pool, entry))

    async def _launch(self, replica_id: str, pool: Pool, entry: Provisioning) -> None:
        if pool.startup_delay_s > 0:  # elastic capacity being provisioned
            await asyncio.sleep(pool.startup_delay_s)
        container = self.spec.container
        knative_env = {
            "K_SERVICE": self.spec.service,
            "K_CONFIGURATION": self.spec.service,
            "K_REVISION": self.spec.revision,
        }
        try:
            env = self.events.resolve_env(self.spec.namespace, container)
            volumes = self.events.resolve_volumes(self.spec.namespace, self.spec.volumes)
            sidecars = tuple(self._other(other, knative_env) for other in self.spec.sidecars)
            init = tuple(self._other(other, knative_env) for other in self.spec.init_containers)
        except UnresolvedReference as exc:
            env, volumes, sidecars, init, unresolved = {}, (), (), (), str(exc)
        else:
            unresolved = ""
        env.update(knative_env)
        if not entry.devices:
            env.setdefault("CUDA_VISIBLE_DEVICES", "")  # no GPU unless one was assigned
        replica_spec = ReplicaSpec(
            replica_id=replica_id,
            namespace=self.spec.namespace,
            service=self.spec.service,
            revision=self.spec.revision,
            command=tuple(container.command + container.args),
            env=env,
            working_dir=container.working_dir,
            probe=self.spec.probe(),
            log_path=self.spec.log_dir / f"{replica_id}.log",
            pool=pool.name,
            devices=entry.devices,
            labels=entry.labels,
            security=_security(container),
            image=self.spec.image,
            liveness=self.spec.liveness(),
            startup=self.spec.startup(),
            termination_grace_s=self.spec.termination_grace_s,
            volumes=volumes,
            mounts=mount_specs(container.volume_mounts),
            registry_auth=(
                self.events.registry_auth(
                    self.spec.namespace, self.spec.image_pull_secrets, self.spec.service_account
                )
                if self.spec.image is not None
                and (self.spec.image_pull_secrets or self.spec.service_account)
                else RegistryAuth()
            ),
            sidecars=sidecars,
            init_containers=init,
        )
        entry.launched = True
        if unresolved:  # as the kubelet: the container is not created
            reason = "CreateContainerConfigError"
            failed = Replica(replica_spec, state=ReplicaState.FAILED, reason=unresolved)
            failed.reason_code = reason
            self._on_change(failed)
            return
        replica = await self.runtime.start(replica_spec, self._on_change)
        if self.provisioning.pop(replica_id, None) is None:
            return  # it failed to start; _exited has dealt with it
        self.replicas[replica_id] = replica
        if entry.cancelled:
            self._spawn(self._drain_and_stop(replica))
        else:
            self._spawn(self._watch_progress(replica))

    def _other(self, other: OtherContainer, knative_env: Mapping[str, str]) -> ContainerSpec:
        """A sidecar's or init container's settings, its references filled in (raises
        UnresolvedReference)."""
        container = other.container
        return ContainerSpec(
            name=other.name,
            image=other.image,
            env={**self.events.resolve_env(self.spec.namespace, container), **knative_env},
            working_dir=container.working_dir,
            security=_security(container),
            mounts=mount_specs(container.volume_mounts),
        )

    def _stop(self, replica_id: str) -> None:
        entry = self.provisioning.get(replica_id)
        if entry is not None:
            if entry.launched:
                entry.cancelled = True
            else:
                del self.provisioning[replica_id]
                if entry.task is not None:
                    entry.task.cancel()
                self._gone(replica_id)
            return
        replica = self.replicas.get(replica_id)
        if replica is not None and replica_id not in self._stopping:
            self._spawn(self._drain_and_stop(replica))

    async def _drain_and_stop(self, replica: Replica) -> None:
        """No new requests; let in-flight ones finish (bounded by the revision timeout); stop."""
        self._stopping.add(replica.replica_id)
        self.events.replica_stopping(self, replica)
        self.throttler.drain(replica.replica_id)
        if self.clock.now() - self.throttler.remote_seen < REMOTE_RECENT_S:
            await asyncio.sleep(REMOTE_DRAIN_SETTLE_S)
        deadline = self.clock.now() + self.spec.timeout_s
        while self.throttler.in_flight_of(replica.replica_id) and self.clock.now() < deadline:
            await asyncio.sleep(0.05)
        self.throttler.remove_endpoint(replica.replica_id)
        await self.runtime.stop(replica, self.spec.termination_grace_s)
        self._stopping.discard(replica.replica_id)
        self.replicas.pop(replica.replica_id, None)
        self._gone(replica.replica_id)
        self.events.status_changed(self)

    def _gone(self, replica_id: str) -> None:
        """The replica no longer holds pool resources (called once per replica)."""
        self.replica_labels.pop(replica_id, None)
        self._were_ready.discard(replica_id)
        self.events.replica_gone(self, replica_id)

    async def _watch_progress(self, replica: Replica) -> None:
        """Knative's progress deadline: a replica that is not ready in time is given up."""
        await asyncio.sleep(self.spec.progress_deadline_s)
        if replica.state is not ReplicaState.STARTING or replica.replica_id in self._stopping:
            return
        self._spawn(self._drain_and_stop(replica))
        if not self.ever_ready:
            self._fail(
                "ProgressDeadlineExceeded",
                f"no replica became ready within {self.spec.progress_deadline_s:g}s",
                replica,
            )
        else:
            self._back_off(replica, "ProgressDeadlineExceeded")

    # -- runtime events -----------------------------------------------------------------------

    def _on_change(self, replica: Replica) -> None:
        if replica.state is ReplicaState.READY:
            self._became_ready(replica)
        elif replica.state is ReplicaState.NOT_READY:
            self.throttler.remove_endpoint(replica.replica_id)
            self.events.replica_not_ready(self, replica)
            self.events.status_changed(self)
        elif replica.state is ReplicaState.FAILED:
            self._exited(replica)

    def _became_ready(self, replica: Replica) -> None:
        if replica.replica_id in self._stopping:
            return
        first = not self.ever_ready
        if self.state not in (Lifecycle.READY, Lifecycle.CLOSED):
            self._enter(Lifecycle.READY)
        self.crash_streak = 0
        labels = (self.spec.namespace, self.spec.service, self.spec.revision)
        if replica.startup_seconds is not None and replica.replica_id not in self._were_ready:
            # Once per replica: ready again after NotReady (a probe, a sidecar restarted in
            # place) is no new start-up.
            self._were_ready.add(replica.replica_id)
            REPLICA_STARTUP_SECONDS.labels(*labels, replica.spec.pool).observe(
                replica.startup_seconds
            )
            self.events.replica_ready(self, replica)
        cold = self.throttler.add_endpoint(Endpoint(replica.replica_id, replica.host, replica.port))
        if cold is not None:
            COLD_STARTS.labels(*labels).inc()
            COLD_START_SECONDS.labels(*labels).observe(cold)
        if first or self.ready_count() == 1:
            self.events.status_changed(self)

    def _exited(self, replica: Replica) -> None:
        """A replica ended on its own (crash, exit, failed spawn)."""
        self.throttler.remove_endpoint(replica.replica_id)
        if replica.replica_id in self._stopping:
            return  # _drain_and_stop finishes the bookkeeping
        self.replicas.pop(replica.replica_id, None)
        self.provisioning.pop(replica.replica_id, None)  # failed while being started
        self._gone(replica.replica_id)
        if self.state is Lifecycle.CLOSED:
            return
        self.events.replica_exited(self, replica)
        code = replica.exit_code
        reason = replica.reason_code or (f"ExitCode{code}" if code is not None else "StartFailed")
        if not self.ever_ready:
            self._fail(reason, replica.reason or f"exited with code {code}", replica)
            return
        self._back_off(replica, reason)

    def replace(self, replica_id: str) -> None:
        """The gateway could not connect to this replica: stop it; the scheduler replaces it."""
        self._stop(replica_id)
        self.events.needs_placement(self)

    def _back_off(self, replica: Replica, reason: str) -> None:
        """Delay the replacement of a replica of a revision that was ready before, longer while
        new replicas keep failing to become ready."""
        if not replica.ever_ready:
            self.crash_streak += 1
        if self.crash_streak >= CRASH_LOOP_LIMIT:
            tail = self._log_tail(replica)
            self.throttler.fail(
                f"revision {self.spec.revision}: {self.crash_streak} replicas in a row failed "
                f"before ready ({reason}); last log lines:\n{tail}"
            )
        backoff = min(MAX_BACKOFF_S, 0.5 * 2 ** max(0, self.crash_streak - 1))
        if self.state is not Lifecycle.CLOSED:
            self._enter(Lifecycle.BACKING_OFF, next_start_at=self.clock.now() + backoff)
        asyncio.get_running_loop().call_later(backoff, self.events.needs_placement, self)

    def _fail(self, reason: str, message: str, replica: Replica) -> None:
        tail = self._log_tail(replica)
        if self.state not in (Lifecycle.DEPLOYING, Lifecycle.FAILED):
            return  # closed meanwhile
        detail = f"{message}; last log lines:\n{tail}" if tail else message
        self._enter(Lifecycle.FAILED, failure=(reason, detail))
        self.throttler.fail(
            f"revision {self.spec.revision} failed: {reason}: {self.failed_message}"
        )
        self.events.status_changed(self)

    def _log_tail(self, replica: Replica) -> str:
        return "\n".join(self.runtime.log_tail(replica.spec, LOG_LINES_IN_REASON))

    # -- lifecycle ----------------------------------------------------------------------------

    def _spawn(self, coro: object) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Drain and stop every replica (service deleted, revision collected, platform stop)."""
        if self.state is not Lifecycle.CLOSED:
            self._enter(Lifecycle.CLOSED)
        for replica_id in list(self.provisioning):
            self._stop(replica_id)
        await asyncio.gather(
            *(
                self._drain_and_stop(r)
                for r in list(self.replicas.values())
                if r.replica_id not in self._stopping
            ),
            return_exceptions=True,
        )


def _security(container: Container) -> SecurityContext:
    sc = container.security_context
    if sc is None:
        return SecurityContext()
    capabilities = sc.capabilities
    return SecurityContext(
        run_as_user=sc.run_as_user,
        run_as_group=sc.run_as_group,
        run_as_non_root=bool(sc.run_as_non_root),
        allow_privilege_escalation=sc.allow_privilege_escalation is not False,
        drop_capabilities=tuple(capabilities.drop) if capabilities else (),
        add_capabilities=tuple(capabilities.add) if capabilities else (),
        read_only_root_filesystem=bool(sc.read_only_root_filesystem),
        seccomp_unconfined=sc.seccomp_profile is not None
        and sc.seccomp_profile.type == "Unconfined",
    )


def count_remote_answers(
    throttler: RevisionThrottler, codes: dict[str, int], cold_starts: list[float]
) -> None:
    """Add what another gateway process answered for this revision, and the cold starts it
    held requests through, to this process's metrics, so /metrics counts every gateway."""
    labels = (throttler.namespace, throttler.service, throttler.revision)
    for code, count in codes.items():
        REQUESTS.labels(*labels, str(code)).inc(int(count))
    for seconds in cold_starts:
        COLD_STARTS.labels(*labels).inc()
        COLD_START_SECONDS.labels(*labels).observe(float(seconds))
