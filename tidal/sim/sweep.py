"""Policy sweeps: each policy run over the values of its main knob(s), and the Pareto frontier
of cold-start-affected requests against cost (docs/simulator.md).

`SWEEPS` is the table to extend: policy -> knob -> values. A knob with a `/` is a Service
annotation, set on the manifest's revision template (so `tidal.dev/...` and
`autoscaling.knative.dev/...` knobs go through the same validation as `tidal apply`); any other
knob is a keyword setting of the baseline (tidal/autoscaler/baselines.py, `SETTINGS`). Each knob
is swept on its own, the others left at their defaults.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from tidal.autoscaler.baselines import BASELINES

SWEEPS: dict[str, dict[str, tuple[Any, ...]]] = {
    "kpa": {"autoscaling.knative.dev/window": ("10s", "30s", "60s", "180s", "600s", "1800s")},
    "predictive": {"tidal.dev/cold-start-cost": ("30s", "2m", "10m", "1h", "6h", "1d")},
    "hpa": {"down_stabilization_s": (30.0, 120.0, 300.0, 900.0, 1800.0)},
    "ray": {"downscale_delay_s": (30.0, 120.0, 600.0, 1800.0, 3600.0)},
    "keepalive": {"keep_alive_s": (30.0, 120.0, 600.0, 1800.0, 3600.0)},
    "hybrid-histogram": {"tail": (0.5, 0.75, 0.9, 0.99, 0.999)},
    "peak": {},
}


@dataclass(frozen=True)
class Setting:
    """One run's deviation from the defaults: manifest annotations or baseline settings."""

    label: str = "default"
    annotations: dict[str, str] = field(default_factory=dict)
    settings: dict[str, float] = field(default_factory=dict)


def settings_for(policy: str) -> list[Setting]:
    """The sweep points of `policy`, its default first."""
    points = [Setting()]
    for knob, values in SWEEPS.get(policy, {}).items():
        short = knob.rsplit("/", 1)[-1]
        for value in values:
            label = f"{short}={value:g}" if isinstance(value, float) else f"{short}={value}"
            if "/" in knob:
                points.append(Setting(label, annotations={knob: str(value)}))
            else:
                points.append(Setting(label, settings={knob: float(value)}))
    return points


def default_settings(policy: str, settings: dict[str, float]) -> bool:
    """Whether a baseline's `settings` are its defaults (every knob given at the value its
    constructor takes when not given), so that the replay is the default one's."""
    if not settings:
        return True
    baseline = BASELINES.get(policy)
    if baseline is None:
        return False
    parameters = inspect.signature(baseline).parameters
    return all(
        knob in parameters and parameters[knob].default == value for knob, value in settings.items()
    )


def pareto(points: list[dict[str, Any]], cost_key: str) -> list[bool]:
    """Which points no other point beats on both cold-start requests and `cost_key` (lower is
    better on both; ties keep both)."""
    flags = []
    for p in points:
        beaten = any(
            q["cold_start_requests"] <= p["cold_start_requests"]
            and q[cost_key] <= p[cost_key]
            and (q["cold_start_requests"] < p["cold_start_requests"] or q[cost_key] < p[cost_key])
            for q in points
        )
        flags.append(not beaten)
    return flags


def frontiers(rows: dict[str, list[tuple[str, dict[str, Any]]]]) -> dict[str, list[dict]]:
    """Per policy, its sweep points with a `pareto_optimal` flag. `rows` holds (setting label,
    metrics) per policy. Cost is the measure when any pool has a price, else replica-seconds."""
    priced = any(m["cost"] > 0 for points in rows.values() for _, m in points)
    cost_key = "cost" if priced else "replica_seconds"
    out: dict[str, list[dict]] = {}
    for policy, points in rows.items():
        entries = [
            {
                "setting": label,
                "cold_start_requests": m["cold_start_requests"],
                "cold_start_pct": m["cold_start_pct"],
                "replica_seconds": m["replica_seconds"],
                "gpu_seconds": m["gpu_seconds"],
                "cost": m["cost"],
            }
            for label, m in points
        ]
        for entry, flag in zip(entries, pareto(entries, cost_key), strict=True):
            entry["pareto_optimal"] = flag
        out[policy] = entries
    return out
