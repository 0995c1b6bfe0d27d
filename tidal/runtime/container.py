"""Replicas as containers run by podman or docker on this machine (docs/containers.md).

A replica is one attached `<engine> run --rm` child: its output is the replica's log, its exit is
the container's exit. Knative's contract holds inside the container: PORT is the container port
(8080 unless `ports[0].containerPort` says otherwise), published on a free 127.0.0.1 port that the
gateway and the readiness probe use. The image is pulled first, by the engine, as
`imagePullPolicy` says; the pull counts as start-up time, as in Knative. A stop is the engine's
own: SIGTERM, then SIGKILL after the grace period.

A replica's init containers run first, one after the other, each to completion; one that
fails fails the replica (docs/containers.md#init-containers). A replica with sidecars runs each
as another attached child once the serving container runs, in its network namespace; a sidecar
that exits is restarted in place with the kubelet's back-off, the replica NotReady meanwhile.
See docs/containers.md#sidecars.

Containers carry labels naming tidal's data directory and process; leftovers of a platform that
was killed are removed by a detached watcher as soon as it dies, and by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tidal.api.config import LogLimits
from tidal.api.service import Container
from tidal.api.units import parse_quantity
from tidal.runtime import netns
from tidal.runtime.base import (
    ContainerSpec,
    ExecCommand,
    ExecProbe,
    ExecUnavailable,
    ImageSpec,
    PortUnavailable,
    RegistryAuth,
    Replica,
    ReplicaListener,
    ReplicaSpec,
    ReplicaState,
    Runtime,
    SecurityContext,
    VolumeSpec,
    notify,
)
from tidal.runtime.children import ChildStopping
from tidal.runtime.engine import (
    AUTH_FILE,
    DATA_DIR_LABEL,
    Engine,
    EngineError,
    check_engine,
    container_name,
    engine_fix,
    exec_args,
    find_engine,
    image_present_args,
    image_user_args,
    labels,
    list_args,
    names_registry,
    needs_image_user,
    non_root_problem,
    other_name,
    other_run_args,
    pid_args,
    pull_args,
    reaper_script,
    remove_args,
    run_args,
    run_engine,
    running_args,
    stop_args,
)
from tidal.runtime.exec_probe import exec_failure
from tidal.runtime.local import free_port
from tidal.runtime.logs import FLUSH_WAIT_S, prune_stopped, pump, tail_lines
from tidal.runtime.volumes import (
    CLAIMS_DIR,
    VolumeError,
    limited,
    mount_sources,
    over_limit,
    refresh_files,
    remove_volumes,
    write_volumes,
)

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
ENGINE_ERROR_CODES = (125, 126, 127)  # the engine, not the app: cannot create / run the command
HOST_PROBLEMS = ("rlimit", "cgroup", "systemd", "dbus", "crun")
STOP_SLACK_S = 30.0
CHECK_WAIT_S = 3.0  # `tidal up` waits this long for the engine check before printing its line
DISK_CHECK_S = 10.0  # how often emptyDir sizeLimits are checked (the kubelet's eviction period)
SIDECAR_WAIT_S = 0.05  # how often to look whether the serving container runs, for its sidecars
# The kubelet's restart back-off for a container that keeps exiting: the first restart at once,
# then 10 s, doubling up to 5 min; reset once it has run 10 min.
BACKOFF_FIRST_S, BACKOFF_MAX_S, BACKOFF_RESET_S = 10.0, 300.0, 600.0


def _ending(child: _Child) -> bool:
    """Its serving container has exited, or it is being stopped: its sidecars end with it."""
    assert child.process is not None
    return child.process.returncode is not None or child.stop_task is not None


def image_spec(container: Container) -> ImageSpec:
    """What the engine needs from a manifest's container."""
    assert container.image is not None
    limits = container.resources.limits
    return ImageSpec(
        image=container.image,
        pull_policy=container.image_pull_policy or "IfNotPresent",  # type: ignore[arg-type]
        entrypoint=tuple(container.command),
        args=tuple(container.args),
        container_port=container.port,
        cpu_limit=float(parse_quantity(limits["cpu"])) if "cpu" in limits else None,
        memory_limit=int(parse_quantity(limits["memory"])) if "memory" in limits else None,
    )


def container_env(spec: ReplicaSpec, image: ImageSpec) -> dict[str, str]:
    """The manifest's env and Knative's variables; nothing of the platform's own environment.
    Assigned GPUs are the only ones the engine maps in, so no CUDA_VISIBLE_DEVICES is needed."""
    env = dict(spec.env)
    if spec.devices:
        env.pop("CUDA_VISIBLE_DEVICES", None)
    env["PORT"] = str(image.container_port)
    return env


@dataclass
class _Child:
    replica: Replica
    image: ImageSpec
    on_change: ReplicaListener
    process: asyncio.subprocess.Process | None = None
    launch_task: asyncio.Task[None] | None = None
    log_task: asyncio.Task[None] | None = None
    probe_task: asyncio.Task[None] | None = None
    liveness_task: asyncio.Task[None] | None = None
    disk_task: asyncio.Task[None] | None = None  # watches emptyDir sizeLimits
    exit_task: asyncio.Task[None] | None = None
    stop_task: asyncio.Task[None] | None = None
    sidecar_task: asyncio.Task[None] | None = None  # starts the sidecars
    sidecars: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # each one's run, by name
    spawning: bool = False
    stopping: bool = False
    killed_for: str = ""


class ContainerRuntime(ChildStopping):
    """Runs replicas whose spec names an image as containers on 127.0.0.1."""

    requires_command = False
    keeps_log_files = True

    def __init__(
        self,
        data_dir: Path,
        engine: str = "auto",
        close_grace_s: float = 5.0,
        log_limits: LogLimits | None = None,
        disk_check_s: float = DISK_CHECK_S,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.disk_check_s = disk_check_s
        self.setting = engine
        self.close_grace_s = close_grace_s
        self.log_limits = log_limits or LogLimits()
        self.owner_pid = os.getpid()
        self.engine: Engine | None = None
        self.problem: str | None = None  # why containers cannot run here, once known
        self._prepared: asyncio.Task[None] | None = None
        self._checked: asyncio.Task[None] | None = None
        self._answered = False  # `prepare` has returned its line
        self._reaper: subprocess.Popen[bytes] | None = None
        self._children: dict[str, _Child] = {}
        self._pulls: dict[tuple[str, str], asyncio.Task[str | None]] = {}
        self._present: set[str] = set()  # images known to be in the engine's store
        self.volume_root = self.data_dir / "volumes"  # one folder per replica that has volumes
        self.claim_root = self.data_dir / CLAIMS_DIR  # persistentVolumeClaims: kept

    # -- the engine, once per platform ----------------------------------------------------------

    async def prepare(self) -> str:
        """Find the engine and remove containers a previous run left behind (only the first call
        does the work), then check in the background that the engine can start a container here.
        Returns one line for `tidal up` to print."""
        if self._prepared is None:
            self._prepared = asyncio.ensure_future(self._prepare())
        await asyncio.shield(self._prepared)
        checked = self._checked
        if checked is not None and not checked.done():
            # An engine that cannot start containers mostly says so at once (docker without
            # its daemon): then the line says so, rather than naming the engine as usable.
            await asyncio.wait({checked}, timeout=CHECK_WAIT_S)
        self._answered = True
        if self.problem is not None:
            return f"containers: cannot run images: {self.problem}"
        assert self.engine is not None
        line = f"containers: {self.engine.name} ({self.engine.path})"
        return line if checked is None or checked.done() else f"{line}, still being checked"

    async def _prepare(self) -> None:
        try:
            self.engine = find_engine(self.setting)
        except EngineError as exc:
            self.problem = str(exc)
            return
        await self._remove({DATA_DIR_LABEL: str(self.data_dir)})
        await self._remove_leftover_volumes(self.engine)
        self._reaper = subprocess.Popen(
            reaper_script(self.engine, self.data_dir, self.owner_pid),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._checked = asyncio.ensure_future(self._check(self.engine))

    async def _check(self, engine: Engine) -> None:
        try:
            await check_engine(engine)
        except EngineError as exc:
            self.problem = str(exc)
            if self._answered:  # else `prepare` says it
                log.error("%s", exc)
        else:
            log.info("%s can start containers here", engine.name)

    async def ready(self) -> str | None:
        """Prepared and checked: None, or why no container can start here."""
        await self.prepare()
        if self._checked is not None:
            await asyncio.shield(self._checked)
        return self.problem

    async def _remove_leftover_volumes(self, engine: Engine) -> None:
        """Volumes of replicas a killed platform left behind. Files a container's own user made
        under rootless podman belong to that user's host id: `podman unshare` may remove them."""
        if remove_volumes(self.volume_root) or not engine.podman:
            return
        await run_engine([engine.path, "unshare", "rm", "-rf", str(self.volume_root)], 120)
        if self.volume_root.exists():
            log.warning("cannot remove %s: remove it by hand", self.volume_root)

    async def _remove(self, label_filters: dict[str, str]) -> None:
        assert self.engine is not None
        listed = await run_engine(list_args(self.engine, label_filters), 60)
        names = listed.out.split()
        if listed.code == 0 and names:
            log.info("removing %d container(s) left behind", len(names))
            await run_engine(remove_args(self.engine, names), 120)

    # -- Runtime -------------------------------------------------------------------------------

    async def start(self, spec: ReplicaSpec, on_change: ReplicaListener) -> Replica:
        assert spec.image is not None, "ContainerRuntime runs replicas that name an image"
        replica = Replica(spec=spec, host=HOST, port=free_port(), started_at=time.monotonic())
        running = (path for c in self._children.values() for path in c.replica.spec.log_paths())
        prune_stopped(spec.log_path.parent, running, self.log_limits.max_stopped)
        child = _Child(replica, spec.image, on_change)
        self._children[spec.replica_id] = child
        notify(on_change, replica)
        child.launch_task = asyncio.ensure_future(self._launch(child))
        return replica

    async def _launch(self, child: _Child) -> None:
        replica = child.replica
        replica.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        spec = replica.spec
        problem = await self.ready()
        others = (*spec.sidecars, *spec.init_containers)
        for image in (child.image, *(other.image for other in others)):
            problem = problem or await self._ensure_image(child, image)
        if problem is not None:
            self._failed(child, problem)
            return
        if child.stopping:
            return
        assert self.engine is not None
        users = []
        for security, image in (
            (spec.security, child.image),
            *((other.security, other.image) for other in others),
        ):
            user = await self._image_user(child, self.engine, security, image.image)
            if user is None:
                return
            users.append(user)
        try:
            volume_dirs = (
                write_volumes(spec, self._volumes_of(spec), self.claim_root) if spec.volumes else {}
            )
            sources = mount_sources(spec.mounts, volume_dirs)
            other_sources = [mount_sources(other.mounts, volume_dirs) for other in others]
        except VolumeError as exc:
            self._failed(child, str(exc))
            return
        owned = labels(spec, self.data_dir, self.owner_pid)
        count = len(spec.sidecars)  # `others` are the sidecars, then the init containers
        other_args = [
            other_run_args(self.engine, spec, other, owned, mounted, user, index < count)
            for index, (other, mounted, user) in enumerate(
                zip(others, other_sources, users[1:], strict=True)
            )
        ]
        for position, init in enumerate(spec.init_containers):
            replica.phase = f"Init:{position}/{len(spec.init_containers)}"
            problem = await self._run_init(child, init, other_args[count + position])
            if problem is not None:
                replica.reason_code = "Init:Error"
                self._failed(child, problem)
                return
        args = run_args(
            self.engine,
            spec,
            child.image,
            replica.port,
            container_env(spec, child.image),
            owned,
            sources,
            users[0],
        )
        sidecars = list(zip(spec.sidecars, other_args[:count], strict=True))
        child.spawning = True
        try:
            child.process = await _attached(args)  # through the rotating log, as a process's
        except OSError as exc:
            self._failed(child, f"cannot run {self.engine.path}: {exc.strerror or exc}")
            return
        finally:
            child.spawning = False
        assert child.process.stdout is not None
        child.log_task = asyncio.ensure_future(
            pump(child.process.stdout, spec.log_path, self.log_limits)
        )
        replica.pid = child.process.pid
        replica.phase = ""
        self._watch_probes(child)
        if limited(spec):
            child.disk_task = asyncio.ensure_future(self._watch_disk(child, volume_dirs))
        if sidecars:
            child.sidecar_task = asyncio.ensure_future(self._start_sidecars(child, sidecars))
        child.exit_task = asyncio.ensure_future(self._await_exit(child))

    async def _run_init(self, child: _Child, init: ContainerSpec, args: list[str]) -> str | None:
        """Run an init container to its end, its output into its log: None when it succeeded,
        else why not. Cancelled (the replica is being stopped), it is removed."""
        assert self.engine is not None
        spec = child.replica.spec
        try:
            process = await _attached(args)
        except OSError as exc:
            return f"cannot run {self.engine.path}: {exc.strerror or exc}"
        assert process.stdout is not None
        path = spec.log_of(init)
        pumping = asyncio.ensure_future(pump(process.stdout, path, self.log_limits))
        try:
            code = await process.wait()
        except asyncio.CancelledError:
            await run_engine(remove_args(self.engine, [other_name(spec, init)]), STOP_SLACK_S)
            raise
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pumping, FLUSH_WAIT_S)
        return None if code == 0 else _exited("init container", init.name, code, path)

    async def _start_sidecars(
        self, child: _Child, sidecars: list[tuple[ContainerSpec, list[str]]]
    ) -> None:
        """Start the sidecars as soon as the serving container runs: they join its network
        namespace, which exists from then on."""
        assert child.process is not None
        if not await self._until_running(container_name(child.replica.spec), child.process, child):
            return
        for sidecar, args in sidecars:
            process = await self._spawn_sidecar(child, args)
            if process is None:
                return
            run = self._run_sidecar(child, sidecar, process, args)
            child.sidecars[sidecar.name] = asyncio.ensure_future(run)

    async def _until_running(
        self, name: str, process: asyncio.subprocess.Process, child: _Child
    ) -> bool:
        """Whether container `name` (attached as `process`) came to run; False if it exited
        first, or its replica is ending."""
        assert self.engine is not None
        while process.returncode is None and not _ending(child):
            if (await run_engine(running_args(self.engine, name), 30)).out.strip() == "true":
                return True
            await asyncio.sleep(SIDECAR_WAIT_S)
        return False

    async def _spawn_sidecar(
        self, child: _Child, args: list[str]
    ) -> asyncio.subprocess.Process | None:
        """A sidecar's container, attached; None, the replica killed saying why, when the
        engine cannot be run."""
        assert self.engine is not None
        try:
            return await _attached(args)
        except OSError as exc:
            why = f"cannot run {self.engine.path}: {exc.strerror or exc}"
            self._kill(child, "CreateContainerError", why)
            return None

    async def _run_sidecar(
        self,
        child: _Child,
        sidecar: ContainerSpec,
        process: asyncio.subprocess.Process,
        args: list[str],
    ) -> None:
        """A sidecar's output into its log while it runs. Exiting by itself while the serving
        container runs, it is restarted in place, as the kubelet restarts a pod's container:
        the replica (its serving container, its placement, its emptyDirs) stays, NotReady
        until the sidecar runs again; restarts back off while it keeps exiting. Before the
        replica was ever ready, its exit fails the replica instead, with its exit code and
        last line, as Knative fails a revision whose container exits while it deploys."""
        assert self.engine is not None and child.process is not None
        replica, name = child.replica, sidecar.name
        path = replica.spec.log_of(sidecar)
        delay = 0.0
        while True:
            assert process.stdout is not None
            pumping = asyncio.ensure_future(pump(process.stdout, path, self.log_limits))
            began = time.monotonic()
            code = await process.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pumping, FLUSH_WAIT_S)
            if _ending(child):
                return
            why = _exited("sidecar container", name, code, path)
            if not replica.ever_ready:  # as Knative fails a revision whose container exits
                self._kill(child, "Error" if code else "Completed", why)
                return
            log.warning("%s", why)
            with contextlib.suppress(OSError):  # the next one logs afresh, as in a pod
                path.replace(replica.spec.previous_log_of(sidecar))
            replica.restarts[name] = replica.restarts.get(name, 0) + 1
            replica.last_exit[name] = code
            delay = 0.0 if time.monotonic() - began >= BACKOFF_RESET_S else delay
            self._hold(child, name, "CrashLoopBackOff" if delay else "ContainerCreating")
            await asyncio.sleep(delay)
            delay = min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, 2 * delay))
            # `run --rm` removes the old one as it exits; make sure before reusing the name.
            await run_engine(remove_args(self.engine, [other_name(replica.spec, sidecar)]), 30)
            if _ending(child):
                return
            spawned = await self._spawn_sidecar(child, args)
            if spawned is None:
                return
            process = spawned
            if await self._until_running(other_name(replica.spec, sidecar), process, child):
                self._release(child, name)

    @staticmethod
    def _hold(child: _Child, container: str, reason: str) -> None:
        """A container of the replica is down: the replica is out of routing until it runs."""
        replica = child.replica
        replica.down[container] = reason
        if replica.state is ReplicaState.READY:
            replica.state = ReplicaState.NOT_READY
            notify(child.on_change, replica)

    @staticmethod
    def _release(child: _Child, container: str) -> None:
        """The container runs again: the replica is ready again if its probe says so."""
        replica = child.replica
        replica.down.pop(container, None)
        if not replica.down and replica.probe_ready and replica.state is ReplicaState.NOT_READY:
            replica.state = ReplicaState.READY
            notify(child.on_change, replica)

    async def _end_sidecars(self, child: _Child) -> None:
        """Once the serving container has exited: remove its sidecars, then the serving
        container itself (podman keeps a container whose namespace others joined)."""
        spec = child.replica.spec
        if not spec.sidecars:
            return
        assert self.engine is not None
        if child.sidecar_task is not None:
            child.sidecar_task.cancel()
            await asyncio.gather(child.sidecar_task, return_exceptions=True)
        # One waiting to be restarted is not: its wait ends now.
        waiting = [task for name, task in child.sidecars.items() if name in child.replica.down]
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        names = [other_name(spec, sidecar) for sidecar in spec.sidecars]
        await run_engine(remove_args(self.engine, names), STOP_SLACK_S)
        await asyncio.gather(*child.sidecars.values(), return_exceptions=True)
        await run_engine(remove_args(self.engine, [container_name(spec)]), STOP_SLACK_S)

    async def _image_user(
        self, child: _Child, engine: Engine, security: SecurityContext, image: str
    ) -> str | None:
        """The image's USER where the securityContext needs it ("" where not), None when the
        replica may not start: runAsNonRoot would run one of its containers as root (the
        kubelet's check)."""
        user = ""
        if needs_image_user(security):
            read = await run_engine(image_user_args(engine, image), 60)
            if read.code != 0:
                self._failed(child, f"cannot read the image's user: {read.message()}")
                return None
            user = read.out.strip()
        problem = non_root_problem(security, user)
        if problem is not None:  # as the kubelet: the container is not created
            child.replica.reason_code = "CreateContainerConfigError"
            self._failed(child, problem)
            return None
        return user

    async def _ensure_image(self, child: _Child, wanted: ImageSpec) -> str | None:
        """Pull as the policy says; None when the image is there, else why it is not."""
        assert self.engine is not None
        image, policy = wanted.image, wanted.pull_policy
        if policy != "Always":
            if image in self._present:  # seen here already: spare a cold start the engine call
                return None
            present = await run_engine(image_present_args(self.engine, image), 60)
            if present.code == 0:
                self._present.add(image)
                return None
            if policy == "Never":
                return (
                    f"image {image!r} is not present and imagePullPolicy is Never "
                    f"(build or load it first, e.g. `{self.engine.name} build -t {image} .`)"
                )
        child.replica.phase = "Pulling"
        self._log_line(child, f"tidal: pulling image {image} ({self.engine.name}, {policy})")
        auth = child.replica.spec.registry_auth
        key = (image, json.dumps(auth.auths, sort_keys=True))
        pull = self._pulls.get(key)
        if pull is None:  # replicas starting together share one pull
            pull = self._pulls[key] = asyncio.ensure_future(self._pull(image, auth))
            pull.add_done_callback(lambda _: self._pulls.pop(key, None))
        started = time.monotonic()
        problem = await asyncio.shield(pull)
        if problem is None:
            self._present.add(image)
            self._log_line(child, f"tidal: pulled {image} in {time.monotonic() - started:.1f}s")
        return problem

    async def _pull(self, image: str, auth: RegistryAuth) -> str | None:
        """Pull `image`, with the imagePullSecrets' credentials in a file only tidal's user can
        read, there for the pull alone. Where they name no credentials for the image's
        registry, the engine's own (`podman login`) are used: a credentials file replaces them."""
        assert self.engine is not None
        if names_registry(auth.auths, image):
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="pull-", dir=self.data_dir) as folder:
                descriptor = os.open(Path(folder, AUTH_FILE), os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(descriptor, "w") as file:
                    json.dump({"auths": dict(auth.auths)}, file)
                result = await run_engine(pull_args(self.engine, image, Path(folder)))
        else:
            result = await run_engine(pull_args(self.engine, image))
        if result.code != 0:
            unused = f" ({'; '.join(auth.problems)})" if auth.problems else ""
            return f"cannot pull image {image!r}: {result.message()}{unused}"
        return None

    @staticmethod
    def _log_line(child: _Child, line: str) -> None:
        with child.replica.spec.log_path.open("a") as f:
            f.write(line + "\n")

    async def _await_exit(self, child: _Child) -> None:
        assert child.process is not None
        code = await child.process.wait()
        await self._end_probes(child)
        await self._end_sidecars(child)
        if child.disk_task is not None:
            child.disk_task.cancel()
        if child.log_task is not None:  # its last lines, for the reason of a failure
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(child.log_task), FLUSH_WAIT_S)
        replica = child.replica
        replica.exit_code = code
        if child.stopping:
            replica.state = ReplicaState.STOPPED
        else:
            replica.state = ReplicaState.FAILED
            replica.reason = child.killed_for or self._exit_reason(replica.spec, code)
        self._forget(child)
        notify(child.on_change, replica)

    def _exit_reason(self, spec: ReplicaSpec, code: int) -> str:
        if code not in ENGINE_ERROR_CODES:
            return f"container exited with code {code}"
        assert self.engine is not None
        self._present.discard(spec.image.image if spec.image else "")  # removed meanwhile?
        errors = [
            line
            for line in tail_lines(spec.log_path, 20)
            if line.startswith(("Error", f"{self.engine.name}: Error"))
        ]
        message = errors[-1] if errors else f"exit code {code}"
        if any(word in message.lower() for word in HOST_PROBLEMS):
            return engine_fix(message)
        return f"{self.engine.name} could not run the container: {message}"

    def _failed(self, child: _Child, reason: str) -> None:
        replica = child.replica
        self._log_line(child, f"tidal: {reason}")
        replica.state = ReplicaState.FAILED
        replica.reason = reason
        replica.phase = ""
        self._forget(child)
        notify(child.on_change, replica)

    async def _watch_disk(self, child: _Child, directories: dict[str, Path]) -> None:
        """Evict the replica, as the kubelet evicts a pod, once an emptyDir outgrows its
        sizeLimit: killed with reason Evicted, and replaced."""
        while True:
            await asyncio.sleep(self.disk_check_s)
            why = await asyncio.to_thread(over_limit, child.replica.spec, directories)
            if why is not None:
                self._kill(child, "Evicted", why)
                return

    def _volumes_of(self, spec: ReplicaSpec) -> Path:
        return self.volume_root / spec.namespace / spec.replica_id

    def _forget(self, child: _Child) -> None:
        """The replica has ended: drop it and its volumes (an emptyDir lives as long as it)."""
        spec = child.replica.spec
        self._children.pop(spec.replica_id, None)
        if spec.volumes and not remove_volumes(self._volumes_of(spec)):
            log.warning("volumes of %s remain; the next start removes them", spec.replica_id)

    def _exec_probe(self, child: _Child) -> ExecProbe:
        """An exec probe runs in the replica's container (`podman exec`)."""
        assert self.engine is not None
        engine, name = self.engine, container_name(child.replica.spec)

        async def run(command: tuple[str, ...], timeout_s: float) -> str | None:
            return await exec_failure(exec_args(engine, name, command), command, timeout_s)

        return run

    def exec_command(
        self, replica: Replica, container: str, command: tuple[str, ...], tty: bool = False
    ) -> ExecCommand:
        """`podman exec --interactive` in the serving container, or in the sidecar named
        `container`."""
        if self.engine is None:
            raise ExecUnavailable("no container engine")
        spec = replica.spec
        sidecar = next((s for s in spec.sidecars if s.name == container), None)
        name = container_name(spec) if sidecar is None else other_name(spec, sidecar)
        return ExecCommand(tuple(exec_args(self.engine, name, command, interactive=True, tty=tty)))

    async def connect_inside(self, replica: Replica, port: int) -> socket.socket:
        """Through the serving container's network namespace, which its sidecars share."""
        if self.engine is None:
            raise PortUnavailable("no container engine")
        result = await run_engine(pid_args(self.engine, container_name(replica.spec)), 5.0)
        pid = result.out.strip()
        if result.code != 0 or not pid.isdigit() or pid == "0":
            raise PortUnavailable(f"its container does not run: {result.message()}")
        try:
            return await netns.connect_inside(int(pid), port)
        except PermissionError as exc:
            raise PortUnavailable(
                f"{exc.strerror} (a rootless engine's containers are reachable on their "
                "serving port only)"
            ) from None

    async def _terminate(self, child: _Child, grace_s: float) -> None:
        launch = child.launch_task
        assert launch is not None
        if not launch.done() and not child.spawning:
            launch.cancel()  # still pulling or preparing: nothing runs yet
        with contextlib.suppress(asyncio.CancelledError):
            await launch
        if child.process is None or child.exit_task is None:
            replica = child.replica
            if replica.state is not ReplicaState.FAILED:
                replica.state = ReplicaState.STOPPED
                self._forget(child)
                notify(child.on_change, replica)
            return
        if child.probe_task is not None:
            child.probe_task.cancel()
        assert self.engine is not None
        spec = child.replica.spec
        name = container_name(spec)
        if child.sidecar_task is not None:  # none starts from now on
            child.sidecar_task.cancel()
        names = [name, *(other_name(spec, sidecar) for sidecar in spec.sidecars)]
        stopped = await run_engine(stop_args(self.engine, names, grace_s), grace_s + STOP_SLACK_S)
        try:
            await asyncio.wait_for(asyncio.shield(child.exit_task), STOP_SLACK_S)
        except TimeoutError:
            child.process.kill()
            await child.exit_task
        if stopped.code != 0:  # e.g. stopped while being created: make sure it is gone
            await run_engine(remove_args(self.engine, [name]), STOP_SLACK_S)

    def log_tail(self, replica_spec: ReplicaSpec, lines: int) -> list[str]:
        return tail_lines(replica_spec.log_path, lines)

    def refresh_volumes(self, replica: Replica, volumes: tuple[VolumeSpec, ...]) -> None:
        if replica.replica_id not in self._children:
            return  # ended meanwhile: its volumes are gone
        try:
            refresh_files(volumes, self._volumes_of(replica.spec))
        except OSError as exc:
            log.warning("cannot update the volumes of %s: %s", replica.replica_id, exc)

    async def close(self) -> None:
        await self.stop_all()
        for pull in list(self._pulls.values()):
            pull.cancel()
        if self._reaper is not None:  # nothing left for it to remove
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._reaper.pid, signal.SIGTERM)
            await asyncio.to_thread(self._reaper.wait)
            self._reaper = None


async def _attached(args: list[str]) -> asyncio.subprocess.Process:
    """An engine child whose output (stdout and stderr) the caller pumps into a log, in a
    session of its own: Ctrl-C on `tidal up` must not reach the containers."""
    return await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )


def _exited(what: str, name: str, code: int, log_path: Path) -> str:
    """Why a container ended the replica: its exit code and the last line it wrote."""
    last = tail_lines(log_path, 1)
    return f"{what} {name} exited with code {code}" + (f": {last[0]}" if last else "")


class HostRuntime:
    """Processes and containers on this machine: a replica whose spec names an image runs in a
    container, any other as a process."""

    requires_command = False
    keeps_log_files = True

    def __init__(self, processes: Runtime, containers: ContainerRuntime) -> None:
        self.processes = processes
        self.containers = containers

    def _for(self, spec: ReplicaSpec) -> Runtime:
        return self.containers if spec.image is not None else self.processes

    async def start(self, spec: ReplicaSpec, on_change: ReplicaListener) -> Replica:
        return await self._for(spec).start(spec, on_change)

    async def stop(self, replica: Replica, grace_s: float) -> None:
        await self._for(replica.spec).stop(replica, grace_s)

    def log_tail(self, replica_spec: ReplicaSpec, lines: int) -> list[str]:
        return self._for(replica_spec).log_tail(replica_spec, lines)

    def refresh_volumes(self, replica: Replica, volumes: tuple[VolumeSpec, ...]) -> None:
        self._for(replica.spec).refresh_volumes(replica, volumes)

    def exec_command(
        self, replica: Replica, container: str, command: tuple[str, ...], tty: bool = False
    ) -> ExecCommand:
        return self._for(replica.spec).exec_command(replica, container, command, tty)

    async def connect_inside(self, replica: Replica, port: int) -> socket.socket:
        return await self._for(replica.spec).connect_inside(replica, port)

    async def close(self) -> None:
        await asyncio.gather(self.processes.close(), self.containers.close())
