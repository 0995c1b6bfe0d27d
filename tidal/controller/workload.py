"""One revision's replicas: start, readiness, drain, replacement and failure.

A `RevisionWorkload` turns "this revision should have N replicas" into runtime calls, keeps the
gateway's endpoints in step with replica readiness, and decides when a revision has failed:
- a replica of a revision that was never ready exits → Failed, reason `ExitCode<N>` with the last
  log lines (Knative marks the revision ContainerHealthy=False the same way);
- no replica becomes ready within the progress deadline → Failed, `ProgressDeadlineExceeded`;
- a replica of a revision that was ready exits → replaced, with back-off; after
  CRASH_LOOP_LIMIT failed starts in a row, waiting requests get a 503 with the reason.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter, Histogram

from tidal.api.service import Container
from tidal.gateway.activator import Endpoint, RevisionThrottler
from tidal.runtime.base import ProbeSpec, Replica, ReplicaSpec, ReplicaState, Runtime

CRASH_LOOP_LIMIT = 3
MAX_BACKOFF_S = 30.0
LOG_LINES_IN_REASON = 8

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
    ["namespace", "service", "revision"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)


@dataclass(frozen=True)
class RevisionRuntimeSpec:
    namespace: str
    service: str
    revision: str
    container: Container
    container_concurrency: int
    timeout_s: float
    progress_deadline_s: float
    log_dir: Path
    termination_grace_s: float

    def probe(self) -> ProbeSpec:
        """The readiness probe as queue-proxy would run it (knative.md §4)."""
        probe = self.container.readiness_probe
        if probe is None:
            return ProbeSpec()
        aggressive = probe.period_seconds == 0
        return ProbeSpec(
            kind="http" if probe.http_get is not None else "tcp",
            path=probe.http_get.path if probe.http_get is not None else "/",
            period_s=float(probe.period_seconds),
            timeout_s=float(probe.timeout_seconds or 1),
            failure_threshold=probe.failure_threshold or 3,
            success_threshold=1 if aggressive else probe.success_threshold,
        )


class RevisionWorkload:
    def __init__(
        self,
        spec: RevisionRuntimeSpec,
        runtime: Runtime,
        throttler: RevisionThrottler,
        on_status: Callable[[RevisionWorkload], None],
        on_replica_ready: Callable[[Replica], None] = lambda _: None,
        ever_ready: bool = False,
    ) -> None:
        self.spec = spec
        self.runtime = runtime
        self.throttler = throttler
        self.on_status = on_status
        self.on_replica_ready = on_replica_ready
        self.replicas: dict[str, Replica] = {}
        self.desired = 0
        self.ever_ready = ever_ready
        self.failed_reason: str | None = None
        self.failed_message = ""
        self.crash_streak = 0
        self.started_waiting: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping: set[str] = set()
        self._closed = False
        self._labels = (spec.namespace, spec.service, spec.revision)

    # -- observed state -----------------------------------------------------------------------

    def ready_count(self) -> int:
        return sum(
            1
            for r in self.replicas.values()
            if r.state is ReplicaState.READY and r.replica_id not in self._stopping
        )

    def live(self) -> list[Replica]:
        """Replicas that count towards the desired number (not being stopped, not dead)."""
        return [
            r
            for r in self.replicas.values()
            if r.replica_id not in self._stopping
            and r.state in (ReplicaState.STARTING, ReplicaState.READY, ReplicaState.NOT_READY)
        ]

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
        return {
            "conditions": [condition],
            "desiredReplicas": self.desired,
            "actualReplicas": self.ready_count(),
        }

    # -- scaling ------------------------------------------------------------------------------

    def scale_to(self, count: int) -> None:
        """Start or drain replicas until `count` are live. Scale-in picks not-ready replicas
        first, then the least busy."""
        if self._closed:
            return
        changed = count != self.desired
        self.desired = count
        live = self.live()
        if count > len(live) and self.failed_reason is None:
            for _ in range(count - len(live)):
                self._spawn(self._start_replica())
        elif count < len(live):
            victims = sorted(
                live,
                key=lambda r: (
                    r.state is ReplicaState.READY,
                    self.throttler.in_flight_of(r.replica_id),
                ),
            )
            for replica in victims[: len(live) - count]:
                self._spawn(self._drain_and_stop(replica))
        if changed:
            self.on_status(self)

    async def _start_replica(self) -> None:
        replica_id = f"{self.spec.revision}-{secrets.token_hex(3)}"
        container = self.spec.container
        env = {e.name: e.value for e in container.env}
        env.update(
            K_SERVICE=self.spec.service,
            K_CONFIGURATION=self.spec.service,
            K_REVISION=self.spec.revision,
        )
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
        )
        if self.started_waiting is None:
            self.started_waiting = time.monotonic()
        replica = await self.runtime.start(replica_spec, self._on_change)
        self.replicas[replica_id] = replica
        self._spawn(self._watch_progress(replica))

    async def _drain_and_stop(self, replica: Replica) -> None:
        """No new requests; let in-flight ones finish (bounded by the revision timeout); stop."""
        self._stopping.add(replica.replica_id)
        self.throttler.drain(replica.replica_id)
        deadline = time.monotonic() + self.spec.timeout_s
        while self.throttler.in_flight_of(replica.replica_id) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.throttler.remove_endpoint(replica.replica_id)
        await self.runtime.stop(replica, self.spec.termination_grace_s)
        self.replicas.pop(replica.replica_id, None)
        self._stopping.discard(replica.replica_id)
        self.on_status(self)

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
            self._restart_later(replica, "ProgressDeadlineExceeded")

    # -- runtime events -----------------------------------------------------------------------

    def _on_change(self, replica: Replica) -> None:
        if replica.replica_id not in self.replicas:
            self.replicas[replica.replica_id] = replica
        if replica.state is ReplicaState.READY:
            self._became_ready(replica)
        elif replica.state is ReplicaState.NOT_READY:
            self.throttler.remove_endpoint(replica.replica_id)
            self.on_status(self)
        elif replica.state is ReplicaState.FAILED:
            self._exited(replica)

    def _became_ready(self, replica: Replica) -> None:
        if replica.replica_id in self._stopping:
            return
        self.crash_streak = 0
        first = not self.ever_ready
        self.ever_ready = True
        self.failed_reason = None
        if replica.startup_seconds is not None:
            REPLICA_STARTUP_SECONDS.labels(*self._labels).observe(replica.startup_seconds)
            self.on_replica_ready(replica)
        cold = self.throttler.add_endpoint(Endpoint(replica.replica_id, replica.host, replica.port))
        if cold is not None:
            COLD_STARTS.labels(*self._labels).inc()
            COLD_START_SECONDS.labels(*self._labels).observe(cold)
        self.started_waiting = None
        if first or self.ready_count() == 1:
            self.on_status(self)

    def _exited(self, replica: Replica) -> None:
        self.throttler.remove_endpoint(replica.replica_id)
        self.replicas.pop(replica.replica_id, None)
        if self._closed or replica.replica_id in self._stopping:
            return
        code = replica.exit_code
        reason = f"ExitCode{code}" if code is not None else "StartFailed"
        if not self.ever_ready:
            self._fail(reason, replica.reason or f"exited with code {code}", replica)
            return
        self._restart_later(replica, reason)

    def _restart_later(self, replica: Replica, reason: str) -> None:
        """Replace a replica of a revision that was ready before, backing off while new
        replicas keep failing to become ready."""
        if not replica.ever_ready:
            self.crash_streak += 1
        if self.crash_streak >= CRASH_LOOP_LIMIT:
            tail = self._log_tail(replica)
            self.throttler.fail(
                f"revision {self.spec.revision}: {self.crash_streak} replicas in a row failed "
                f"before ready ({reason}); last log lines:\n{tail}"
            )
        backoff = min(MAX_BACKOFF_S, 0.5 * 2 ** max(0, self.crash_streak - 1))
        self._spawn(self._replace_after(backoff))

    def replace(self, replica_id: str) -> None:
        """The gateway could not connect to this replica: stop it and start another."""
        replica = self.replicas.get(replica_id)
        if replica is not None and replica_id not in self._stopping:
            self._spawn(self._drain_and_stop(replica))
            self._spawn(self._replace_after(0.0))

    async def _replace_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self._closed and len(self.live()) < self.desired:
            await self._start_replica()

    def _fail(self, reason: str, message: str, replica: Replica) -> None:
        tail = self._log_tail(replica)
        self.failed_reason = reason
        self.failed_message = f"{message}; last log lines:\n{tail}" if tail else message
        self.throttler.fail(
            f"revision {self.spec.revision} failed: {reason}: {self.failed_message}"
        )
        self.on_status(self)

    def _log_tail(self, replica: Replica) -> str:
        return "\n".join(self.runtime.log_tail(replica.spec, LOG_LINES_IN_REASON))

    # -- lifecycle ----------------------------------------------------------------------------

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Drain and stop every replica (service deleted, revision collected, platform stop)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(
            *(self._drain_and_stop(r) for r in list(self.replicas.values())),
            return_exceptions=True,
        )
