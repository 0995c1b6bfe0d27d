"""Figures per policy from simulation results: a rich table, JSON, and a report folder with PNG
plots (matplotlib, Agg) and a Markdown summary.

Latency percentiles are over served requests (s); failed requests (503 at the pending cap, 504
at the timeout) are counted apart. An SLO violation is a served request slower than the SLO, or
a failed one. A cold-start request waited in the activator while no replica was ready.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tidal.console.report import write_html_report
from tidal.scheduler.cost import Usage
from tidal.sim.model import OK, REJECTED, TIMED_OUT, SimResult


def metrics(result: SimResult, slo_s: float) -> dict[str, Any]:
    served = result.status == OK
    latency = result.latency[served]
    p50, p95, p99 = np.percentile(latency, [50, 95, 99]) if latency.size else (np.nan,) * 3
    requests = len(result.status)
    failed = int((~served).sum())
    cold = int(result.cold.sum())
    total = sum(result.usage.values(), Usage())
    return {
        "requests": requests,
        "cold_start_requests": cold,
        "cold_start_pct": 100.0 * cold / requests if requests else 0.0,
        "cold_starts": result.cold_starts,
        "latency_p50": _round(p50),
        "latency_p95": _round(p95),
        "latency_p99": _round(p99),
        "slo_violations": int((latency > slo_s).sum()) + failed,
        "failed_requests": failed,
        "timeouts": int((result.status == TIMED_OUT).sum()),
        "rejected": int((result.status == REJECTED).sum()),
        "replica_seconds": round(total.replica_seconds, 1),
        "gpu_seconds": round(total.gpu_seconds, 1),
        "cost": round(total.cost, 4),
        "pools": {
            pool: {
                "replica_seconds": round(usage.replica_seconds, 1),
                "gpu_seconds": round(usage.gpu_seconds, 1),
                "cost": round(usage.cost, 4),
            }
            for pool, usage in sorted(result.usage.items())
        },
        "max_replicas": int(result.replicas.max()) if result.replicas.size else 0,
    }


def _round(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def summarize(results: dict[str, SimResult], slo_s: float) -> dict[str, Any]:
    """The JSON document: {"policies": {name: metrics}}."""
    return {"policies": {name: metrics(r, slo_s) for name, r in results.items()}}


def to_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2)


def _fmt_latency(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


COLUMNS = (
    ("policy", None),
    ("requests", lambda m: f"{m['requests']:,}"),
    ("cold-start req", lambda m: f"{m['cold_start_requests']:,} ({m['cold_start_pct']:.2f}%)"),
    ("p50 s", lambda m: _fmt_latency(m["latency_p50"])),
    ("p95 s", lambda m: _fmt_latency(m["latency_p95"])),
    ("p99 s", lambda m: _fmt_latency(m["latency_p99"])),
    ("SLO viol.", lambda m: f"{m['slo_violations']:,}"),
    ("504/503", lambda m: f"{m['timeouts']:,}/{m['rejected']:,}"),
    ("replica-s", lambda m: f"{m['replica_seconds']:,.0f}"),
    ("GPU-s", lambda m: f"{m['gpu_seconds']:,.0f}"),
    ("cost", lambda m: f"{m['cost']:,.2f}"),
)


def table(summary: dict[str, Any], title: str) -> Table:
    out = Table(title=title)
    for name, _ in COLUMNS:
        out.add_column(name, justify="left" if name == "policy" else "right")
    for policy, m in summary["policies"].items():
        out.add_row(policy, *(fmt(m) for _, fmt in COLUMNS[1:]))
    return out


def markdown_table(summary: dict[str, Any]) -> str:
    lines = [
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for policy, m in summary["policies"].items():
        lines.append("| " + " | ".join([policy, *(fmt(m) for _, fmt in COLUMNS[1:])]) + " |")
    return "\n".join(lines)


def print_table(summary: dict[str, Any], title: str, console: Console | None = None) -> None:
    (console or Console()).print(table(summary, title))


def write_report(
    results: dict[str, SimResult], summary: dict[str, Any], directory: Path, title: str
) -> list[Path]:
    """PNG plots and summary.md in `directory`; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    first = next(iter(results.values()))
    minutes = max(1, int(np.ceil(first.duration / 60.0)))
    hours = np.arange(minutes) / 60.0
    load = np.bincount((first.arrivals // 60).astype(np.int64), minlength=minutes)[:minutes] / 60.0

    fig, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    axes[0].plot(hours, load, color="grey", linewidth=0.8)
    axes[0].set_ylabel("requests/s (per minute)")
    axes[0].set_title(f"{title}: load and replicas")
    for name, result in results.items():
        axes[1].plot(hours, _per_minute(result.replicas, minutes), linewidth=0.9, label=name)
    axes[1].set_ylabel("replicas (mean per minute)")
    axes[1].set_xlabel("hours")
    axes[1].legend(loc="upper right", fontsize=8)
    load_png = directory / "load_replicas.png"
    fig.savefig(load_png, dpi=110, bbox_inches="tight")
    plt.close(fig)

    bin_s = 600.0 if first.duration > 6 * 3600 else 60.0
    bins = int(np.ceil(first.duration / bin_s))
    fig, ax = plt.subplots(figsize=(12, 4))
    for name, result in results.items():
        where = (result.arrivals[result.cold] // bin_s).astype(np.int64)
        counts = np.bincount(where, minlength=bins)[:bins]
        ax.step(np.arange(bins) * bin_s / 3600.0, counts, where="post", label=name, linewidth=0.9)
    ax.set_title(f"cold-start requests per {bin_s / 60:g} min")
    ax.set_xlabel("hours")
    ax.legend(loc="upper right", fontsize=8)
    cold_png = directory / "cold_starts.png"
    fig.savefig(cold_png, dpi=110, bbox_inches="tight")
    plt.close(fig)

    policies = summary["policies"]
    priced = any(m["cost"] > 0 for m in policies.values())
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, m in policies.items():
        x = m["cost"] if priced else m["replica_seconds"]
        ax.scatter(x, m["cold_start_pct"], s=40)
        ax.annotate(name, (x, m["cold_start_pct"]), textcoords="offset points", xytext=(5, 4))
    ax.set_xlabel("cost" if priced else "replica-seconds (no pool prices set)")
    ax.set_ylabel("cold-start requests (%)")
    ax.set_title("cost vs cold starts")
    scatter_png = directory / "cost_vs_cold_starts.png"
    fig.savefig(scatter_png, dpi=110, bbox_inches="tight")
    plt.close(fig)

    summary_md = directory / "summary.md"
    summary_md.write_text(
        f"# Simulation: {title}\n\n{markdown_table(summary)}\n\n"
        "Latencies are over served requests; 504/503 are timeouts and pending-cap rejections. "
        "A cold-start request waited while no replica was ready.\n\n"
        f"![load and replicas]({load_png.name})\n\n![cold starts]({cold_png.name})\n\n"
        f"![cost vs cold starts]({scatter_png.name})\n"
    )
    (directory / "summary.json").write_text(to_json(summary))
    html = write_html_report(directory, title)  # the same, as a page in the console's style
    return [load_png, cold_png, scatter_png, summary_md, directory / "summary.json", html]


def _per_minute(series: np.ndarray, minutes: int) -> np.ndarray:
    """Mean of a per-second series per minute, padded with its last value."""
    padded = np.zeros(minutes * 60)
    if series.size:
        kept = series[: padded.size]
        padded[: kept.size] = kept
        padded[kept.size :] = kept[-1]
    return padded.reshape(minutes, 60).mean(axis=1)
