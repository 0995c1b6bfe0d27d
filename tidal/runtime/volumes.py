"""A container replica's volumes on this machine (docs/containers.md#volumes).

Each volume but an in-memory emptyDir is a directory under the replica's own folder, written
before its containers start and bind-mounted into each container that mounts it (so a sidecar
shares it with the server); an in-memory emptyDir is a tmpfs of the engine's instead. The
replica's folder is readable by tidal's user only (a Secret's files are in it); an emptyDir
inside it is writable by any user, as Kubernetes makes one, so that an image that runs as a user
of its own can write to it. Everything goes when the replica ends.

An on-disk emptyDir's `sizeLimit` is watched as the kubelet watches it: a replica whose files
there outgrow it is evicted (docs/containers.md#volumes).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from tidal.runtime.base import MountSpec, ReplicaSpec, VolumeSpec

CLAIMS_DIR = "claims"  # under the data dir: <namespace>/<claim>/, kept across replicas
PRIVATE = 0o700
EMPTY_DIR_MODE = 0o777
FILES_DIR_MODE = 0o755


class VolumeError(Exception):
    """A volume could not be written; says which, and why."""


def write_volumes(spec: ReplicaSpec, root: Path, claims: Path) -> dict[str, Path]:
    """Write the replica's on-disk volumes under `root`, and find its claims' folders under
    `claims`; each one's directory by name."""
    root.mkdir(mode=PRIVATE, parents=True, exist_ok=True)
    root.chmod(PRIVATE)
    directories: dict[str, Path] = {}
    for volume in spec.volumes:
        if volume.memory:
            continue
        if volume.claim:
            directories[volume.name] = claim_folder(claims, spec.namespace, volume.claim)
            continue
        directory = root / volume.name
        try:
            directory.mkdir(exist_ok=True)
            directory.chmod(FILES_DIR_MODE if volume.files else EMPTY_DIR_MODE)
            for relative, (content, mode) in volume.files.items():
                path = directory / relative
                path.parent.mkdir(mode=FILES_DIR_MODE, parents=True, exist_ok=True)
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                with os.fdopen(descriptor, "wb") as file:
                    file.write(content)
                path.chmod(mode)  # whatever the umask took away
        except OSError as exc:
            raise VolumeError(f"cannot write volume {volume.name}: {exc}") from None
        directories[volume.name] = directory
    return directories


def mount_sources(mounts: Sequence[MountSpec], directories: Mapping[str, Path]) -> dict[str, Path]:
    """What each of a container's bind mounts mounts, by mount path: its volume's folder, or
    the subPath in it.
    A subPath is resolved and must stay inside its volume: a symbolic link that a container left
    in a claim would otherwise lead the mount to any path of the host (the kubelet's subPath
    escape); the resolved path is what is mounted. One that is not there is made, as the
    kubelet makes it."""
    sources: dict[str, Path] = {}
    for mount in mounts:
        directory = directories.get(mount.volume)
        if directory is None:
            continue  # in memory: the engine's tmpfs
        if not mount.sub_path:
            sources[mount.path] = directory
            continue
        target = (directory / mount.sub_path).resolve()
        if not target.is_relative_to(directory.resolve()):
            raise VolumeError(
                f"subPath {mount.sub_path!r} of volume {mount.volume} leads out of the volume "
                "(through a symbolic link)"
            )
        try:
            if not target.exists():
                target.mkdir(parents=True)
        except OSError as exc:
            raise VolumeError(f"cannot make subPath {mount.sub_path!r}: {exc}") from None
        sources[mount.path] = target
    return sources


def claim_folder(claims: Path, namespace: str, claim: str) -> Path:
    """A claim's folder, made on first use (writable by any user, as an emptyDir) and kept
    across replicas, revisions and restarts: what its replicas write there stays."""
    folder = claims / namespace / claim
    if folder.is_dir():
        return folder
    try:
        claims.mkdir(mode=PRIVATE, parents=True, exist_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(EMPTY_DIR_MODE)
    except OSError as exc:
        raise VolumeError(f"cannot make the folder of claim {claim}: {exc}") from None
    return folder


def refresh_files(volumes: tuple[VolumeSpec, ...], root: Path) -> None:
    """Give the replica's Secret and ConfigMap volumes under `root` the files of `volumes`:
    each written beside its place and renamed over it (a reader sees the old file or the new
    one, never half of one), and files whose key went removed."""
    for volume in volumes:
        directory = root / volume.name
        if not volume.files or not directory.is_dir():
            continue
        for relative, (content, mode) in volume.files.items():
            path = directory / relative
            path.parent.mkdir(mode=FILES_DIR_MODE, parents=True, exist_ok=True)
            staged = path.with_name(f".{path.name}.tidal-new")
            descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(descriptor, "wb") as file:
                file.write(content)
            staged.chmod(mode)
            staged.replace(path)
        kept = {directory / relative for relative in volume.files}
        for path in [p for p in directory.rglob("*") if p.is_file() and p not in kept]:
            path.unlink()


def remove_volumes(root: Path) -> bool:
    """Remove a replica's (or every replica's) volumes; False when some of it remains (files a
    container's user made that tidal's user may not remove)."""
    shutil.rmtree(root, ignore_errors=True)
    return not root.exists()


def used_bytes(directory: Path) -> int:
    """The disk space the files under `directory` take (allocated blocks, as du counts them)."""
    total = 0
    for folder, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
            except OSError:  # removed while counted
                continue
    return total


def over_limit(spec: ReplicaSpec, directories: dict[str, Path]) -> str | None:
    """The kubelet's eviction message for the first on-disk emptyDir over its sizeLimit."""
    for volume in spec.volumes:
        directory = directories.get(volume.name)
        if volume.files or not volume.size_limit or directory is None:
            continue
        if used_bytes(directory) > volume.size_limit:
            limit = _quantity(volume.size_limit)
            return f'Usage of EmptyDir volume "{volume.name}" exceeds the limit "{limit}".'
    return None


def limited(spec: ReplicaSpec) -> bool:
    """Whether the replica has an on-disk emptyDir with a sizeLimit to watch."""
    return any(not v.memory and not v.files and v.size_limit for v in spec.volumes)


def _quantity(size: int) -> str:
    """A byte count as Kubernetes writes a quantity: 1Gi, 512Mi, or bytes."""
    for suffix, unit in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)
