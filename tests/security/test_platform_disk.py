"""The data dir of a real `tidal up`: owner-only, one platform at a time, and a full disk
that changes nothing the gateway sees. The alias bomb goes through the real CLI."""

from __future__ import annotations

import errno
import os
import resource
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import Platform, hello_service, host

BOMB = "\n".join(
    [f'{chr(97)}: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"{chr(97 + i)}: &{chr(97 + i)} [{', '.join(['*' + chr(96 + i)] * 9)}]" for i in range(1, 9)]
)


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_data_dir_is_owner_only_even_when_it_was_not(tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    (data / "tidal.db").touch(mode=0o644)
    os.chmod(data / "tidal.db", 0o644)
    platform = Platform(tmp_path).start()
    try:
        platform.apply(hello_service("private", env={"SECRET": "s3cret"}))
        platform.wait_ready("private")
        found = modes(data)
    finally:
        platform.stop()
    assert found["."] == 0o700
    for name in ("tidal.db", "tidal.db-wal", "tidal.db-shm", "admin-token", "tidal.lock"):
        assert found[name] == 0o600, (name, oct(found[name]))
    logs = [name for name in found if name.endswith(".log")]
    assert logs, found
    assert all(found[name] == 0o600 for name in logs), {n: oct(found[n]) for n in logs}
    assert all(mode & 0o077 == 0 for mode in found.values()), found


def test_one_platform_per_data_dir(tmp_path: Path):
    first = Platform(tmp_path).start()
    try:
        second = Platform(tmp_path)
        with pytest.raises(AssertionError, match="in use by another tidal"):
            second.start()
        assert second.process is not None and second.process.wait(timeout=10) == 1
        pid = first.process.pid if first.process else None
        assert f"pid {pid}" in second.log_path.read_text()
        first.stop(kill=True)  # the kernel drops the lock with the process
        second.process = None
        second.start()
        second.stop()
    finally:
        first.stop()


def test_an_alias_bomb_is_refused_quickly_with_bounded_memory(tmp_path: Path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    assert len(BOMB) < 600  # the was 541 bytes; it expands to 9^9 strings

    def at_most_1_gib() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = subprocess.run(
        [sys.executable, "-m", "tidal", "apply", "--dry-run", "-f", str(bomb)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=at_most_1_gib,
    )
    assert result.returncode == 1
    assert "expands to more than 100000 nodes" in result.stderr, result.stderr


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); see the in-process tests")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write until the file system has no byte left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_during_apply_and_delete_changes_nothing(tmp_path: Path, small_disk: Path):
    platform = Platform(tmp_path)
    platform.data_dir = small_disk / "data"
    platform.start()
    try:
        platform.apply(hello_service("kept"))
        platform.wait_ready("kept")
        filler = fill(small_disk)

        big = hello_service("added", annotations={"note": "x" * 200_000})
        result = platform.apply(big, check=False)
        assert result.returncode == 1
        assert "state store full" in result.stderr and "Internal Server Error" not in result.stderr
        names = [s["metadata"]["name"] for s in platform.get_json("services")["items"]]
        assert names == ["kept"]
        assert platform.request(host("added"))[0] == 404

        result = platform.cli("delete", "service", "kept", check=False)
        assert result.returncode == 1 and "state store full" in result.stderr, result.stderr
        status, headers, _ = platform.request(host("kept"))
        assert status == 200 and headers["X-Tidal-Revision"] == "kept-00001"
        route = platform.get_json("routes", "kept")
        assert route["status"]["traffic"][0]["percent"] == 100

        filler.unlink()
        platform.cli("delete", "service", "kept")
        assert platform.request(host("kept"))[0] == 404
        platform.apply(big)
        platform.wait_ready("added")
    finally:
        platform.stop()
