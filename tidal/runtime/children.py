"""Stopping a runtime's child replicas: each child is stopped once, however many callers ask
(a scale-in, a replace, `close()` and a failed liveness probe can race), and every caller waits
for that one stop."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from tidal.runtime.base import ExecProbe, Replica, ReplicaListener, ReplicaState, notify
from tidal.runtime.probe import report_readiness, watch_liveness


class StoppableChild(Protocol):
    replica: Replica
    on_change: ReplicaListener
    probe_task: asyncio.Task[None] | None
    liveness_task: asyncio.Task[None] | None
    stop_task: asyncio.Task[None] | None
    stopping: bool
    killed_for: str  # why the runtime killed it itself, if it did


class ChildStopping:
    """Mixin for runtimes that keep their replicas in `_children` by replica id and end one with
    `_terminate(child, grace_s)`."""

    _children: dict[str, Any]
    close_grace_s: float

    async def _terminate(self, child: Any, grace_s: float) -> None:
        raise NotImplementedError

    async def stop(self, replica: Replica, grace_s: float) -> None:
        child: StoppableChild | None = self._children.get(replica.replica_id)
        if child is None:
            return  # never started, or already exited
        if child.stop_task is None:
            child.stopping = True
            child.stop_task = asyncio.ensure_future(self._terminate(child, grace_s))
        await asyncio.shield(child.stop_task)

    def _exec_probe(self, child: Any) -> ExecProbe:
        """How an exec probe's command runs in this runtime's `child`."""
        raise NotImplementedError

    def _watch_probes(self, child: StoppableChild) -> None:
        """Probe the running child: its startup probe if it has one, then readiness; and its
        liveness, if its spec asks for it."""
        run_exec = self._exec_probe(child)
        child.probe_task = asyncio.ensure_future(
            report_readiness(
                child.replica,
                lambda: child.stopping,
                lambda: notify(child.on_change, child.replica),
                lambda why: self._kill(child, "StartupProbeFailed", why),
                run_exec,
            )
        )
        if child.replica.spec.liveness is not None:
            child.liveness_task = asyncio.ensure_future(
                watch_liveness(
                    child.replica,
                    lambda why: self._kill(child, "LivenessProbeFailed", why),
                    run_exec,
                )
            )

    @staticmethod
    async def _end_probes(child: StoppableChild) -> None:
        """Cancel the child's probes and wait until they have ended: an exec probe's command
        is killed and reaped with them."""
        tasks = [t for t in (child.probe_task, child.liveness_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _kill(self, child: StoppableChild, reason_code: str, why: str) -> None:
        """A failed liveness or startup probe, or an eviction: out of routing at once, then
        terminated with the replica's grace and reported FAILED with `why`, so the controller
        replaces it, as the kubelet restarts the container (docs/reliability.md#liveness-probes)."""
        if child.stop_task is not None:
            return  # being stopped anyway
        child.killed_for = why
        child.replica.reason_code = reason_code
        if child.probe_task is not None:
            child.probe_task.cancel()  # so that it cannot report the replica ready again
        replica = child.replica
        if replica.state is ReplicaState.READY:
            replica.state = ReplicaState.NOT_READY
            notify(child.on_change, replica)
        grace = replica.spec.termination_grace_s
        child.stop_task = asyncio.ensure_future(self._terminate(child, grace))

    async def stop_all(self) -> None:
        """Stop every child, each with the runtime's `close_grace_s`."""
        children = list(self._children.values())
        await asyncio.gather(*(self.stop(c.replica, self.close_grace_s) for c in children))
