"""Replica logs: size-capped files rotated as `x.log`, `x.log.1`, … and read back across them.

A replica's output is cut at `max_bytes` per file whatever its lines, and `tail_lines` reads the
files as one stream (oldest first), so a line split by a rotation comes back whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType


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
