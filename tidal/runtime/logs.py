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
from collections.abc import Container, Iterable
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
