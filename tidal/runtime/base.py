"""The contract between the controller and whatever runs replicas (processes, pods).

The controller asks a runtime to start and stop replicas; the runtime reports every state change
of a replica through the callback given to `start`. Draining (waiting for in-flight requests to
finish) is the gateway's and controller's job: `stop` is only called once a replica is idle or its
drain time is up.
"""

from __future__ import annotations

import enum
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class ProbeSpec:
    """A probe of a replica's port.

    As the readiness probe, run as Knative's queue-proxy runs it
    (docs/autoscaling.md#readiness-probe): `period_s == 0` means aggressive probing, every 50 ms
    with a 100 ms timeout until the first success. With a period, the probe keeps running after
    readiness and `failure_threshold` consecutive failures make the replica not ready again.
    As the liveness and startup probes, run as the kubelet runs them
    (docs/reliability.md#liveness-probes): from `initial_delay_s` after the start, once per
    period; `failure_threshold` consecutive failures kill the replica. An `exec` probe runs
    `command` in the replica's environment (docs/reliability.md#exec-probes).
    """

    kind: Literal["tcp", "http", "grpc", "exec"] = "tcp"
    path: str = "/"  # the HTTP path, or the gRPC service to check ("": the server's own)
    command: tuple[str, ...] = ()  # what an exec probe runs
    period_s: float = 0.0
    timeout_s: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1
    initial_delay_s: float = 0.0


PullPolicy = Literal["IfNotPresent", "Always", "Never"]


@dataclass(frozen=True)
class ImageSpec:
    """A replica that runs a container image through a container engine instead of `command`.

    `entrypoint` and `args` keep Kubernetes' meaning: `entrypoint` (the manifest's `command`)
    replaces the image's ENTRYPOINT and drops its CMD; `args` alone replaces the CMD.
    """

    image: str
    pull_policy: PullPolicy = "IfNotPresent"
    entrypoint: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    container_port: int = 8080  # PORT inside the container; published on a loopback port
    cpu_limit: float | None = None  # cores
    memory_limit: int | None = None  # bytes


@dataclass(frozen=True)
class SecurityContext:
    """The container's `securityContext` fields a runtime honours (Kubernetes' meanings).

    `run_as_non_root` refuses to start a replica that would run as uid 0; without
    `run_as_user` that is the runtime's own user (the image's, for containers and pods).
    `allow_privilege_escalation=False` sets no_new_privs, so setuid binaries gain nothing.
    The rest only a container honours: capabilities dropped and added, a read-only root
    filesystem, and the engine's seccomp profile or none (`seccomp_unconfined`).
    """

    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool = False
    allow_privilege_escalation: bool = True
    drop_capabilities: tuple[str, ...] = ()
    add_capabilities: tuple[str, ...] = ()
    read_only_root_filesystem: bool = False
    seccomp_unconfined: bool = False


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for pulling a replica's image, from its imagePullSecrets
    (docs/containers.md#private-registries): per registry, an entry of a Docker config.json
    (`{"auth": base64("user:password")}`), and why a Secret named could not be used."""

    auths: Mapping[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class VolumeSpec:
    """One volume of a replica, its contents resolved (docs/containers.md#volumes): the files
    of its Secrets and ConfigMaps, an empty directory (in RAM when `memory`), or a claim's."""

    name: str
    files: Mapping[str, tuple[bytes, int]] = field(default_factory=dict)  # path: content, mode
    memory: bool = False
    size_limit: int | None = None  # bytes; a limit of the in-memory directory
    claim: str = ""  # a persistentVolumeClaim's name: a folder kept across replicas


@dataclass(frozen=True)
class MountSpec:
    """A volume (or `sub_path` inside it) at `path` in the replica's container."""

    volume: str
    path: str
    read_only: bool = False
    sub_path: str = ""


@dataclass(frozen=True)
class ContainerSpec:
    """A container of the replica other than the serving one, with the replica's volumes,
    neither probed nor published; its output is a log of its own. A sidecar
    (docs/containers.md#sidecars) runs beside the server in its network namespace (each
    reaches the other on 127.0.0.1); an init container (docs/containers.md#init-containers)
    runs to completion before either starts."""

    name: str
    image: ImageSpec
    env: Mapping[str, str]
    working_dir: str | None = None
    security: SecurityContext = field(default_factory=lambda: SecurityContext())
    mounts: tuple[MountSpec, ...] = ()


@dataclass(frozen=True)
class ReplicaSpec:
    """Everything needed to start one replica of a revision."""

    replica_id: str
    namespace: str
    service: str
    revision: str
    command: tuple[str, ...]
    env: dict[str, str]
    working_dir: str | None
    probe: ProbeSpec
    log_path: Path
    pool: str = "local"
    devices: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)  # revision's, unit podLabels, standby
    security: SecurityContext = field(default_factory=lambda: SecurityContext())
    image: ImageSpec | None = None  # set: run in a container (tidal.runtime.container)
    liveness: ProbeSpec | None = None  # failing it kills the replica, which is then replaced
    startup: ProbeSpec | None = None  # readiness and liveness wait for it; failing it kills
    termination_grace_s: float = 30.0  # SIGTERM to SIGKILL when the runtime kills it itself
    volumes: tuple[VolumeSpec, ...] = ()
    mounts: tuple[MountSpec, ...] = ()
    registry_auth: RegistryAuth = field(default_factory=RegistryAuth)
    sidecars: tuple[ContainerSpec, ...] = ()  # run by a container runtime only
    init_containers: tuple[ContainerSpec, ...] = ()  # likewise

    def log_of(self, container: ContainerSpec) -> Path:
        """`<replica>.<container>.log`, beside the replica's own log."""
        return self.log_path.with_name(f"{self.replica_id}.{container.name}.log")

    def previous_log_of(self, container: ContainerSpec) -> Path:
        """`<replica>.<container>.previous.log`: what a sidecar restarted in place wrote before
        its last restart (`kubectl logs --previous`)."""
        return self.log_path.with_name(f"{self.replica_id}.{container.name}.previous.log")

    def log_paths(self) -> list[Path]:
        others = (*self.init_containers, *self.sidecars)
        previous = (self.previous_log_of(sidecar) for sidecar in self.sidecars)
        return [self.log_path, *(self.log_of(container) for container in others), *previous]


class ExecUnavailable(Exception):
    """A command cannot be run in this container; the message says why."""


class PortUnavailable(Exception):
    """A replica's port cannot be reached from this machine; the message says why."""


@dataclass(frozen=True)
class ExecCommand:
    """How to run a command inside a replica's container on this machine (`kubectl exec`,
    exec probes): the argv, and for a process replica its environment, folder and user."""

    argv: tuple[str, ...]
    env: Mapping[str, str] | None = None  # None: the engine's exec gives the container's own
    cwd: str | None = None
    preexec_fn: Callable[[], None] | None = None


class ReplicaState(enum.StrEnum):
    STARTING = "Starting"
    READY = "Ready"
    NOT_READY = "NotReady"
    DRAINING = "Draining"
    STOPPED = "Stopped"
    FAILED = "Failed"


@dataclass
class Replica:
    """A replica as the runtime sees it. The runtime mutates it and reports each change."""

    spec: ReplicaSpec
    host: str = "127.0.0.1"
    port: int = 0
    pid: int | None = None
    state: ReplicaState = ReplicaState.STARTING
    started_at: float = 0.0
    ready_at: float | None = None
    exit_code: int | None = None
    reason: str = ""
    ever_ready: bool = field(default=False)
    # Its startup probe passed (without one: it has been ready); liveness is probed from then.
    started_up: bool = False
    # Why it failed, as a Kubernetes reason ("LivenessProbeFailed"), when not its exit code.
    reason_code: str = ""
    phase: str = ""  # what a STARTING replica is doing, when it is worth showing ("Pulling")
    # The serving container's readiness as last probed; the replica is READY only while it is
    # and no container is `down` (as a pod is Ready only with all its containers ready).
    probe_ready: bool = False
    # Sidecars restarted in place, as the kubelet restarts a pod's containers: how often each
    # was, the exit code it last ended with, and why each that is down now waits
    # ("CrashLoopBackOff").
    restarts: dict[str, int] = field(default_factory=dict)
    last_exit: dict[str, int] = field(default_factory=dict)
    down: dict[str, str] = field(default_factory=dict)

    @property
    def replica_id(self) -> str:
        return self.spec.replica_id

    @property
    def startup_seconds(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.started_at


ReplicaListener = Callable[[Replica], None]
# Runs an exec probe's command in a replica within a timeout: None when it exits 0, else why not.
ExecProbe = Callable[[tuple[str, ...], float], Awaitable[str | None]]


def notify(on_change: ReplicaListener, replica: Replica) -> None:
    """Tell the controller a replica changed; a failing listener is logged, never raised into
    the runtime's own tasks."""
    try:
        on_change(replica)
    except Exception:
        logging.getLogger("tidal.runtime").exception(
            "replica listener failed for %s", replica.replica_id
        )


@dataclass(frozen=True)
class FollowedLog:
    """A replica's log as it is written: its chunks (the iteration blocks until the next one
    comes, and ends with the replica), and how to end it early from another thread (the
    iteration then ends, and cleans up in its own thread)."""

    chunks: Iterator[bytes]
    close: Callable[[], None]


@runtime_checkable
class FollowsLogs(Protocol):
    """A runtime whose replicas keep their own logs (pods), which it reads as they are
    written; one that keeps log files instead says so with `keeps_log_files`."""

    def open_log(self, replica_spec: ReplicaSpec, tail: int | None) -> FollowedLog | None:
        """The log from its last `tail` lines (all when None), followed; blocks (a thread's
        call); None while the replica has no log to read."""
        ...


class Runtime(Protocol):
    # Whether a container needs `command`: processes do; pods can run the image's entrypoint.
    requires_command: bool
    # Whether replica output goes to files under the data dir (docs/reliability.md#replica-logs),
    # which `tidal logs` reads and follows; pods keep their own.
    keeps_log_files: bool

    async def start(self, spec: ReplicaSpec, on_change: ReplicaListener) -> Replica:
        """Start a replica and return at once; readiness and exit arrive through `on_change`."""
        ...

    async def stop(self, replica: Replica, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; returns when the replica has exited."""
        ...

    def log_tail(self, replica_spec: ReplicaSpec, lines: int) -> list[str]:
        """The last lines the replica wrote to stdout/stderr."""
        ...

    def refresh_volumes(self, replica: Replica, volumes: tuple[VolumeSpec, ...]) -> None:
        """Give a running replica its Secret and ConfigMap volumes' current files, as the
        kubelet updates a pod's (docs/containers.md#volumes)."""
        ...

    def exec_command(
        self, replica: Replica, container: str, command: tuple[str, ...], tty: bool = False
    ) -> ExecCommand:
        """How to run `command` in the replica's running `container` (its manifest name), with
        a terminal if `tty`; ExecUnavailable where it cannot be."""
        ...

    async def connect_inside(self, replica: Replica, port: int) -> socket.socket:
        """A connection to `port` on the replica's own network (`kubectl port-forward` to a
        port other than its serving one); PortUnavailable where it has no network of its
        own, OSError when nothing listens there."""
        ...

    async def close(self) -> None:
        """Stop every replica this runtime started."""
        ...
