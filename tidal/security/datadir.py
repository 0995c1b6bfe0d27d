"""The data directory: owner-only modes, one platform at a time, the admin token.

The directory is 0700 and everything in it 0600 (the state holds every manifest's `env`); a
directory left by an older tidal with wider modes is narrowed at start. A second `tidal up` on
the same directory would run a second set of replicas on the same state, so the first holds an
exclusive lock (fcntl.flock, released by the kernel even on kill -9) until it exits.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

TOKEN_FILE = "admin-token"
LOCK_FILE = "tidal.lock"


class DataDirInUse(Exception):
    """Another live tidal holds this data directory."""


def prepare(data_dir: Path) -> None:
    """Create the directory 0700 and narrow what is in it: directories 0700, files 0600."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o700, follow_symlinks=False)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


class DataDirLock:
    """An exclusive lock on the data directory for the life of this process."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"data dir {self.path.parent} is in use by another tidal (pid {holder}); "
                "stop it first, or start this one with another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def ensure_token(data_dir: Path) -> str:
    """The admin token stored in the data dir, created (0600, 256 random bits) on first start."""
    path = data_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if token:
            return token
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    return token
