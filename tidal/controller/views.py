"""What the admin API shows about running things: live revision status, replicas, logs."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from tidal.controller.handle import RevisionHandle
from tidal.controller.workload import RevisionWorkload
from tidal.runtime.base import ReplicaState
from tidal.runtime.logs import tail_lines


def live_revision(revision: dict[str, Any], entry: RevisionHandle | None) -> dict[str, Any]:
    """The stored Revision with live replica counts and the autoscaler's last decision."""
    if entry is None:
        return revision
    revision["status"] = {**revision.get("status", {}), **entry.workload.status_dict()}
    decision = entry.last_decision
    workload = entry.workload
    if workload.failed_reason is not None:  # not "Activating": it will not start a replica
        revision["status"]["autoscaler"] = {
            "active": "Failed",
            "inPanic": False,
            "reason": workload.failed_reason,
            "reachable": entry.reachable,
        }
    elif decision is not None:
        revision["status"]["autoscaler"] = {
            "active": decision.active,
            "inPanic": decision.in_panic,
            "reason": decision.reason,
            "reachable": entry.reachable,
            # Where Knative's activator would be, and so how many requests may wait
            # (docs/autoscaling.md#activator-and-queue-proxy).
            "mode": decision.mode,
            "pendingCap": workload.throttler.pending_cap,
        }
        feed = getattr(entry.autoscaler, "feed", None)  # scaling on a measured metric
        if feed is not None:
            revision["status"]["autoscaler"]["metric"] = feed.view()
    return revision


def replica_views(
    workloads: Iterable[RevisionWorkload],
    namespace: str | None,
    measured: Callable[[RevisionWorkload, str], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Every replica, with the ones still provisioning on their pool and the ones that are
    pending (no room anywhere the policy allows) and why. `measured` gives a running replica's
    CPU, memory and GPU use (tidal.controller.usage.resource_view)."""
    items = []
    for workload in workloads:
        spec = workload.spec
        if namespace is not None and spec.namespace != namespace:
            continue
        base = {"namespace": spec.namespace, "service": spec.service, "revision": spec.revision}
        for replica in workload.replicas.values():
            state = replica.state.value
            if replica.state is ReplicaState.STARTING and replica.phase:
                state = replica.phase  # e.g. Pulling: the image is being pulled
            if workload.is_stopping(replica.replica_id):
                state = ReplicaState.DRAINING.value
            items.append(
                {
                    "name": replica.replica_id,
                    **base,
                    "pool": replica.spec.pool,
                    "devices": list(replica.spec.devices),
                    "state": state,
                    "host": replica.host,
                    "port": replica.port,
                    "pid": replica.pid,
                    "inFlight": workload.throttler.in_flight_of(replica.replica_id),
                    "startupSeconds": replica.startup_seconds,
                    "logPath": str(replica.spec.log_path),
                    # Its sidecars' restarts in place, and why each that is down waits.
                    "restarts": sum(replica.restarts.values()),
                    "down": dict(replica.down),
                    **(measured(workload, replica.replica_id) if measured else {}),
                }
            )
        for replica_id, entry in workload.provisioning.items():
            items.append(
                {
                    "name": replica_id,
                    **base,
                    "pool": entry.pool,
                    "devices": list(entry.devices),
                    "state": "Provisioning",
                    "host": None,
                    "port": None,
                    "pid": None,
                    "inFlight": 0,
                    "startupSeconds": None,
                    "logPath": None,
                }
            )
        for index, pending in enumerate(workload.pending):
            items.append(
                {
                    "name": f"{spec.revision}-pending-{index}",
                    **base,
                    "pool": None,
                    "devices": [],
                    "state": "Pending",
                    "reason": pending.reason,
                    "host": None,
                    "port": None,
                    "pid": None,
                    "inFlight": 0,
                    "startupSeconds": None,
                    "logPath": None,
                }
            )
    return items


def read_logs(files: list[Path], tail: int, running: Collection[str] | None = None) -> str:
    """The last `tail` lines of each of these replica logs, each under its header; with the ids
    of the `running` replicas, the header of any other says it stopped (its log is kept for a
    while, docs/reliability.md#replica-logs)."""
    return "\n".join(
        log_header(path, running) + "\n" + "\n".join(tail_lines(path, tail)) for path in files
    )


def log_files(folders: list[Path]) -> list[Path]:
    """The replica logs in these revision folders, the one written last at the end."""
    return sorted(
        (p for folder in folders for p in folder.glob("*.log")),
        key=lambda p: p.stat().st_mtime,
    )


def log_header(path: Path, running: Collection[str] | None = None) -> str:
    """The line that names the replica a log's lines come from, as `tail` names a file: a
    sidecar's log is `<replica>.<container>`."""
    stopped = running is not None and path.stem.partition(".")[0] not in running
    return f"==> {path.parent.name}/{path.stem} <==" + (" (stopped)" if stopped else "")
