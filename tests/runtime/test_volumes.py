"""A container replica's volumes on the host and on the engine's command line
(tidal.runtime.volumes, tidal.runtime.engine.mount_args; docs/containers.md#volumes)."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from tests.runtime.test_container_args import replica_spec
from tidal.runtime.base import MountSpec, ReplicaSpec, VolumeSpec
from tidal.runtime.engine import mount_args
from tidal.runtime.volumes import (
    VolumeError,
    limited,
    mount_sources,
    over_limit,
    refresh_files,
    remove_volumes,
    used_bytes,
    write_volumes,
)

VOLUMES = (
    VolumeSpec("token", {"token": (b"s3cret", 0o400), "nested/dir/key": (b"k", 0o644)}),
    VolumeSpec("cache"),
    VolumeSpec("shm", memory=True, size_limit=64 * 2**20),
)
MOUNTS = (
    MountSpec("token", "/etc/hf", read_only=True),
    MountSpec("token", "/etc/one-key", read_only=True, sub_path="nested/dir/key"),
    MountSpec("cache", "/models"),
    MountSpec("cache", "/hub, the cache", sub_path="hub"),
    MountSpec("shm", "/dev/shm"),
)


def with_volumes() -> ReplicaSpec:
    return dataclasses.replace(replica_spec(), volumes=VOLUMES, mounts=MOUNTS)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_volumes_are_written_private_to_tidal_and_open_to_the_container(tmp_path: Path) -> None:
    root = tmp_path / "volumes" / "web-00001-abc123"
    directories = write_volumes(with_volumes(), root, tmp_path / "claims")
    assert directories == {"token": root / "token", "cache": root / "cache"}  # shm: a tmpfs
    assert mode(root) == 0o700  # a Secret's files are tidal's user's on the host
    assert (root / "token" / "token").read_bytes() == b"s3cret"
    assert mode(root / "token" / "token") == 0o400
    assert (root / "token" / "nested" / "dir" / "key").read_bytes() == b"k"
    assert mode(root / "cache") == 0o777  # any user the image runs as may write, as in Kubernetes
    sources = mount_sources(MOUNTS, directories)
    assert (root / "cache" / "hub").is_dir()  # a subPath that is not there is made
    assert sources["/hub, the cache"] == (root / "cache" / "hub").resolve()
    assert "/dev/shm" not in sources  # a tmpfs of the engine's
    assert remove_volumes(root) and not root.exists()


def test_a_volume_that_cannot_be_written_says_which(tmp_path: Path) -> None:
    clash = VolumeSpec("bad", {"a": (b"file", 0o644), "a/b": (b"under a file", 0o644)})
    spec = dataclasses.replace(replica_spec(), volumes=(clash,), mounts=(MountSpec("bad", "/x"),))
    with pytest.raises(VolumeError, match="cannot write volume bad: "):
        write_volumes(spec, tmp_path / "r", tmp_path / "claims")


def test_mounts_are_bind_mounts_of_their_sources_or_a_tmpfs(tmp_path: Path) -> None:
    sources = {
        "/etc/hf": tmp_path / "token",
        "/etc/one-key": tmp_path / "token/nested/dir/key",
        "/models": tmp_path / "cache",
        "/hub, the cache": tmp_path / "cache/hub",
    }
    args = mount_args(VOLUMES, MOUNTS, sources)
    assert args[::2] == ["--mount"] * 5
    assert args[1::2] == [
        f"type=bind,source={tmp_path}/token,destination=/etc/hf,readonly=true",
        f"type=bind,source={tmp_path}/token/nested/dir/key,destination=/etc/one-key,readonly=true",
        f"type=bind,source={tmp_path}/cache,destination=/models",
        # Both engines read the value as CSV: a comma in a path is quoted.
        f'type=bind,source={tmp_path}/cache/hub,"destination=/hub, the cache"',
        f"type=tmpfs,destination=/dev/shm,tmpfs-mode=1777,tmpfs-size={64 * 2**20}",
    ]


def test_a_sub_path_may_not_lead_out_of_its_volume(tmp_path: Path) -> None:
    """The kubelet's subPath escape: a container writes a symbolic link into a claim it shares
    with later replicas; a later replica that mounts it by subPath must not get the host's
    folder the link points to."""
    claims = tmp_path / "claims"
    shared = VolumeSpec("models", claim="model-cache")
    escape = dataclasses.replace(
        replica_spec(),
        volumes=(shared,),
        mounts=(MountSpec("models", "/models", sub_path="evil/etc"),),
    )
    directories = write_volumes(escape, tmp_path / "r1", claims)
    (directories["models"] / "evil").symlink_to("/")  # what a first replica left
    with pytest.raises(VolumeError, match="subPath 'evil/etc' of volume models leads out"):
        mount_sources(escape.mounts, directories)
    inside = dataclasses.replace(escape, mounts=(MountSpec("models", "/m", sub_path="a/b"),))
    (directories["models"] / "a").mkdir()
    (directories["models"] / "link").symlink_to("a")  # a link inside the volume is fine
    via_link = dataclasses.replace(escape, mounts=(MountSpec("models", "/m", sub_path="link"),))
    models = directories["models"]
    assert mount_sources(inside.mounts, directories)["/m"] == (models / "a/b").resolve()
    assert mount_sources(via_link.mounts, directories)["/m"] == (models / "a").resolve()


def test_an_empty_dir_over_its_size_limit_is_named_in_the_kubelets_words(tmp_path: Path) -> None:
    limited_spec = dataclasses.replace(
        replica_spec(),
        volumes=(VolumeSpec("cache", size_limit=64 * 2**10), VolumeSpec("scratch")),
        mounts=(MountSpec("cache", "/cache"), MountSpec("scratch", "/scratch")),
    )
    assert limited(limited_spec) and not limited(with_volumes())  # shm's limit is tmpfs's
    directories = write_volumes(limited_spec, tmp_path / "r", tmp_path / "claims")
    (directories["scratch"] / "big").write_bytes(b"x" * 2**20)  # no limit there
    (directories["cache"] / "small").write_bytes(b"x" * 2**10)
    assert over_limit(limited_spec, directories) is None
    (directories["cache"] / "nested").mkdir()
    (directories["cache"] / "nested" / "big").write_bytes(b"x" * 2**17)
    assert used_bytes(directories["cache"]) >= 2**17 + 2**10
    assert over_limit(limited_spec, directories) == (
        'Usage of EmptyDir volume "cache" exceeds the limit "64Ki".'
    )


def test_refreshed_files_replace_the_old_ones_whole(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write_volumes(with_volumes(), root, tmp_path / "claims")
    token = root / "token" / "token"
    inode = token.stat().st_ino
    changed = (
        VolumeSpec("token", {"token": (b"rotated", 0o400), "added": (b"new key", 0o400)}),
        VolumeSpec("cache"),  # an emptyDir is the replica's own: left alone
    )
    (root / "cache" / "model.bin").write_bytes(b"weights")
    refresh_files(changed, root)
    assert token.read_bytes() == b"rotated" and mode(token) == 0o400
    assert token.stat().st_ino != inode  # renamed over, never rewritten in place
    assert (root / "token" / "added").read_bytes() == b"new key"
    assert not (root / "token" / "nested" / "dir" / "key").exists()  # its key went
    assert (root / "cache" / "model.bin").read_bytes() == b"weights"
    assert sorted(p.name for p in (root / "token").iterdir() if p.name.startswith(".")) == []


def test_a_claims_folder_outlives_the_replica(tmp_path: Path) -> None:
    claims = tmp_path / "claims"
    spec = dataclasses.replace(
        replica_spec(),
        volumes=(VolumeSpec("models", claim="model-cache"),),
        mounts=(MountSpec("models", "/models"),),
    )
    root = tmp_path / "volumes" / "r1"
    folder = write_volumes(spec, root, claims)["models"]
    assert folder == claims / "default" / "model-cache" and mode(folder) == 0o777
    assert mode(claims) == 0o700
    (folder / "weights.bin").write_bytes(b"downloaded once")
    assert remove_volumes(root) and folder.is_dir()  # the replica's folder goes, the claim stays
    again = write_volumes(spec, tmp_path / "volumes" / "r2", claims)["models"]
    assert (again / "weights.bin").read_bytes() == b"downloaded once"
