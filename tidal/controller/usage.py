"""Replicas' measured CPU, memory and GPU use: sampled once a second off the event loop, kept on
each scaled revision for the autoscaler and the views, and exported as `tidal_replica_*` gauges.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from prometheus_client import Gauge

from tidal.api.units import parse_quantity
from tidal.autoscaler.signals import Usage
from tidal.runtime.base import ReplicaState
from tidal.runtime.resources import ReplicaResources, ResourceMonitor

if TYPE_CHECKING:
    from tidal.controller.handle import RevisionHandle

_LABELS = ["namespace", "revision", "replica"]
CPU_CORES = Gauge("tidal_replica_cpu_cores", "CPU a replica uses, in cores", _LABELS)
CPU_REQUEST_RATIO = Gauge(
    "tidal_replica_cpu_request_ratio", "CPU a replica uses over its resources.requests.cpu", _LABELS
)
MEMORY = Gauge(
    "tidal_replica_memory_working_set_bytes", "Memory a replica uses (working set)", _LABELS
)
GPU_UTIL = Gauge(
    "tidal_replica_gpu_utilization_percent", "Mean utilisation of a replica's GPUs", _LABELS
)
GPU_MEMORY = Gauge("tidal_replica_gpu_memory_bytes", "GPU memory a replica uses", _LABELS)
RESOURCE_GAUGES = (CPU_CORES, CPU_REQUEST_RATIO, MEMORY, GPU_UTIL, GPU_MEMORY)


def cpu_request(entry: RevisionHandle) -> float | None:
    """The revision's CPU request in cores (the limit when only that is set), or None."""
    resources = entry.workload.spec.container.resources
    amount = resources.requests.get("cpu", resources.limits.get("cpu"))
    return parse_quantity(amount) if amount is not None else None


async def sample_resources(monitor: ResourceMonitor, entries: list[RevisionHandle]) -> None:
    """One round: measure every live replica, then update each revision's figures. Revisions
    with no replica and nothing measured last round (idle at zero) cost one check."""
    entries = [e for e in entries if e.workload.replicas or e.resources or e.exported]
    replicas = [
        replica
        for entry in entries
        for replica in entry.workload.replicas.values()
        if replica.state in (ReplicaState.READY, ReplicaState.NOT_READY, ReplicaState.STARTING)
    ]
    found = await asyncio.to_thread(monitor.sample, replicas) if replicas else {}
    for entry in entries:
        mine = {rid: found[rid] for rid in entry.workload.replicas if rid in found}
        entry.resources = mine
        ready = [
            found[r.replica_id]
            for r in entry.workload.replicas.values()
            if r.state is ReplicaState.READY and r.replica_id in found
        ]
        entry.usage = total_usage(ready)
        export(entry, mine)


def total_usage(measured: list[ReplicaResources]) -> Usage | None:
    """The sum the autoscaler reads; replicas whose CPU rate is not known yet are left out."""
    with_cpu = [m for m in measured if m.cpu_cores is not None]
    if not with_cpu:
        return None
    gpus = [m for m in with_cpu if m.gpu_percent is not None]
    return Usage(
        replicas=len(with_cpu),
        cpu_cores=sum(m.cpu_cores or 0.0 for m in with_cpu),
        memory_bytes=float(sum(m.memory_bytes or 0 for m in with_cpu)),
        gpu_percent=sum(m.gpu_percent or 0.0 for m in gpus),
        gpu_memory_bytes=float(sum(m.gpu_memory_bytes or 0 for m in gpus)),
        gpu_replicas=len(gpus),
    )


def export(entry: RevisionHandle, mine: dict[str, ReplicaResources]) -> None:
    spec = entry.workload.spec
    request = cpu_request(entry)
    for replica_id, m in mine.items():
        labels = (spec.namespace, spec.revision, replica_id)
        if m.cpu_cores is not None:
            CPU_CORES.labels(*labels).set(m.cpu_cores)
            if request:
                CPU_REQUEST_RATIO.labels(*labels).set(m.cpu_cores / request)
        if m.memory_bytes is not None:
            MEMORY.labels(*labels).set(m.memory_bytes)
        if m.gpu_percent is not None:
            GPU_UTIL.labels(*labels).set(m.gpu_percent)
            GPU_MEMORY.labels(*labels).set(m.gpu_memory_bytes or 0)
    forget_replica_gauges(entry, set(mine))


def forget_replica_gauges(entry: RevisionHandle, keep: set[str]) -> None:
    """Drop the gauges of replicas no longer measured (`keep` empty: all of the revision's)."""
    spec = entry.workload.spec
    for replica_id in entry.exported - keep:
        for gauge in RESOURCE_GAUGES:
            with contextlib.suppress(KeyError):
                gauge.remove(spec.namespace, spec.revision, replica_id)
    entry.exported = set(keep)


def resource_view(entry: RevisionHandle | None, replica_id: str) -> dict[str, Any]:
    """A replica's measured use for `get replicas -o wide` and `describe`."""
    m = entry.resources.get(replica_id) if entry is not None else None
    if m is None:
        return dict.fromkeys(
            ("cpuCores", "cpuPercentOfRequest", "memoryBytes", "gpuPercent", "gpuMemoryBytes")
        )
    request = cpu_request(entry) if entry is not None else None
    return {
        "cpuCores": m.cpu_cores,
        "cpuPercentOfRequest": (
            100.0 * m.cpu_cores / request if request and m.cpu_cores is not None else None
        ),
        "memoryBytes": m.memory_bytes,
        "gpuPercent": m.gpu_percent,
        "gpuMemoryBytes": m.gpu_memory_bytes,
    }
