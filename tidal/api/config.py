"""The platform config file (`tidal up --config tidal.yaml`).

Sections mirror Knative's ConfigMaps where tidal mirrors Knative: `autoscaler` is
`config-autoscaler`, `gc` is `config-gc`, `network.domain` and `network.rollout-duration` come from
`config-domain`/`config-network`, `deployment.progress-deadline` from `config-deployment`.
`pools` declares where replicas may run (tidal.api.pools); without it, one unbounded local pool.
`gateway` holds the data plane's limits, its shutdown drain (docs/reliability.md) and who may call
cluster-local hosts, `logs` the size caps of replica logs.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tidal.api.autoscaling import AutoscalerConfig
from tidal.api.errors import InvalidSpec
from tidal.api.pools import Pool, discover_gpus, parse_pools
from tidal.api.textfile import read_text
from tidal.api.units import parse_duration, parse_quantity

SECTIONS = ("autoscaler", "gc", "network", "deployment", "gateway", "logs", "pools")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class GCConfig:
    """Knative's `config-gc` (docs/architecture.md#garbage-collection). None means "disabled"."""

    retain_since_create_time_s: float | None = 48 * 3600.0
    retain_since_last_active_time_s: float | None = 15 * 3600.0
    min_non_active_revisions: int = 20
    max_non_active_revisions: int | None = 1000


@dataclass(frozen=True)
class GatewayLimits:
    """What one client may hold of a gateway or admin listener, and how long shutdown waits.

    A request head must arrive whole within `header_read_timeout_s` of its first byte (or of
    the connection's opening); a keep-alive connection with no request for `idle_timeout_s` is
    closed. Connections over a listener's cap, or over the process's total, get a 503 and are
    closed at once. On SIGTERM/SIGINT in-flight requests get `drain_timeout_s` to finish.
    """

    header_read_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    max_connections: int = 4096  # per gateway listener
    admin_max_connections: int = 256
    max_total_connections: int = 8192  # all listeners of one process together
    drain_timeout_s: float = 30.0
    # Clients that may call cluster-local hosts (docs/architecture.md#hosts): on one machine,
    # the machine itself.
    cluster_networks: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )

    def to_json(self) -> str:
        """For a gateway worker's command line."""
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> GatewayLimits:
        values = json.loads(text)
        networks = values.pop("cluster_networks", None)
        if networks is not None:
            values["cluster_networks"] = tuple(ipaddress.ip_network(n) for n in networks)
        return cls(**values)


@dataclass(frozen=True)
class LogLimits:
    """Each replica's log is rotated at `max_bytes`; `max_files` files are kept (the live one
    included), like the kubelet's containerLogMaxSize/containerLogMaxFiles. Of a revision's
    stopped replicas the `max_stopped` most recent keep their logs."""

    max_bytes: int = 10 * 2**20
    max_files: int = 2
    max_stopped: int = 5


@dataclass(frozen=True)
class PlatformConfig:
    autoscaler: AutoscalerConfig = field(default_factory=AutoscalerConfig)
    pools: tuple[Pool, ...] = field(default_factory=lambda: parse_pools(None))
    gc: GCConfig = field(default_factory=GCConfig)
    domain: str = "example.com"
    rollout_duration_s: float = 0.0
    progress_deadline_s: float = 600.0
    termination_grace_s: float = 10.0
    # The requests a revision holds while the activator is in its path (Knative's queue depth;
    # tidal.gateway.activator.pending_cap).
    pending_cap_default: int = 10_000
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    logs: LogLimits = field(default_factory=LogLimits)


def load_config(path: str | Path | None) -> PlatformConfig:
    if path is None:
        return PlatformConfig()
    try:
        data = yaml.safe_load(read_text(path)) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidSpec("", f"cannot read config {path}: {exc}") from None
    except ValueError as exc:  # not UTF-8; the message names the file
        raise InvalidSpec("", str(exc)) from None
    return parse_config(data)


def parse_config(data: dict[str, Any]) -> PlatformConfig:
    if not isinstance(data, dict):
        raise InvalidSpec("", "the config must be a mapping of sections")
    for key in data:
        if key not in SECTIONS:
            raise InvalidSpec(key, f"unknown section (known: {', '.join(SECTIONS)})")
    network = _section(data, "network", ("domain", "rollout-duration"))
    deployment = _section(data, "deployment", ("progress-deadline", "termination-grace-period"))
    gateway = _section(data, "gateway", ("pending-cap-default", *GATEWAY_KEYS))
    logs = _section(data, "logs", ("max-size", "max-files", "max-stopped-replicas"))
    defaults = PlatformConfig()
    return PlatformConfig(
        autoscaler=AutoscalerConfig.from_mapping(data.get("autoscaler") or {}),
        pools=parse_pools(data.get("pools"), discover_gpus()),
        gc=_gc(_section(data, "gc", GC_KEYS)),
        domain=str(network.get("domain", defaults.domain)),
        rollout_duration_s=_seconds(network, "network", "rollout-duration", 0.0),
        progress_deadline_s=_seconds(deployment, "deployment", "progress-deadline", 600.0),
        termination_grace_s=_seconds(deployment, "deployment", "termination-grace-period", 10.0),
        pending_cap_default=_int(gateway, "gateway", "pending-cap-default", 10_000, minimum=1),
        limits=parse_gateway_limits(gateway),
        logs=LogLimits(
            max_bytes=_bytes(logs, "logs", "max-size", LogLimits.max_bytes, minimum=4096),
            max_files=_int(logs, "logs", "max-files", LogLimits.max_files, minimum=1),
            max_stopped=_int(
                logs, "logs", "max-stopped-replicas", LogLimits.max_stopped, minimum=1
            ),
        ),
    )


GATEWAY_KEYS = (
    "header-read-timeout",
    "idle-timeout",
    "max-connections",
    "admin-max-connections",
    "max-total-connections",
    "drain-timeout",
    "cluster-networks",
)


def parse_gateway_limits(
    values: dict[str, Any], defaults: GatewayLimits | None = None
) -> GatewayLimits:
    """The `gateway` section's limits over `defaults` (other keys of the section are ignored
    here)."""
    d = defaults or GatewayLimits()
    return GatewayLimits(
        header_read_timeout_s=_positive_seconds(
            values, "header-read-timeout", d.header_read_timeout_s
        ),
        idle_timeout_s=_positive_seconds(values, "idle-timeout", d.idle_timeout_s),
        max_connections=_int(values, "gateway", "max-connections", d.max_connections, minimum=1),
        admin_max_connections=_int(
            values, "gateway", "admin-max-connections", d.admin_max_connections, minimum=1
        ),
        max_total_connections=_int(
            values, "gateway", "max-total-connections", d.max_total_connections, minimum=1
        ),
        drain_timeout_s=_seconds(values, "gateway", "drain-timeout", d.drain_timeout_s),
        cluster_networks=_networks(values, "cluster-networks", d.cluster_networks),
    )


def _networks(
    values: dict[str, Any], key: str, default: tuple[IPNetwork, ...]
) -> tuple[IPNetwork, ...]:
    if key not in values:
        return default
    given = values[key]
    if not isinstance(given, list) or not all(isinstance(v, str) for v in given):
        raise InvalidSpec(
            f"gateway.{key}", f"must be a list of CIDRs such as 10.0.0.0/8, got {given!r}"
        )
    try:
        return tuple(ipaddress.ip_network(cidr) for cidr in given)
    except ValueError as exc:
        raise InvalidSpec(f"gateway.{key}", str(exc)) from None


def _positive_seconds(values: dict[str, Any], key: str, default: float) -> float:
    seconds = _seconds(values, "gateway", key, default)
    if seconds <= 0:
        raise InvalidSpec(f"gateway.{key}", "must be greater than 0")
    return seconds


def _bytes(values: dict[str, Any], section: str, key: str, default: int, minimum: int) -> int:
    if key not in values:
        return default
    try:
        amount = parse_quantity(values[key])
    except (ValueError, TypeError) as exc:
        raise InvalidSpec(f"{section}.{key}", str(exc)) from None
    if amount < minimum:
        raise InvalidSpec(f"{section}.{key}", f"must be at least {minimum} bytes")
    return int(amount)


GC_KEYS = (
    "retain-since-create-time",
    "retain-since-last-active-time",
    "min-non-active-revisions",
    "max-non-active-revisions",
)


def _gc(values: dict[str, Any]) -> GCConfig:
    d = GCConfig()
    return GCConfig(
        retain_since_create_time_s=_seconds_or_disabled(
            values, "retain-since-create-time", d.retain_since_create_time_s
        ),
        retain_since_last_active_time_s=_seconds_or_disabled(
            values, "retain-since-last-active-time", d.retain_since_last_active_time_s
        ),
        min_non_active_revisions=_int(
            values, "gc", "min-non-active-revisions", d.min_non_active_revisions, minimum=0
        ),
        max_non_active_revisions=None
        if values.get("max-non-active-revisions") == "disabled"
        else _int(values, "gc", "max-non-active-revisions", 1000, minimum=0),
    )


def _section(data: dict[str, Any], name: str, keys: tuple[str, ...]) -> dict[str, Any]:
    values = data.get(name) or {}
    if not isinstance(values, dict):
        raise InvalidSpec(name, "must be a mapping")
    for key in values:
        if key not in keys:
            raise InvalidSpec(f"{name}.{key}", f"unknown key (known: {', '.join(keys)})")
    return values


def _seconds(values: dict[str, Any], section: str, key: str, default: float) -> float:
    if key not in values:
        return default
    try:
        seconds = parse_duration(values[key])
    except ValueError as exc:
        raise InvalidSpec(f"{section}.{key}", str(exc)) from None
    if seconds < 0:
        raise InvalidSpec(f"{section}.{key}", "must not be negative")
    return seconds


def _seconds_or_disabled(values: dict[str, Any], key: str, default: float | None) -> float | None:
    if values.get(key) == "disabled":
        return None
    return _seconds(values, "gc", key, default) if key in values else default


def _int(values: dict[str, Any], section: str, key: str, default: int, minimum: int) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidSpec(f"{section}.{key}", f"must be an integer >= {minimum}, got {value!r}")
    return value
