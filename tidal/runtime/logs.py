"""Replica logs: size-capped files rotated as `x.log`, `x.log.1`, … and read back across them.

A replica's output is cut at `max_bytes` per file whatever its lines, and `tail_lines` reads the
files as one stream (oldest first), so a line split by a rotation comes back whole. A revision's
folder keeps the logs of its running replicas and of its last few stopped ones
(`prune_stopped`), like the kubelet, which keeps a pod's previous container: a service that scales
to zero and back all day must not fill the disk, nor `tidal logs`, with replicas long gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Container, Iterable
from pathlib import Path
from types import TracebackType

from tidal.api.config import LogLimits

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
FLUSH_WAIT_S = 1.0  # after a replica exits, for its last output to reach the log


def rotated(path: Path, index: int) -> Path:
    """`path` itself for 0, else `path.<index>` (higher is older)."""
    return path if index == 0 else path.with_name(f"{path.name}.{index}")


class RotatingLog:
    """Appends bytes to `path`, keeping at most `max_files` files of at most `max_bytes` each."""

    def __init__(self, path: Path, max_bytes: int, max_files: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_files = max_files
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = self.max_bytes - self._size
            if room <= 0:
                self._rotate()
                continue
            written = os.write(self._fd, view[:room])
            self._size += written
            view = view[written:]

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        if self.max_files > 1:
            for index in range(self.max_files - 1, 0, -1):
                older = rotated(self.path, index - 1)
                if older.exists():
                    older.replace(rotated(self.path, index))
        else:
            self.path.unlink(missing_ok=True)
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RotatingLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def tail_lines(path: Path, lines: int, block: int = 8192) -> list[str]:
    """The last `lines` lines of a log and its rotated files, read backwards in blocks."""
    if lines <= 0:
        return []
    data = b""
    index = 0
    # One newline more than needed, so the first kept line is whole.
    while data.count(b"\n") <= lines:
        try:
            f = rotated(path, index).open("rb")
        except FileNotFoundError:
            if index == 0 and not rotated(path, 1).exists():
                return []
            if index > 0:
                break
            index += 1
            continue
        with f:
            pos = f.seek(0, os.SEEK_END)
            while pos > 0 and data.count(b"\n") <= lines:
                step = min(block, pos)
                pos -= step
                f.seek(pos)
                data = f.read(step) + data
        index += 1
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


async def pump(stream: asyncio.StreamReader, path: Path, limits: LogLimits) -> None:
    """Copy a replica's output into its rotating log until the pipe closes (it exited); the
    log's modification time is then the time it stopped (see `prune_stopped`)."""
    with RotatingLog(path, limits.max_bytes, limits.max_files) as out:
        while data := await stream.read(READ_SIZE):
            try:
                out.write(data)
            except OSError as exc:  # a full disk must not stop the replica: keep reading
                log.warning("cannot write the log %s: %s", path, exc)
    with contextlib.suppress(OSError):
        os.utime(path)


def prune_stopped(directory: Path, running: Iterable[Path], keep: int) -> None:
    """Remove the logs in `directory` of stopped replicas but the `keep` that stopped last (by
    modification time, which `pump` sets at the exit). `running`: the log paths of the replicas
    that run (anywhere); their logs stay."""
    live = {path.name for path in running if path.parent == directory}
    newest: dict[str, float] = {}  # log name -> newest mtime of it and its rotated files
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            stem, dot_log, _ = entry.name.partition(".log")
            name = stem + dot_log
            if dot_log and name not in live:
                with contextlib.suppress(FileNotFoundError):
                    mtime = entry.stat().st_mtime
                    newest[name] = max(mtime, newest.get(name, mtime))
    stopped = sorted(newest, key=newest.__getitem__, reverse=True)
    for name in stopped[keep:]:
        for path in directory.glob(f"{name}*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def remove_logs(directory: Path) -> None:
    """A revision's log folder, once the revision is gone."""
    shutil.rmtree(directory, ignore_errors=True)


def remove_logs_of_others(root: Path, revisions: Container[tuple[str, str]]) -> None:
    """Remove the `root/NAMESPACE/REVISION` log folders of revisions not in `revisions`
    ((namespace, name) pairs): ones deleted while their replicas were still stopping when the
    platform stopped, or by a version that left their logs behind."""
    for namespace in _folders(root):
        for revision in _folders(namespace):
            if (namespace.name, revision.name) not in revisions:
                remove_logs(revision)


def _folders(path: Path) -> list[Path]:
    try:
        return [entry for entry in path.iterdir() if entry.is_dir()]
    except FileNotFoundError:
        return []


FOLLOW_CHUNK = 1 << 20  # read from one log per poll, at most


class LogFollower:
    """What the replicas of some log folders write from now on, poll by poll (`tidal logs -f`).

    Each live `*.log` is read from where the last poll stopped. A rotation is noticed by the file
    changing (another inode): the rest of the old one is read from `.log.1` first. Only whole lines
    are returned, so that output of two replicas never interleaves within a line."""

    def __init__(self, folders: Callable[[], Iterable[Path]]) -> None:
        self.folders = folders
        self._read: dict[Path, tuple[int, int]] = {}  # log -> (inode, bytes read)
        self._partial: dict[Path, bytes] = {}
        for path in self._logs():  # from now on: what is there already is not new
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                self._read[path] = (st.st_ino, st.st_size)

    def _logs(self) -> list[Path]:
        return sorted(path for folder in self.folders() for path in folder.glob("*.log"))

    def poll(self) -> list[tuple[Path, bytes]]:
        """(log, whole lines) written since the last poll; of the live file at most
        `FOLLOW_CHUNK` per poll, the rest at the next."""
        found: list[tuple[Path, bytes]] = []
        logs = self._logs()
        for path in logs:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            inode, offset = self._read.get(path, (st.st_ino, 0))
            data = b""
            if inode != st.st_ino:  # rotated since the last poll: the rest of the old file
                data = _read_from(rotated(path, 1), offset, inode)  # (at most logs.max-size)
                offset = 0
            new = _read_from(path, offset, st.st_ino, FOLLOW_CHUNK)
            self._read[path] = (st.st_ino, offset + len(new))
            data = self._partial.pop(path, b"") + data + new
            whole, newline, rest = data.rpartition(b"\n")
            if len(rest) >= FOLLOW_CHUNK:  # a "line" this long is passed on as it is
                whole, newline, rest = data, b"", b""
            if rest:
                self._partial[path] = rest
            if whole or newline:
                found.append((path, whole + newline))
        for gone in set(self._read) - set(logs):  # pruned or removed with its revision
            self._read.pop(gone)
            self._partial.pop(gone, None)
        return found


def _read_from(path: Path, offset: int, inode: int, limit: int = -1) -> bytes:
    """Up to `limit` bytes (-1: all) of `path` from `offset`, if it is still the file `inode`."""
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_ino != inode:
                return b""
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""
