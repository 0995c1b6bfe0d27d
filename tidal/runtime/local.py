"""Replicas as child processes of the platform on this machine.

Each replica is `spec.command` run in its own session (so a stop signals its whole process group),
with PORT set to a free loopback port, its output read through a pipe into `spec.log_path`
(rotated by size, `LogLimits`), and readiness probed as Knative's queue-proxy does
(`tidal.runtime.probe`). On Linux a replica's first process is also killed when the platform
process dies; its process group is recorded in the data dir (`ReplicaRecords`) so that a
platform restarted after a crash kills whatever else of it is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from tidal.api.config import LogLimits
from tidal.runtime.base import (
    ExecCommand,
    ExecProbe,
    PortUnavailable,
    Replica,
    ReplicaListener,
    ReplicaSpec,
    ReplicaState,
    SecurityContext,
    VolumeSpec,
    notify,
)
from tidal.runtime.children import ChildStopping
from tidal.runtime.exec_probe import exec_failure
from tidal.runtime.expansion import expand_all
from tidal.runtime.hygiene import PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, ReplicaRecords, prctl
from tidal.runtime.logs import FLUSH_WAIT_S, prune_stopped, pump, tail_lines

HOST = "127.0.0.1"
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "PYTHONPATH")


class SecurityContextError(Exception):
    """The replica's securityContext cannot be honoured here; the message says why."""


@dataclass(frozen=True)
class Credentials:
    """Who the replica runs as, when not as the platform's own user."""

    uid: int
    gid: int


def credentials(security: SecurityContext) -> Credentials | None:
    """The uid/gid a replica switches to, or None to stay the platform's user. Raises
    SecurityContextError when the security context cannot be honoured."""
    uid, gid = security.run_as_user, security.run_as_group
    effective = os.geteuid() if uid is None else uid
    if security.run_as_non_root and effective == 0:
        who = "runAsUser is 0" if uid is not None else "tidal runs as root and no runAsUser is set"
        raise SecurityContextError(
            f"securityContext.runAsNonRoot: the replica would run as root ({who})"
        )
    if uid is None and gid is None:
        return None
    if uid is None:
        uid = os.geteuid()
    if gid is None:  # the user's primary group, else a group of the same number
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = uid
    if (uid, gid) == (os.geteuid(), os.getegid()):
        return None  # already so: nothing to switch (and no right to drop groups)
    if os.geteuid() != 0:
        raise SecurityContextError(
            f"securityContext: cannot run as uid {uid} gid {gid}: tidal runs as uid "
            f"{os.geteuid()} and only root can switch users"
        )
    return Credentials(uid, gid)


def _preexec(
    parent_pid: int, creds: Credentials | None, no_new_privs: bool
) -> Callable[[], None] | None:
    """A preexec_fn: die with the platform (PDEATHSIG), then drop to `creds`, then
    no_new_privs.

    The death signal fires when the *thread* that forked the child exits, so replicas must be
    started from a thread that lives as long as the platform (the event loop's thread does).
    """
    if prctl is None and creds is None:
        return None
    prctl_ = prctl

    def preexec() -> None:
        if prctl_ is not None:
            prctl_(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os.kill(os.getpid(), signal.SIGKILL)
        if creds is not None:
            os.setgroups([])
            os.setgid(creds.gid)
            os.setuid(creds.uid)
        if no_new_privs and prctl_ is not None:
            prctl_(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)

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
    log_task: asyncio.Task[None] | None = None
    probe_task: asyncio.Task[None] | None = None
    liveness_task: asyncio.Task[None] | None = None
    exit_task: asyncio.Task[None] | None = None
    stop_task: asyncio.Task[None] | None = None
    stopping: bool = False
    killed_for: str = ""


class LocalRuntime(ChildStopping):
    """Runs each replica as a child process on 127.0.0.1.

    A command starting with exactly `python` or `python3` runs with `sys.executable`, the
    interpreter tidal itself runs in, so replicas share its virtual environment and packages.
    The replica's environment is PATH, HOME, LANG and PYTHONPATH from the platform, then
    PYTHONUNBUFFERED=1, then `spec.env`, then CUDA_VISIBLE_DEVICES/NVIDIA_VISIBLE_DEVICES when
    `spec.devices` is set, and PORT last.
    """

    requires_command = True
    keeps_log_files = True

    def __init__(
        self,
        close_grace_s: float = 5.0,
        records: ReplicaRecords | None = None,
        log_limits: LogLimits | None = None,
    ) -> None:
        self.close_grace_s = close_grace_s
        self.records = records
        self.log_limits = log_limits or LogLimits()
        self._children: dict[str, _Child] = {}

    def reap_leftovers(self) -> list[str]:
        """Kill the replica process groups a crashed earlier run left (see ReplicaRecords)."""
        return [] if self.records is None else self.records.reap()

    async def start(self, spec: ReplicaSpec, on_change: ReplicaListener) -> Replica:
        replica = Replica(spec=spec, host=HOST, port=free_port(), started_at=time.monotonic())
        running = (c.replica.spec.log_path for c in self._children.values())
        prune_stopped(spec.log_path.parent, running, self.log_limits.max_stopped)
        try:
            creds = credentials(spec.security)
            process = await self._spawn(spec, replica.port, creds)
        except SecurityContextError as err:
            replica.state = ReplicaState.FAILED
            replica.reason = str(err)
            notify(on_change, replica)
            return replica
        except (OSError, ValueError, subprocess.SubprocessError) as err:
            # ValueError: an empty command or a NUL in it; SubprocessError: the preexec failed
            replica.state = ReplicaState.FAILED
            replica.reason = _spawn_failure(spec, err)
            notify(on_change, replica)
            return replica
        replica.pid = process.pid
        if self.records is not None:
            self.records.record(spec.replica_id, process.pid)
        child = _Child(replica, on_change, process)
        self._children[spec.replica_id] = child
        notify(on_change, replica)
        assert process.stdout is not None
        child.log_task = asyncio.create_task(pump(process.stdout, spec.log_path, self.log_limits))
        self._watch_probes(child)
        child.exit_task = asyncio.create_task(self._await_exit(child))
        return replica

    async def _spawn(
        self, spec: ReplicaSpec, port: int, creds: Credentials | None
    ) -> asyncio.subprocess.Process:
        env = replica_env(spec, port)
        return await asyncio.create_subprocess_exec(
            *resolve_command(expand_all(spec.command, env)),
            env=env,
            cwd=spec.working_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_preexec(os.getpid(), creds, not spec.security.allow_privilege_escalation),
        )

    async def _await_exit(self, child: _Child) -> None:
        code = await child.process.wait()
        await self._end_probes(child)
        # Leftovers of the app (workers it forked) share its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, signal.SIGKILL)
        if child.log_task is not None:  # its last lines, for the reason of a failure
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(child.log_task), FLUSH_WAIT_S)
        replica = child.replica
        if self.records is not None:
            self.records.forget(replica.replica_id)
        replica.exit_code = code
        if child.stopping:
            replica.state = ReplicaState.STOPPED
        else:
            replica.state = ReplicaState.FAILED
            replica.reason = child.killed_for or f"exited with code {code}"
        self._children.pop(replica.replica_id, None)
        notify(child.on_change, replica)

    def _exec_probe(self, child: _Child) -> ExecProbe:
        async def run(command: tuple[str, ...], timeout_s: float) -> str | None:
            how = self.exec_command(child.replica, "", command)
            return await exec_failure(
                list(how.argv),
                command,
                timeout_s,
                env=how.env,
                cwd=how.cwd,
                preexec_fn=how.preexec_fn,
            )

        return run

    def exec_command(
        self, replica: Replica, container: str, command: tuple[str, ...], tty: bool = False
    ) -> ExecCommand:
        """A command (an exec probe's, or `kubectl exec`'s) runs as the replica does: its
        environment, folder and user; a process replica has one container."""
        spec = replica.spec
        return ExecCommand(
            tuple(resolve_command(command)),
            replica_env(spec, replica.port),
            spec.working_dir,
            _preexec(
                os.getpid(),
                credentials(spec.security),
                not spec.security.allow_privilege_escalation,
            ),
        )

    async def connect_inside(self, replica: Replica, port: int) -> socket.socket:
        raise PortUnavailable(
            "a process replica shares this machine's network: only its serving port can be "
            "forwarded (run it in a container for a network of its own)"
        )

    async def _terminate(self, child: _Child, grace_s: float) -> None:
        assert child.exit_task is not None and child.probe_task is not None
        child.probe_task.cancel()
        _signal_group(child.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(child.exit_task), grace_s)
        except TimeoutError:
            _signal_group(child.process.pid, signal.SIGKILL)
            await child.exit_task

    def refresh_volumes(self, replica: Replica, volumes: tuple[VolumeSpec, ...]) -> None:
        """A process has no volumes (tidal.controller.machine_limits)."""

    def log_tail(self, replica_spec: ReplicaSpec, lines: int) -> list[str]:
        return tail_lines(replica_spec.log_path, lines)

    async def close(self) -> None:
        await self.stop_all()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _spawn_failure(spec: ReplicaSpec, err: Exception) -> str:
    # uvloop's errors do not name the missing file, so tell a bad command from a bad directory here.
    command = spec.command[0] if spec.command else ""
    if spec.working_dir is not None and not os.path.isdir(spec.working_dir):
        return f"cannot start {command!r}: working directory {spec.working_dir!r} does not exist"
    return f"cannot start {command!r}: {getattr(err, 'strerror', None) or err}"
