"""What each replica really uses: CPU (cores), memory (working set) and, per assigned device,
GPU utilisation and memory (docs/autoscaling.md#metrics-and-classes).

- processes: the replica's process tree, through psutil (CPU is the change of its CPU time
  between two samples over the wall time between them; memory the resident set);
- containers: the engine's `stats --no-stream --format json` (podman's CPU time, or docker's
  CPU percentage, and the memory in use);
- Kubernetes: the metrics API (`metrics.k8s.io/v1beta1` PodMetrics, as `kubectl top` reads it);
- GPUs: NVML (`nvidia-ml-py`, imported only when a replica has devices), by device index or UUID.

A sampler returns what it could measure; a replica it could not read is left out (as Kubernetes'
HPA leaves out pods without metrics), never reported as zero.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import psutil

from tidal.api.autoscaling import parse_go_duration_ns
from tidal.api.units import parse_quantity
from tidal.runtime.base import Replica

log = logging.getLogger("tidal.resources")


@dataclass(frozen=True)
class ReplicaResources:
    """One replica's measured use. `cpu_cores` is None on a first sample (a rate needs two)."""

    cpu_cores: float | None = None
    memory_bytes: int | None = None
    gpu_percent: float | None = None  # mean utilisation of its devices
    gpu_memory_bytes: int | None = None  # summed over its devices


class Sampler(Protocol):
    def sample(self, replicas: Iterable[Replica]) -> dict[str, ReplicaResources]: ...


class _Rates:
    """CPU seconds → cores between consecutive samples, per replica."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._last: dict[str, tuple[float, float]] = {}

    def cores(self, replica_id: str, cpu_seconds: float) -> float | None:
        now = self.clock()
        last = self._last.get(replica_id)
        self._last[replica_id] = (now, cpu_seconds)
        if last is None or now <= last[0]:
            return None
        # A child that exits takes its CPU time with it: never report a negative rate.
        return max(0.0, (cpu_seconds - last[1]) / (now - last[0]))

    def keep(self, replica_ids: Iterable[str]) -> None:
        alive = set(replica_ids)
        for gone in set(self._last) - alive:
            del self._last[gone]


class ProcessSampler:
    """Replicas that are local processes: their process trees."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.rates = _Rates(clock)

    def sample(self, replicas: Iterable[Replica]) -> dict[str, ReplicaResources]:
        out: dict[str, ReplicaResources] = {}
        replicas = [r for r in replicas if r.pid is not None]
        children = _children_by_parent() if replicas else {}
        for replica in replicas:
            assert replica.pid is not None
            measured = _process_tree(replica.pid, children)
            if measured is None:
                continue
            cpu_seconds, rss = measured
            out[replica.replica_id] = ReplicaResources(
                self.rates.cores(replica.replica_id, cpu_seconds), rss
            )
        self.rates.keep(out)
        return out


def _children_by_parent() -> dict[int, list[int]]:
    """One scan of the process table per round (psutil's `children()` scans it per call)."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info["ppid"]
        if ppid is not None:
            children.setdefault(ppid, []).append(proc.pid)
    return children


def _process_tree(pid: int, children: dict[int, list[int]]) -> tuple[float, int] | None:
    """(CPU seconds, resident bytes) of a process and its descendants; None once it is gone."""
    pids, cpu, rss = [pid], 0.0, 0
    while pids:
        current = pids.pop()
        try:
            proc = psutil.Process(current)
            with proc.oneshot():
                times = proc.cpu_times()
                cpu += times.user + times.system
                rss += proc.memory_info().rss
        except psutil.Error:
            if current == pid:
                return None  # the replica itself is gone
            continue  # a child exited between the scan and the read
        pids.extend(children.get(current, ()))
    return cpu, rss


_SIZE = re.compile(r"([0-9.]+)\s*([kKMGTP]?i?B)")
_SIZE_UNITS = {
    "B": 1,
    "kB": 1e3,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "TB": 1e12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}


def parse_size(text: str) -> int | None:
    """The first size in an engine's "745.5kB / 25.28GB" (decimal or binary units)."""
    match = _SIZE.search(text)
    if match is None or match.group(2) not in _SIZE_UNITS:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


class ContainerSampler:
    """Replicas that are containers: one `stats --no-stream --format json` call for all."""

    def __init__(
        self,
        engine_path: Callable[[], str],
        name_of: Callable[[Replica], str],
        clock: Callable[[], float] = time.monotonic,
        run: Callable[[list[str]], str] | None = None,
    ) -> None:
        self.engine_path = engine_path
        self.name_of = name_of
        self.rates = _Rates(clock)
        self.run = run or _run

    def sample(self, replicas: Iterable[Replica]) -> dict[str, ReplicaResources]:
        by_name = {self.name_of(r): r for r in replicas if r.port}
        if not by_name:
            return {}
        try:
            text = self.run(
                [self.engine_path(), "stats", "--no-stream", "--format", "json", *by_name]
            )
            rows = _stats_rows(text)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            log.debug("container stats failed: %s", exc)
            return {}
        out: dict[str, ReplicaResources] = {}
        for row in rows:
            name = str(row.get("name") or row.get("Name") or "").lstrip("/")
            replica = by_name.get(name)
            if replica is None:
                continue
            cores: float | None = None
            if "cpu_time" in row:  # podman: total CPU time, a Go duration
                seconds = parse_go_duration_ns(str(row["cpu_time"])) / 1e9
                cores = self.rates.cores(replica.replica_id, seconds)
            elif "CPUPerc" in row:  # docker: percent of one core since its last read
                cores = float(str(row["CPUPerc"]).rstrip("%") or 0) / 100.0
            memory = parse_size(str(row.get("mem_usage") or row.get("MemUsage") or ""))
            out[replica.replica_id] = ReplicaResources(cores, memory)
        self.rates.keep(out)
        return out


def _stats_rows(text: str) -> list[dict[str, Any]]:
    """podman prints one JSON array; docker one JSON object per line."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout


class MetricsApiSampler:
    """Replicas that are pods: PodMetrics from `metrics.k8s.io/v1beta1`, through a callable that
    returns the object for (namespace, pod name), or None when there is none (yet)."""

    def __init__(
        self,
        read: Callable[[str, str], dict[str, Any] | None],
        pod_of: Callable[[Replica], tuple[str, str] | None],
    ) -> None:
        self.read = read
        self.pod_of = pod_of

    def sample(self, replicas: Iterable[Replica]) -> dict[str, ReplicaResources]:
        out: dict[str, ReplicaResources] = {}
        for replica in replicas:
            pod = self.pod_of(replica)
            if pod is None:
                continue
            try:
                metrics = self.read(*pod)
            except Exception as exc:  # the API is optional in a cluster: no metrics, no scaling
                log.debug("metrics API read of %s failed: %s", pod, exc)
                continue
            if not metrics:
                continue
            containers = metrics.get("containers") or []
            cpu = sum(parse_quantity(c["usage"].get("cpu", "0")) for c in containers)
            memory = sum(parse_quantity(c["usage"].get("memory", "0")) for c in containers)
            out[replica.replica_id] = ReplicaResources(cpu, int(memory))
        return out


class GpuSampler:
    """Utilisation and memory of a replica's devices through NVML. `nvml` is the `pynvml`
    module (tests hand in a fake); None: import it on first use, and measure nothing when it is
    not installed or finds no driver."""

    def __init__(self, nvml: ModuleType | Any | None = None) -> None:
        self._nvml = nvml
        self._ready = False
        self._broken = False

    def _lib(self) -> Any | None:
        if self._broken:
            return None
        if not self._ready:
            try:
                if self._nvml is None:
                    import pynvml  # nvidia-ml-py: optional, only where a GPU is

                    self._nvml = pynvml
                self._nvml.nvmlInit()
                self._ready = True
            except Exception as exc:
                log.info("no GPU metrics: %s", exc)
                self._broken = True
                return None
        return self._nvml

    def device(self, device: str) -> tuple[float, int] | None:
        """(utilisation %, memory used bytes) of one device, by index or UUID."""
        nvml = self._lib()
        if nvml is None:
            return None
        try:
            if device.isdigit():
                handle = nvml.nvmlDeviceGetHandleByIndex(int(device))
            else:
                handle = nvml.nvmlDeviceGetHandleByUUID(device)
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        except Exception as exc:
            log.debug("NVML read of device %s failed: %s", device, exc)
            return None
        return float(util.gpu), int(memory.used)

    def add(self, replicas: Iterable[Replica], found: dict[str, ReplicaResources]) -> None:
        """Add GPU figures to `found` for each replica with devices."""
        for replica in replicas:
            devices = replica.spec.devices
            if not devices:
                continue
            reads = [r for r in (self.device(d) for d in devices) if r is not None]
            if not reads:
                continue
            base = found.get(replica.replica_id, ReplicaResources())
            found[replica.replica_id] = ReplicaResources(
                base.cpu_cores,
                base.memory_bytes,
                sum(u for u, _ in reads) / len(reads),
                sum(m for _, m in reads),
            )


class ResourceMonitor:
    """The runtime's sampler plus GPUs: what the scaling loop calls once a second."""

    def __init__(self, sampler: Sampler | None, gpus: GpuSampler | None = None) -> None:
        self.sampler = sampler
        self.gpus = gpus or GpuSampler()

    def sample(self, replicas: Iterable[Replica]) -> dict[str, ReplicaResources]:
        replicas = list(replicas)
        found = self.sampler.sample(replicas) if self.sampler is not None else {}
        self.gpus.add(replicas, found)
        return found


class HostSampler:
    """This machine: containers through their engine, any other replica as a process tree."""

    def __init__(self, containers: ContainerSampler | None) -> None:
        self.processes = ProcessSampler()
        self.containers = containers

    def sample(self, replicas: Iterable[Replica]) -> dict[str, ReplicaResources]:
        replicas = list(replicas)
        images = [r for r in replicas if r.spec.image is not None]
        found = self.processes.sample(r for r in replicas if r.spec.image is None)
        if images and self.containers is not None:
            found.update(self.containers.sample(images))
        return found


def monitor_for(runtime: object) -> ResourceMonitor:
    """The monitor for a platform's runtime (local processes and containers, or Kubernetes)."""
    from tidal.runtime.container import ContainerRuntime, HostRuntime
    from tidal.runtime.engine import container_name
    from tidal.runtime.kubernetes import KubernetesRuntime

    if isinstance(runtime, KubernetesRuntime):
        return ResourceMonitor(MetricsApiSampler(runtime.pod_metrics, runtime.pod_of))
    containers = runtime.containers if isinstance(runtime, HostRuntime) else None
    if isinstance(runtime, ContainerRuntime):
        containers = runtime
    sampler = None
    if containers is not None:
        owner = containers

        def engine_path() -> str:
            if owner.engine is None:
                raise OSError("no container engine found yet")
            return owner.engine.path

        sampler = ContainerSampler(engine_path, lambda r: container_name(r.spec))
    return ResourceMonitor(HostSampler(sampler))
