"""Process hygiene for the platform and its replicas (Linux; elsewhere these are no-ops).

- `make_non_dumpable`: the platform's memory and /proc/<pid>/environ become unreadable to other
  processes of the same user (replicas included), and it cannot be ptraced by them.
- `raise_open_files_limit`: the soft RLIMIT_NOFILE up to what the connection caps need (as Go
  raises it to the hard limit at start).
- `ReplicaRecords`: every replica's process group, recorded in the data dir with the leader's
  start time, so that a platform restarted after a crash (kill -9 leaves a replica's own children
  running) kills whatever the previous run left. Recorded groups are killed, never adopted: the
  restarted platform starts fresh replicas from the store, as it does anyway.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38


def _load_prctl() -> Callable[..., int] | None:
    # Resolved here, in the parent: looking a symbol up in a forked child of a threaded process
    # could deadlock on the loader's lock.
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


prctl = _load_prctl()


def make_non_dumpable() -> bool:
    """Mark this process non-dumpable (PR_SET_DUMPABLE 0): /proc/<pid>/environ, mem and maps
    become root-owned and ptrace needs CAP_SYS_PTRACE. Children get their own setting back at
    exec, so replicas are unaffected. Returns whether it took effect."""
    if prctl is None:
        return False
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 and prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft limit on open files towards `wanted` (never past the hard limit, never
    down); returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> tuple[int, int] | None:
    """(process group, start time in clock ticks since boot) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    if fields[0] == "Z":
        return None
    return int(fields[2]), int(fields[19])


def start_ticks(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat[1]


def group_members(pgid: int, since_ticks: int) -> list[int]:
    """Live processes in group `pgid` started no earlier than `since_ticks`."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[0] == pgid and stat[1] >= since_ticks:
                members.append(int(entry))
    return members


class ReplicaRecords:
    """One small JSON file per running replica under `directory`: written at start, removed
    once the replica's whole group is gone."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._boot = boot_id()

    def record(self, replica_id: str, pid: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        entry = {"replica": replica_id, "pgid": pid, "start": start_ticks(pid), "boot": self._boot}
        path = self.directory / f"{replica_id}.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f)
        tmp.replace(path)

    def forget(self, replica_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{replica_id}.json").unlink()

    def reap(self) -> list[str]:
        """Kill every recorded group still running from an earlier run (after a crash) and
        drop the records; returns one line per group killed."""
        if not self.directory.is_dir() or not sys.platform.startswith("linux"):
            return []
        killed = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                entry = json.loads(path.read_text())
                pgid, since = int(entry["pgid"]), int(entry["start"])
                same_boot = entry.get("boot") == self._boot
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            if same_boot and self._ours(pgid, since):
                members = _kill_group(pgid, since)
                if members:
                    killed.append(f"{entry['replica']}: process group {pgid} {members}")
            path.unlink(missing_ok=True)
        for line in killed:
            log.warning("killed what a previous run left: %s", line)
        return killed

    @staticmethod
    def _ours(pgid: int, since: int) -> bool:
        # A live leader with another start time means the number was reused: not ours. With the
        # leader gone, the group number cannot be reused while any member lives.
        leader = start_ticks(pgid)
        return leader is None or leader == since


def _kill_group(pgid: int, since: int) -> list[int]:
    """SIGKILL the group until no member is left (a member may fork while we look)."""
    seen: list[int] = []
    for _ in range(20):
        members = group_members(pgid, since)
        if not members:
            break
        seen += [m for m in members if m not in seen]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.01)
    return seen
