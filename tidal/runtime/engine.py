"""The container engine (podman or docker) as tidal drives it: which one, whether it can start a
container on this host, and the command lines for pull, run, stop and clean-up.

Everything here that builds a command line is a pure function, so tests can check the arguments
(GPUs included) on a machine without the engine or a GPU. See docs/containers.md.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tidal.runtime.base import (
    ContainerSpec,
    ImageSpec,
    MountSpec,
    ReplicaSpec,
    SecurityContext,
    VolumeSpec,
)
from tidal.runtime.expansion import expand_all

EngineName = Literal["podman", "docker"]
ENGINES: tuple[EngineName, ...] = ("podman", "docker")
HOST = "127.0.0.1"

# Labels on every container tidal starts, so that it can find its own containers again.
DATA_DIR_LABEL = "tidal.dev/data-dir"
OWNER_LABEL = "tidal.dev/owner-pid"
REVISION_LABEL = "tidal.dev/revision"
REPLICA_LABEL = "tidal.dev/replica"

CONTAINERS_CONF = "/etc/containers/containers.conf"
AUTH_FILE = "config.json"  # registry credentials, as docker names the file and podman reads it
# What a host like a container-in-a-container CI runner needs (see docs/containers.md).
CONF_LINES = {
    "ulimits": ("[containers]", "default_ulimits = []"),
    "cgroups": ("[engine]", 'cgroup_manager = "cgroupfs"'),
    "runtime": ("[engine]", 'runtime = "runc"'),
}
_CHECK_COMMAND = "/.tidal-engine-check"  # does not exist: "not found" means the engine works


class EngineError(Exception):
    """The engine is missing or cannot start containers here; the message says what to do."""


@dataclass(frozen=True)
class Engine:
    name: EngineName
    path: str

    @property
    def podman(self) -> bool:
        return self.name == "podman"


def find_engine(setting: str = "auto") -> Engine:
    """The engine a setting names (`podman`, `docker`, or `auto`: podman first, then docker)."""
    if setting not in ("auto", *ENGINES):
        raise EngineError(f"unknown container engine {setting!r} (use auto, podman or docker)")
    names = ENGINES if setting == "auto" else (setting,)
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return Engine(name, path)  # type: ignore[arg-type]
    wanted = "podman or docker" if setting == "auto" else setting
    raise EngineError(
        f"no container engine found ({wanted} is not on PATH); install one, e.g. "
        "`apt-get install podman runc`, to run manifests that name only an image"
    )


def container_name(spec: ReplicaSpec) -> str:
    return f"tidal-{spec.namespace}-{spec.replica_id}"


def other_name(spec: ReplicaSpec, other: ContainerSpec) -> str:
    """A sidecar's or init container's engine name: the replica's, then its own."""
    return f"{container_name(spec)}-{other.name}"


def labels(spec: ReplicaSpec, data_dir: Path, owner_pid: int) -> dict[str, str]:
    return {
        DATA_DIR_LABEL: str(data_dir),
        OWNER_LABEL: str(owner_pid),
        REVISION_LABEL: f"{spec.namespace}/{spec.revision}",
        REPLICA_LABEL: spec.replica_id,
    }


def gpu_args(engine: Engine, devices: Sequence[str]) -> list[str]:
    """Devices assigned by the scheduler: CDI names for podman, `--gpus` for docker."""
    if not devices:
        return []
    if engine.podman:
        return [arg for device in devices for arg in ("--device", f"nvidia.com/gpu={device}")]
    # Docker splits --gpus on commas unless the value is quoted.
    return ["--gpus", f'"device={",".join(devices)}"']


def run_args(
    engine: Engine,
    spec: ReplicaSpec,
    image: ImageSpec,
    host_port: int,
    env: Mapping[str, str],
    labels: Mapping[str, str],
    mount_sources: Mapping[str, Path],
    image_user: str = "",
) -> list[str]:
    """`<engine> run` for one replica: attached (its output is the replica's log), removed when
    it exits, the container's port published on the loopback interface only, its volumes
    bind-mounted from `mount_sources` (tidal.runtime.volumes), its securityContext applied
    (`image_user` is the image's USER, needed for a runAsGroup without runAsUser). With
    sidecars in its network namespace it is removed after them instead: podman's own removal
    waits for them, which kept its exit from being seen for about 20 s."""
    args = _run_start(engine, container_name(spec), labels, remove=not spec.sidecars)
    args += ["--publish", f"{HOST}:{host_port}:{image.container_port}"]
    args += _settings_args(engine, image, env, spec.working_dir, spec.security, image_user)
    args += gpu_args(engine, spec.devices)
    args += mount_args(spec.volumes, spec.mounts, mount_sources)
    return [*args, *_image_and_command(image, env)]


def other_run_args(
    engine: Engine,
    spec: ReplicaSpec,
    other: ContainerSpec,
    labels: Mapping[str, str],
    mount_sources: Mapping[str, Path],
    image_user: str = "",
    sidecar: bool = True,
) -> list[str]:
    """`<engine> run` for another container of the replica, nothing published, with its own
    settings and mounts of the replica's volumes: a sidecar in the serving container's network
    namespace (which must be running), an init container in the engine's default network
    (the serving container does not run yet)."""
    args = _run_start(engine, other_name(spec, other), labels)
    if sidecar:
        args += ["--network", f"container:{container_name(spec)}"]
    image = other.image
    args += _settings_args(engine, image, other.env, other.working_dir, other.security, image_user)
    args += mount_args(spec.volumes, other.mounts, mount_sources)
    return [*args, *_image_and_command(image, other.env)]


def _run_start(
    engine: Engine, name: str, labels: Mapping[str, str], remove: bool = True
) -> list[str]:
    args = [engine.path, "run", *["--rm"] * remove, "--name", name, "--pull", "never"]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    return args


def _settings_args(
    engine: Engine,
    image: ImageSpec,
    env: Mapping[str, str],
    working_dir: str | None,
    security: SecurityContext,
    image_user: str,
) -> list[str]:
    """A container's environment, working directory, securityContext and limits."""
    args: list[str] = []
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    if working_dir:
        args += ["--workdir", working_dir]
    args += security_args(engine, security, image_user)
    if image.cpu_limit is not None:
        args += ["--cpus", f"{image.cpu_limit:g}"]
    if image.memory_limit is not None:
        args += ["--memory", str(image.memory_limit)]
    return args


def _image_and_command(image: ImageSpec, env: Mapping[str, str]) -> list[str]:
    """The end of `run`: the entrypoint, the image, its arguments (Kubernetes' meanings), their
    `$(NAME)` references expanded with the container's environment, as the kubelet does."""
    entrypoint, args = expand_all(image.entrypoint, env), expand_all(image.args, env)
    if not entrypoint:
        return [image.image, *args]
    # One executable through --entrypoint (docker takes no list); the rest become arguments.
    return ["--entrypoint", entrypoint[0], image.image, *entrypoint[1:], *args]


def security_args(engine: Engine, security: SecurityContext, image_user: str) -> list[str]:
    """The securityContext as the kubelet has the runtime apply it: the user and group, no new
    privileges, capabilities, a read-only root (with no writable /tmp: podman would add one,
    Kubernetes does not), no seccomp filter when the manifest asks for none."""
    args: list[str] = []
    uid, gid = security.run_as_user, security.run_as_group
    if uid is not None or gid is not None:
        user = str(uid) if uid is not None else (image_user.split(":")[0] or "0")
        args += ["--user", user if gid is None else f"{user}:{gid}"]
    if not security.allow_privilege_escalation:
        args += ["--security-opt", "no-new-privileges"]
    for name in security.drop_capabilities:
        args += ["--cap-drop", name]
    for name in security.add_capabilities:
        args += ["--cap-add", name]
    if security.read_only_root_filesystem:
        args += ["--read-only", *(["--read-only-tmpfs=false"] if engine.podman else [])]
    if security.seccomp_unconfined:
        args += ["--security-opt", "seccomp=unconfined"]
    return args


def needs_image_user(security: SecurityContext) -> bool:
    """Whether applying `security` needs the image's USER: runAsNonRoot or runAsGroup, without
    a runAsUser."""
    return security.run_as_user is None and (
        security.run_as_non_root or security.run_as_group is not None
    )


def image_user_args(engine: Engine, image: str) -> list[str]:
    return [engine.path, "image", "inspect", "--format", "{{.Config.User}}", image]


def non_root_problem(security: SecurityContext, image_user: str) -> str | None:
    """Why a container with runAsNonRoot may not start, in the kubelet's words; None when it
    may. An image's USER that is a name cannot be checked, and an empty one is root."""
    if not security.run_as_non_root:
        return None
    prefix = "securityContext.runAsNonRoot: "
    if security.run_as_user is not None:
        return (
            None
            if security.run_as_user
            else prefix + "container's runAsUser breaks non-root policy"
        )
    user = image_user.split(":")[0] or "0"
    if not user.isdigit():
        return (
            f"{prefix}container has runAsNonRoot and image has non-numeric user ({user}), "
            "cannot verify user is non-root"
        )
    if int(user) == 0:
        return prefix + "container has runAsNonRoot and image will run as root"
    return None


def mount_args(
    volumes: Sequence[VolumeSpec], mounts: Sequence[MountSpec], sources: Mapping[str, Path]
) -> list[str]:
    """`--mount` for each of a container's volume mounts: a bind mount of its source by mount
    path (the volume's folder, or the subPath in it), or a tmpfs for an in-memory emptyDir. The
    value is CSV, as both engines read it, so a path with a comma is quoted."""
    by_name = {volume.name: volume for volume in volumes}
    args: list[str] = []
    for mount in mounts:
        volume = by_name[mount.volume]
        if volume.memory:
            fields = ["type=tmpfs", f"destination={mount.path}", "tmpfs-mode=1777"]
            if volume.size_limit:
                fields.append(f"tmpfs-size={volume.size_limit}")
        else:
            source = sources[mount.path]
            fields = ["type=bind", f"source={source}", f"destination={mount.path}"]
            if mount.read_only:
                fields.append("readonly=true")
        line = io.StringIO()
        csv.writer(line, lineterminator="").writerow(fields)
        args += ["--mount", line.getvalue()]
    return args


def stop_args(engine: Engine, names: Sequence[str], grace_s: float) -> list[str]:
    """SIGTERM to each container at once, then SIGKILL after the grace period (the engine's
    stop timeout), as the kubelet stops a pod's containers. A name that is gone (a sidecar
    that exited) is passed over: podman would otherwise stop none of them (docker stops the
    others anyway)."""
    ignore = ["--ignore"] if engine.podman else []
    return [engine.path, "stop", *ignore, "--time", str(max(0, math.ceil(grace_s))), *names]


def running_args(engine: Engine, name: str) -> list[str]:
    """Prints "true" once the container runs (and its network namespace exists)."""
    return [engine.path, "container", "inspect", "--format", "{{.State.Running}}", name]


def pid_args(engine: Engine, name: str) -> list[str]:
    """Prints the process id of the running container's first process."""
    return [engine.path, "container", "inspect", "--format", "{{.State.Pid}}", name]


def exec_args(
    engine: Engine, name: str, command: Sequence[str], interactive: bool = False, tty: bool = False
) -> list[str]:
    """Run `command` in the running container `name`, as its user, with its environment; with
    `interactive` its stdin is ours, with `tty` it gets a terminal (ours must be one)."""
    flags = ["--interactive"] * interactive + ["--tty"] * tty
    return [engine.path, "exec", *flags, name, *command]


def remove_args(engine: Engine, names: Sequence[str]) -> list[str]:
    return [engine.path, "rm", "--force", *names]


def list_args(engine: Engine, label_filters: Mapping[str, str]) -> list[str]:
    args = [engine.path, "ps", "--all", "--quiet"]
    for key, value in label_filters.items():
        args += ["--filter", f"label={key}={value}"]
    return args


def image_present_args(engine: Engine, image: str) -> list[str]:
    if engine.podman:
        return [engine.path, "image", "exists", image]
    return [engine.path, "image", "inspect", "--format", "{{.Id}}", image]


DOCKER_HUB = "docker.io"
_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", DOCKER_HUB)


def registry_of(image: str) -> str:
    """The registry an image reference names: its first part when that is a host (has a '.'
    or ':', or is localhost), else Docker Hub."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return DOCKER_HUB if first in _HUB_ALIASES else first
    return DOCKER_HUB


def names_registry(auths: Mapping[str, object], image: str) -> bool:
    """Whether credentials keyed as in a config.json (`ghcr.io`, `https://index.docker.io/v1/`,
    `ghcr.io/acme`) include the image's registry."""
    wanted = registry_of(image)
    for key in auths:
        host = key.split("://", 1)[-1].split("/", 1)[0]
        if (DOCKER_HUB if host in _HUB_ALIASES else host) == wanted:
            return True
    return False


def pull_args(engine: Engine, image: str, auth_dir: Path | None = None) -> list[str]:
    """`<engine> pull`, with the credentials in `auth_dir/config.json` when given: podman's
    --authfile, docker's --config (a folder with that file)."""
    if auth_dir is None:
        return [engine.path, "pull", "--quiet", image]
    if engine.podman:
        return [engine.path, "pull", "--quiet", "--authfile", str(auth_dir / AUTH_FILE), image]
    return [engine.path, "--config", str(auth_dir), "pull", "--quiet", image]


def reaper_script(engine: Engine, data_dir: Path, owner_pid: int) -> list[str]:
    """A detached watcher that removes this platform's containers once its process is gone, so
    that a `kill -9` of `tidal up` leaves no container running (the next start cleans up too)."""
    owned = {DATA_DIR_LABEL: str(data_dir), OWNER_LABEL: str(owner_pid)}
    ps = shlex.join(list_args(engine, owned))
    rm = shlex.join(remove_args(engine, []))
    script = f"tail --pid={owner_pid} -f /dev/null; {ps} | xargs -r {rm} >/dev/null 2>&1"
    return ["sh", "-c", script]


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def message(self) -> str:
        """The engine's own words: its last non-empty line of stderr (or stdout)."""
        lines = [line.strip() for line in (self.err or self.out).splitlines() if line.strip()]
        return lines[-1] if lines else f"exit code {self.code}"


async def run_engine(args: Sequence[str], timeout_s: float | None = None) -> Result:
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:  # the engine went missing since it was found
        return Result(-1, "", f"cannot run {args[0]}: {exc.strerror or exc}")
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        return Result(-1, "", f"{Path(args[0]).name} {args[1]} timed out after {timeout_s:g}s")
    assert process.returncode is not None
    return Result(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


async def check_engine(engine: Engine) -> None:
    """Raise EngineError, naming the fix, when the engine cannot start a container here.

    podman runs a command that does not exist in an empty root filesystem: the engine reports
    "not found" only after it has set up cgroups, rlimits and the OCI runtime, so no image is
    needed. docker is checked by asking its daemon for its version."""
    if not engine.podman:
        result = await run_engine([engine.path, "version", "--format", "{{.Server.Version}}"], 30)
        if result.code != 0:
            raise EngineError(
                f"docker cannot start containers: {result.message()} (start the docker daemon, "
                "or install podman: `apt-get install podman runc`)"
            )
        return
    with tempfile.TemporaryDirectory(prefix="tidal-engine-check-") as root:
        check = ["run", "--rm", "--network", "none", "--rootfs", root, _CHECK_COMMAND]
        result = await run_engine([engine.path, *check], 60)
    text = result.err + result.out
    if result.code == 127 and ("not found" in text or "no such file" in text):
        return
    raise EngineError(engine_fix(result.message()))


def engine_fix(message: str) -> str:
    """What to change on this host, given the engine's error starting a container."""
    lowered = message.lower()
    wanted = [
        key
        for key, words in (
            ("ulimits", ("rlimit", "ulimit")),
            ("cgroups", ("systemd", "dbus", "sd-bus", "cgroup")),
            ("runtime", ("crun", "oci runtime not found", "runtime not found")),
        )
        if any(word in lowered for word in words)
    ] or list(CONF_LINES)
    sections: dict[str, list[str]] = {}
    for key in wanted:
        section, line = CONF_LINES[key]
        sections.setdefault(section, []).append(line)
    conf = "\n".join(
        f"  {s}\n" + "\n".join(f"  {line}" for line in ls) for s, ls in sections.items()
    )
    runc = " (and `apt-get install runc`)" if "runtime" in wanted else ""
    return (
        f"podman cannot start containers on this host: {message}\n"
        f"Add to {CONTAINERS_CONF}{runc}:\n{conf}"
    )
