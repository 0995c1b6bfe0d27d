"""A revision's volumes with their contents filled in, as the kubelet fills them in when it
starts a pod (docs/containers.md#volumes).

A secret or configMap volume holds a file per key (or per `items` entry, at its path), with
`mode`, else the volume's `defaultMode`, else 0644; a projected volume holds the files of each of
its sources in turn. A reference that is not `optional` must find its object and every key its
`items` name; an `optional` one that does not leaves those files out. Contents are read when
a replica starts, and again for running replicas when one of their Secrets or ConfigMaps
changes (tidal.controller.platform), as the kubelet updates a pod's volumes.
"""

from __future__ import annotations

from collections.abc import Sequence

from tidal.api.config_objects import CONFIG_MAP, SECRET, contents_of
from tidal.api.service import KeyToPath, Volume, VolumeMount
from tidal.api.units import parse_quantity
from tidal.controller.environment import Lookup, UnresolvedReference
from tidal.runtime.base import MountSpec, VolumeSpec

DEFAULT_MODE = 0o644  # Kubernetes' defaultMode

# (kind, name, items, optional) of one Secret or ConfigMap a volume reads
_Source = tuple[str, str, Sequence[KeyToPath], bool]


def resolve_volumes(
    volumes: Sequence[Volume], namespace: str, lookup: Lookup
) -> tuple[VolumeSpec, ...]:
    """Every volume with its files; raise UnresolvedReference for the first reference that
    cannot be filled in."""
    resolved, problems = _resolve(volumes, namespace, lookup)
    if problems:
        raise UnresolvedReference(problems[0])
    return resolved


def missing_volume_references(
    volumes: Sequence[Volume], namespace: str, lookup: Lookup
) -> list[str]:
    """Why each reference that is not optional cannot be filled in now; empty when all can."""
    return _resolve(volumes, namespace, lookup)[1]


def reads(volumes: Sequence[Volume], kind: str, name: str) -> bool:
    """Whether any of the volumes takes files from this Secret or ConfigMap."""
    return any(
        (source_kind, source_name) == (kind, name)
        for volume in volumes
        for source_kind, source_name, _, _ in _sources(volume)[0]
    )


def mount_specs(mounts: Sequence[VolumeMount]) -> tuple[MountSpec, ...]:
    return tuple(
        MountSpec(m.name, m.mount_path, bool(m.read_only), m.sub_path or "") for m in mounts
    )


def _resolve(
    volumes: Sequence[Volume], namespace: str, lookup: Lookup
) -> tuple[tuple[VolumeSpec, ...], list[str]]:
    resolved: list[VolumeSpec] = []
    problems: list[str] = []
    for volume in volumes:
        if volume.persistent_volume_claim is not None:
            resolved.append(
                VolumeSpec(volume.name, claim=volume.persistent_volume_claim.claim_name)
            )
            continue
        if volume.empty_dir is not None:
            limit = volume.empty_dir.size_limit
            resolved.append(
                VolumeSpec(
                    volume.name,
                    memory=volume.empty_dir.medium == "Memory",
                    size_limit=int(parse_quantity(limit)) if limit is not None else None,
                )
            )
            continue
        files: dict[str, tuple[bytes, int]] = {}
        sources, default_mode = _sources(volume)
        for kind, name, items, optional in sources:
            obj = lookup(kind, namespace, name)
            if obj is None:
                if not optional:
                    problems.append(f'volume {volume.name}: {kind.lower()} "{name}" not found')
                continue
            contents = contents_of(obj)
            if not items:
                files.update({key: (value, default_mode) for key, value in contents.items()})
            for item in items:
                if item.key in contents:
                    mode = item.mode if item.mode is not None else default_mode
                    files[item.path] = (contents[item.key], mode)
                elif not optional:
                    problems.append(
                        f"volume {volume.name}: couldn't find key {item.key} in {kind} "
                        f"{namespace}/{name}"
                    )
        resolved.append(VolumeSpec(volume.name, files))
    return tuple(resolved), problems


def _sources(volume: Volume) -> tuple[list[_Source], int]:
    """The Secrets and ConfigMaps a volume reads (none for an emptyDir or a claim), and the
    mode of its files."""
    if volume.secret is not None:
        s = volume.secret
        return [(SECRET, s.secret_name, s.items, bool(s.optional))], _mode(s.default_mode)
    if volume.config_map is not None:
        c = volume.config_map
        return [(CONFIG_MAP, c.name, c.items, bool(c.optional))], _mode(c.default_mode)
    if volume.projected is None:
        return [], DEFAULT_MODE
    sources: list[_Source] = []
    for projection in volume.projected.sources:
        kind = SECRET if projection.secret is not None else CONFIG_MAP
        source = projection.secret or projection.config_map
        assert source is not None
        sources.append((kind, source.name, source.items, bool(source.optional)))
    return sources, _mode(volume.projected.default_mode)


def _mode(default_mode: int | None) -> int:
    return DEFAULT_MODE if default_mode is None else default_mode
