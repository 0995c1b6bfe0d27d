"""Replica log files on their own: pruning a revision's folder, and following what replicas
write (`tidal logs -f`), across rotations and new replicas (tidal.runtime.logs)."""

from __future__ import annotations

import os
from pathlib import Path

from tidal.runtime.logs import LogFollower, RotatingLog, prune_stopped


def test_pruning_takes_rotated_files_along_and_spares_other_folders(tmp_path: Path) -> None:
    logs, other = tmp_path / "rev-1", tmp_path / "rev-2"
    for folder in (logs, other):
        folder.mkdir()
    for age, name in enumerate(["new.log", "new.log.1", "old.log", "old.log.1", "running.log"]):
        (logs / name).write_text("x")
        os.utime(logs / name, (1000 - 100 * age,) * 2)
    (other / "old.log").write_text("x")
    prune_stopped(logs, [logs / "running.log", other / "new.log"], keep=1)
    assert sorted(p.name for p in logs.iterdir()) == ["new.log", "new.log.1", "running.log"]
    assert [p.name for p in other.iterdir()] == ["old.log"]
    prune_stopped(tmp_path / "absent", [], keep=1)  # nothing logged yet: nothing to do


def test_the_follower_gives_whole_new_lines_of_old_and_new_logs(tmp_path: Path) -> None:
    folder = tmp_path / "hello-00001"
    folder.mkdir()
    first = folder / "a.log"
    first.write_bytes(b"before\n")
    follower = LogFollower(lambda: [folder, tmp_path / "not-yet"])
    assert follower.poll() == [], "what was there before is not new"
    with first.open("ab") as f:
        f.write(b"one\ntw")
    assert follower.poll() == [(first, b"one\n")], "half a line waits for its end"
    with first.open("ab") as f:
        f.write(b"o\n")
    (folder / "b.log").write_bytes(b"new replica\n")
    assert follower.poll() == [(first, b"two\n"), (folder / "b.log", b"new replica\n")]
    first.unlink()  # pruned
    assert follower.poll() == []


def test_the_follower_reads_across_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    lines = [f"line {i:04d}\n".encode() for i in range(1000)]
    with RotatingLog(path, max_bytes=4096, max_files=2) as out:
        follower = LogFollower(lambda: [tmp_path])
        got = b""
        for i, line in enumerate(lines):
            out.write(line)
            if i % 100 == 99:  # a poll now and then, a rotation (every ~370 lines) between
                got += b"".join(data for _, data in follower.poll())
    assert got == b"".join(lines)
