"""Whole GPU devices per pool: a replica gets N devices of its pool, never shared with another.

Devices are taken in the pool's config order, lowest first, so assignment is deterministic. A
device is free again once the replica holding it has stopped: the caller builds the held set from
the replicas that still run (terminating ones included), so a stop returns its devices.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from tidal.api.pools import Pool


class DeviceConflict(ValueError):
    """Two replicas claim the same device."""


def free_devices(pool: Pool, held: Collection[str]) -> list[str]:
    """The pool's devices nobody holds, in config order."""
    return [device for device in pool.gpus if device not in held]


def take(free: list[str], count: int) -> tuple[str, ...] | None:
    """Remove and return the first `count` free devices, or None (and take nothing) if too few."""
    if count > len(free):
        return None
    taken = tuple(free[:count])
    del free[:count]
    return taken


def claim(held: set[str], devices: Iterable[str], pool: str) -> None:
    """Mark `devices` held; raise DeviceConflict if one already is."""
    for device in devices:
        if device in held:
            raise DeviceConflict(f"device {device!r} of pool {pool!r} is held by two replicas")
        held.add(device)
