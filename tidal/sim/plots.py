"""The report's PNG plots (matplotlib, Agg). Policy names go in legends placed beside the axes,
never as free text on the plot, so labels cannot overlap however close the points are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from tidal.sim.model import SimResult

MARKERS = "osD^vP*Xh"
LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 8, "frameon": False}


def _hours_axis(duration: float) -> tuple[float, str]:
    return (24.0, "days") if duration > 3 * 86_400 else (1.0, "hours")


def load_and_replicas(results: dict[str, SimResult], path: Path, title: str) -> Path:
    first = next(iter(results.values()))
    minutes = max(1, int(np.ceil(first.duration / 60.0)))
    scale, unit = _hours_axis(first.duration)
    x = np.arange(minutes) / 60.0 / scale
    load = np.bincount((first.arrivals // 60).astype(np.int64), minlength=minutes)[:minutes]
    fig, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True, layout="constrained")
    axes[0].plot(x, load / 60.0, color="grey", linewidth=0.7)
    axes[0].set_ylabel("requests/s (per minute)")
    axes[0].set_title(f"{title}: load and replicas")
    for name, result in results.items():
        axes[1].plot(x, _per_minute(result.replicas, minutes), linewidth=0.8, label=name)
    axes[1].set_ylabel("replicas (mean per minute)")
    axes[1].set_xlabel(unit)
    axes[1].legend(**LEGEND)
    _shade_warmup(axes, first, scale)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cold_starts_per_hour(results: dict[str, SimResult], path: Path) -> Path:
    """Cold-start requests in each hour, one line per policy."""
    first = next(iter(results.values()))
    hours = max(1, int(np.ceil(first.duration / 3600.0)))
    scale, unit = _hours_axis(first.duration)
    fig, ax = plt.subplots(figsize=(12, 4), layout="constrained")
    for index, (name, result) in enumerate(results.items()):
        where = (result.arrivals[result.cold] // 3600).astype(np.int64)
        counts = np.bincount(where, minlength=hours)[:hours]
        ax.step(
            np.arange(hours) / scale,
            counts,
            where="post",
            linewidth=0.9,
            label=f"{name} ({int(counts.sum()):,})",
            marker=MARKERS[index % len(MARKERS)] if hours <= 48 else None,
            markersize=3,
        )
    ax.set_title("cold-start requests per hour (total in the legend)")
    ax.set_xlabel(unit)
    ax.set_ylabel("requests")
    ax.legend(**LEGEND)
    _shade_warmup([ax], first, scale)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cost_vs_cold_starts(summary: dict[str, Any], path: Path) -> Path:
    policies = summary["policies"]
    priced = any(m["cost"] > 0 for m in policies.values())
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    for index, (name, m) in enumerate(policies.items()):
        x = m["cost"] if priced else m["replica_seconds"] / 3600.0
        ax.scatter(x, m["cold_start_pct"], s=50, marker=MARKERS[index % len(MARKERS)], label=name)
    ax.set_xlabel("cost" if priced else "replica-hours (no pool prices set)")
    ax.set_ylabel("cold-start requests (%)")
    ax.set_title("cost vs cold starts, one point per policy")
    _plain_numbers(ax)
    ax.legend(**LEGEND)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def frontiers(fronts: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Every sweep point, and a line through each policy's Pareto-optimal points."""
    priced = any(p["cost"] > 0 for points in fronts.values() for p in points)
    key = "cost" if priced else "replica_seconds"
    scale = 1.0 if priced else 3600.0
    fig, ax = plt.subplots(figsize=(9, 6), layout="constrained")
    for index, (policy, points) in enumerate(fronts.items()):
        color = f"C{index % 10}"
        marker = MARKERS[index % len(MARKERS)]
        xs = [p[key] / scale for p in points]
        ys = [p["cold_start_pct"] for p in points]
        ax.scatter(xs, ys, color=color, marker=marker, s=28, alpha=0.45)
        best = sorted((p[key] / scale, p["cold_start_pct"]) for p in points if p["pareto_optimal"])
        ax.plot(
            [b[0] for b in best],
            [b[1] for b in best],
            color=color,
            marker=marker,
            linewidth=1.4,
            label=f"{policy} ({len(best)}/{len(points)} on frontier)",
        )
    ax.set_xlabel("cost" if priced else "replica-hours (no pool prices set)")
    ax.set_ylabel("cold-start requests (%)")
    ax.set_title("Pareto frontiers per policy (faded: dominated sweep points)")
    _plain_numbers(ax)
    ax.legend(**LEGEND)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plain_numbers(ax: Any) -> None:
    """Tick labels as the numbers themselves: where every policy costs about the same (a fleet
    whose pools are busy all along) matplotlib would label offsets from one (`+1.679e2`)."""
    ax.ticklabel_format(axis="both", style="plain", useOffset=False)


def _shade_warmup(axes: Any, result: SimResult, scale: float) -> None:
    if result.score_from > 0:
        for ax in axes:
            ax.axvspan(0, result.score_from / 3600.0 / scale, color="grey", alpha=0.12, lw=0)


def _per_minute(series: np.ndarray, minutes: int) -> np.ndarray:
    """Mean of a per-second series per minute, padded with its last value."""
    padded = np.zeros(minutes * 60)
    if series.size:
        kept = series[: padded.size]
        padded[: kept.size] = kept
        padded[kept.size :] = kept[-1]
    return padded.reshape(minutes, 60).mean(axis=1)
