"""Resource pools: the `pools:` section of the platform config (`tidal up --config tidal.yaml`).

A pool is a place replicas run: `reserved` (paid for whether used or not, the ECS nodes of
docs/pools.md#resourcepolicy) or `elastic` (provisioned on demand, the ECI instances; its
`startupDelay` models the provisioning time). ResourcePolicy units select pools by their labels.
A missing capacity means unbounded. GPU devices are listed by id and handed out whole.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from tidal.api.errors import InvalidSpec
from tidal.api.manifest import first_error
from tidal.api.service import DNS1123, KModel
from tidal.api.units import parse_duration, parse_quantity

PoolKind = Literal["reserved", "elastic"]
GPU = "nvidia.com/gpu"
DEFAULT_POOL = "local"


@dataclass(frozen=True)
class Price:
    """What a pool charges per second of a replica and per second of each GPU device it holds."""

    replica_second: float = 0.0
    gpu_second: float = 0.0


@dataclass(frozen=True)
class Pool:
    """One pool. `cpu` (cores), `memory` (bytes) and `max_replicas` are None when unbounded."""

    name: str
    kind: PoolKind = "reserved"
    labels: dict[str, str] = field(default_factory=dict)
    cpu: float | None = None
    memory: float | None = None
    gpus: tuple[str, ...] = ()
    max_replicas: int | None = None
    startup_delay_s: float = 0.0
    price: Price = field(default_factory=Price)


class _Capacity(KModel):
    cpu: str | int | float | None = None
    memory: str | int | float | None = None
    gpus: list[str | int] = Field(default_factory=list, alias=GPU)
    replicas: int | None = Field(default=None, ge=0)

    @field_validator("gpus", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            raise ValueError(
                f'a list of GPU device ids (e.g. ["0", "1"], as nvidia-smi numbers them), '
                f"not {value!r}: each replica is given its devices by id"
            )
        return value

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | int | float | None) -> str | int | float | None:
        if value is not None and parse_quantity(value) < 0:
            raise ValueError("must not be negative")
        return value


class _Price(KModel):
    replica_second: float = Field(default=0.0, ge=0)
    gpu_second: float = Field(default=0.0, ge=0)


class _PoolSpec(KModel):
    name: str
    kind: PoolKind = "reserved"
    labels: dict[str, str] = Field(default_factory=dict)
    capacity: _Capacity = Field(default_factory=_Capacity)
    startup_delay: str | int | float = 0
    price: _Price = Field(default_factory=_Price)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if len(value) > 63 or not DNS1123.match(value):
            raise ValueError(f"{value!r} is not a DNS label (lower-case letters, digits and '-')")
        return value

    @field_validator("startup_delay")
    @classmethod
    def _duration(cls, value: str | int | float) -> str | int | float:
        if parse_duration(value) < 0:
            raise ValueError("must not be negative")
        return value


_POOL_LIST = TypeAdapter(list[_PoolSpec])


def parse_pools(data: list[Any] | None, gpus: Sequence[str] | None = None) -> tuple[Pool, ...]:
    """Pools from the config's `pools:` list; raises InvalidSpec naming the field.

    `gpus` are the devices found on this machine (`discover_gpus`), None when unknown. Without a
    `pools:` section there is one unbounded reserved pool, `local`, holding every found device.
    With one, each pool holds the devices its config lists; those must exist when `gpus` is known,
    and no device may be in two pools.
    """
    if data is None:
        return (Pool(DEFAULT_POOL, gpus=tuple(gpus or ())),)
    try:
        specs = _POOL_LIST.validate_python(data)
    except ValidationError as exc:
        err = first_error(exc)
        raise InvalidSpec(f"pools{err.field}", err.message) from None
    if not specs:
        raise InvalidSpec("pools", "list at least one pool, or leave the section out")
    pools: list[Pool] = []
    owner: dict[str, str] = {}
    for index, spec in enumerate(specs):
        if any(pool.name == spec.name for pool in pools):
            raise InvalidSpec(f"pools[{index}].name", f"pool {spec.name!r} is declared twice")
        devices = tuple(str(device) for device in spec.capacity.gpus)
        for device in devices:
            field_name = f"pools[{index}].capacity.{GPU}"
            if gpus is not None and device not in gpus:
                found = ", ".join(gpus) or "none"
                raise InvalidSpec(field_name, f"device {device!r} not found (found: {found})")
            if device in owner:
                raise InvalidSpec(field_name, f"device {device!r} is already in {owner[device]!r}")
            owner[device] = spec.name
        pools.append(_pool(spec, devices))
    return tuple(pools)


def _pool(spec: _PoolSpec, devices: tuple[str, ...]) -> Pool:
    cap = spec.capacity
    return Pool(
        name=spec.name,
        kind=spec.kind,
        labels=dict(spec.labels),
        cpu=None if cap.cpu is None else parse_quantity(cap.cpu),
        memory=None if cap.memory is None else parse_quantity(cap.memory),
        gpus=devices,
        max_replicas=cap.replicas,
        startup_delay_s=parse_duration(spec.startup_delay),
        price=Price(spec.price.replica_second, spec.price.gpu_second),
    )


def discover_gpus(
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    which: Callable[[str], str | None] = shutil.which,
) -> list[str] | None:
    """GPU device ids from `nvidia-smi`, or None when it is missing or fails."""
    if which("nvidia-smi") is None:
        return None
    command = ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"]
    try:
        result = run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]
