"""A runtime and a clock the test drives, and a Platform built on them (no subprocess)."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

from tidal.api.config import PlatformConfig, load_config
from tidal.controller.platform import Platform
from tidal.runtime.base import Replica, ReplicaListener, ReplicaSpec, ReplicaState, VolumeSpec


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeRuntime:
    """Replicas that do what the test says: `ready(id)`, `exit(id, code)`."""

    requires_command = True
    keeps_log_files = True

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.replicas: dict[str, Replica] = {}
        self.listeners: dict[str, ReplicaListener] = {}
        self.stopped: list[str] = []
        self.refreshed: list[tuple[str, tuple[VolumeSpec, ...]]] = []

    async def start(self, spec: ReplicaSpec, on_change: ReplicaListener) -> Replica:
        replica = Replica(spec=spec, port=9000 + len(self.replicas), started_at=self.clock.now())
        self.replicas[spec.replica_id] = replica
        self.listeners[spec.replica_id] = on_change
        return replica

    async def stop(self, replica: Replica, grace_s: float) -> None:
        replica.state = ReplicaState.STOPPED
        self.stopped.append(replica.replica_id)

    def log_tail(self, replica_spec: ReplicaSpec, lines: int) -> list[str]:
        return ["Traceback: boom"]

    def refresh_volumes(self, replica: Replica, volumes: tuple[VolumeSpec, ...]) -> None:
        self.refreshed.append((replica.replica_id, volumes))

    async def close(self) -> None:
        return None

    def running(self) -> list[str]:
        """Started and neither stopped nor exited, oldest first."""
        return [
            rid
            for rid, r in self.replicas.items()
            if r.state not in (ReplicaState.STOPPED, ReplicaState.FAILED)
        ]

    def ready(self, replica_id: str, startup_s: float = 1.0) -> None:
        replica = self.replicas[replica_id]
        replica.state, replica.ever_ready = ReplicaState.READY, True
        replica.ready_at = replica.started_at + startup_s
        self.listeners[replica_id](replica)

    def exit(self, replica_id: str, code: int = 1) -> None:
        replica = self.replicas[replica_id]
        replica.state, replica.exit_code = ReplicaState.FAILED, code
        self.listeners[replica_id](replica)


def service(name: str = "hello", **annotations: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"command": ["python", "app.py"]}]}}},
    }
    if annotations:
        doc["spec"]["template"]["metadata"] = {"annotations": dict(annotations)}
    return copy.deepcopy(doc)


def zero_initial_scale(config: PlatformConfig) -> PlatformConfig:
    update = {"allow_zero_initial_scale": True}
    return replace(config, autoscaler=config.autoscaler.model_copy(update=update))


def make_platform(data_dir: Path, config: PlatformConfig | None = None) -> Platform:
    clock = FakeClock()
    return Platform(config or load_config(None), data_dir, FakeRuntime(clock), clock=clock)


def clock_of(platform: Platform) -> FakeClock:
    clock = platform.factory.clock
    assert isinstance(clock, FakeClock)
    return clock


def runtime_of(platform: Platform) -> FakeRuntime:
    runtime = platform.runtime
    assert isinstance(runtime, FakeRuntime)
    return runtime


async def settle() -> None:
    """Let coalesced placement and replica starts run."""
    for _ in range(10):
        await asyncio.sleep(0)


async def decide(platform: Platform, seconds: float = 2.0) -> None:
    """Move the clock on and run one decision tick of the scaling loop."""
    clock = clock_of(platform)
    clock.advance(seconds)
    platform.scaling.step(clock.now(), decide=True)
    await settle()
