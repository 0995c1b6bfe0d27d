"""Replicas as child processes of the platform on this machine.

Each replica is `spec.command` run in its own session (so a stop signals its whole process group),
with PORT set to a free loopback port, its output appended to `spec.log_path`, and readiness probed
as Knative's queue-proxy does (`tidal.runtime.probe`). On Linux a replica is also killed when the
platform process dies, so a crashed or `kill -9`ed `tidal up` leaves no orphans behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tidal.runtime.base import Replica, ReplicaListener, ReplicaSpec, ReplicaState
from tidal.runtime.probe import watch_readiness

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "PYTHONPATH")
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    # Resolved here, in the parent: looking a symbol up in a forked child of a threaded process
    # could deadlock on the loader's lock.
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGKILL the child when the platform dies.

    The signal fires when the *thread* that forked the child exits, so replicas must be started
    from a thread that lives as long as the platform (the event loop's thread does).
    """
    if _prctl is None:
        return None
    prctl = _prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def replica_env(spec: ReplicaSpec, port: int) -> dict[str, str]:
    """A small, explicit environment: the platform's own variables do not leak into replicas."""
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    env["PYTHONUNBUFFERED"] = "1"  # so a Python app's prints reach the log as they happen
    env.update(spec.env)
    if spec.devices:
        env["CUDA_VISIBLE_DEVICES"] = env["NVIDIA_VISIBLE_DEVICES"] = ",".join(spec.devices)
    env["PORT"] = str(port)
    return env


def resolve_command(command: tuple[str, ...]) -> list[str]:
    """`python`/`python3` run with tidal's own interpreter, so replicas see tidal's packages."""
    if not command:
        raise ValueError("empty command")
    if command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return list(command)


@dataclass
class _Child:
    replica: Replica
    on_change: ReplicaListener
    process: asyncio.subprocess.Process
    probe_task: asyncio.Task[None] | None = None
    exit_task: asyncio.Task[None] | None = None
    stop_task: asyncio.Task[None] | None = None
    stopping: bool = False


class LocalRuntime:
    """Runs each replica as a child process on 127.0.0.1.

    A command starting with exactly `python` or `python3` runs with `sys.executable`, the
    interpreter tidal itself runs in, so replicas share its virtual environment and packages.
    The replica's environment is PATH, HOME, LANG and PYTHONPATH from the platform, then
    PYTHONUNBUFFERED=1, then `spec.env`, then CUDA_VISIBLE_DEVICES/NVIDIA_VISIBLE_DEVICES when
    `spec.devices` is set, and PORT last.
    """

    requires_command = True

    def __init__(self, close_grace_s: float = 5.0) -> None:
        self.close_grace_s = close_grace_s
        self._children: dict[str, _Child] = {}

    async def start(self, spec: ReplicaSpec, on_change: ReplicaListener) -> Replica:
        replica = Replica(spec=spec, host=HOST, port=free_port(), started_at=time.monotonic())
        try:
            process = await self._spawn(spec, replica.port)
        except (OSError, ValueError) as err:  # ValueError: an empty command or a NUL in it
            replica.state = ReplicaState.FAILED
            replica.reason = _spawn_failure(spec, err)
            _notify(on_change, replica)
            return replica
        replica.pid = process.pid
        child = _Child(replica, on_change, process)
        self._children[spec.replica_id] = child
        _notify(on_change, replica)
        child.probe_task = asyncio.create_task(self._probe(child))
        child.exit_task = asyncio.create_task(self._await_exit(child))
        return replica

    async def _spawn(self, spec: ReplicaSpec, port: int) -> asyncio.subprocess.Process:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(spec.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            return await asyncio.create_subprocess_exec(
                *resolve_command(spec.command),
                env=replica_env(spec, port),
                cwd=spec.working_dir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        finally:
            os.close(log_fd)

    async def _probe(self, child: _Child) -> None:
        replica = child.replica

        def ready() -> None:
            if self._may_report(child):
                replica.state = ReplicaState.READY
                if replica.ready_at is None:
                    replica.ready_at = time.monotonic()
                replica.ever_ready = True
                _notify(child.on_change, replica)

        def not_ready() -> None:
            if self._may_report(child):
                replica.state = ReplicaState.NOT_READY
                _notify(child.on_change, replica)

        await watch_readiness(replica.spec.probe, replica.host, replica.port, ready, not_ready)

    @staticmethod
    def _may_report(child: _Child) -> bool:
        # DRAINING is set by the controller; a probe result must not undo it.
        readiness_states = (ReplicaState.STARTING, ReplicaState.READY, ReplicaState.NOT_READY)
        return not child.stopping and child.replica.state in readiness_states

    async def _await_exit(self, child: _Child) -> None:
        code = await child.process.wait()
        if child.probe_task is not None:
            child.probe_task.cancel()
        # Leftovers of the app (workers it forked) share its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, signal.SIGKILL)
        replica = child.replica
        replica.exit_code = code
        if child.stopping:
            replica.state = ReplicaState.STOPPED
        else:
            replica.state = ReplicaState.FAILED
            replica.reason = f"exited with code {code}"
        self._children.pop(replica.replica_id, None)
        _notify(child.on_change, replica)

    async def stop(self, replica: Replica, grace_s: float) -> None:
        child = self._children.get(replica.replica_id)
        if child is None:
            return  # never started, or already exited
        if child.stop_task is None:
            child.stopping = True
            child.stop_task = asyncio.create_task(self._terminate(child, grace_s))
        await asyncio.shield(child.stop_task)

    async def _terminate(self, child: _Child, grace_s: float) -> None:
        assert child.exit_task is not None and child.probe_task is not None
        child.probe_task.cancel()
        _signal_group(child.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(child.exit_task), grace_s)
        except TimeoutError:
            _signal_group(child.process.pid, signal.SIGKILL)
            await child.exit_task

    def log_tail(self, replica_spec: ReplicaSpec, lines: int) -> list[str]:
        return tail_lines(replica_spec.log_path, lines)

    async def close(self) -> None:
        children = list(self._children.values())
        await asyncio.gather(*(self.stop(c.replica, self.close_grace_s) for c in children))


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _notify(on_change: ReplicaListener, replica: Replica) -> None:
    try:
        on_change(replica)
    except Exception:
        log.exception("replica listener failed for %s", replica.replica_id)


def _spawn_failure(spec: ReplicaSpec, err: OSError | ValueError) -> str:
    # uvloop's errors do not name the missing file, so tell a bad command from a bad directory here.
    command = spec.command[0] if spec.command else ""
    if spec.working_dir is not None and not os.path.isdir(spec.working_dir):
        return f"cannot start {command!r}: working directory {spec.working_dir!r} does not exist"
    return f"cannot start {command!r}: {getattr(err, 'strerror', None) or err}"


def tail_lines(path: Path, lines: int, block: int = 8192) -> list[str]:
    """The last `lines` lines of a file, read backwards from its end in blocks."""
    if lines <= 0:
        return []
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        data = b""
        pos = end
        # One newline more than needed, so the first kept line is whole.
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    text = data.decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]
