"""Figures per policy (and per service of a fleet) from simulation results: rich tables, JSON,
and a report folder with PNG plots (matplotlib, Agg) and a Markdown summary.

Latency percentiles are over served requests (s); failed requests (503 at the pending cap, 504
at the timeout) are counted apart. The wait of a request is its latency less its own service
time: the time it spent queued or waiting for a cold start, the part a policy is responsible
for. An SLO miss is a served request that waited longer than the SLO, or a failed one. A
cold-start request waited in the activator while its service had no ready replica. Requests
before `score_from` (the warm-up) are replayed but not counted, nor is usage before it.
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

TOP_SERVICES = 10


def metrics(
    result: SimResult,
    slo_s: float,
    mask: np.ndarray | None = None,
    usage: dict[str, Usage] | None = None,
    cold_starts: int | None = None,
    max_replicas: int | None = None,
) -> dict[str, Any]:
    """The figures of the requests selected by `mask` (default: all scored ones)."""
    scored = result.arrivals >= result.score_from
    mask = scored if mask is None else mask & scored
    status = result.status[mask]
    served = status == OK
    latency = result.latency[mask][served]
    wait = result.wait()[mask][served]
    p50, p95, p99 = np.percentile(latency, [50, 95, 99]) if latency.size else (np.nan,) * 3
    w50, w95, w99 = np.percentile(wait, [50, 95, 99]) if wait.size else (np.nan,) * 3
    requests = int(mask.sum())
    failed = int((~served).sum())
    cold = int(result.cold[mask].sum())
    usage = result.usage if usage is None else usage
    total = sum(usage.values(), Usage())
    return {
        "requests": requests,
        "cold_start_requests": cold,
        "cold_start_pct": 100.0 * cold / requests if requests else 0.0,
        "cold_starts": result.cold_starts if cold_starts is None else cold_starts,
        "latency_p50": _round(p50),
        "latency_p95": _round(p95),
        "latency_p99": _round(p99),
        "wait_p50": _round(w50),
        "wait_p95": _round(w95),
        "wait_p99": _round(w99),
        "slo_violations": int((wait > slo_s).sum()) + failed,
        "failed_requests": failed,
        "timeouts": int((status == TIMED_OUT).sum()),
        "rejected": int((status == REJECTED).sum()),
        "replica_seconds": round(total.replica_seconds, 1),
        "gpu_seconds": round(total.gpu_seconds, 1),
        "cost": round(total.cost, 4),
        "pools": {
            pool: {
                "replica_seconds": round(u.replica_seconds, 1),
                "gpu_seconds": round(u.gpu_seconds, 1),
                "cost": round(u.cost, 4),
            }
            for pool, u in sorted(usage.items())
        },
        "max_replicas": (
            (int(result.replicas.max()) if result.replicas.size else 0)
            if max_replicas is None
            else max_replicas
        ),
    }


def service_metrics(result: SimResult, slo_s: float) -> dict[str, dict[str, Any]]:
    """The figures of each service of a fleet replay."""
    assert result.service_of is not None
    out = {}
    for index, name in enumerate(result.services):
        out[name] = metrics(
            result,
            slo_s,
            mask=result.service_of == index,
            usage=result.service_usage.get(name, {}),
            cold_starts=int(result.service_cold_starts[index])
            if result.service_cold_starts is not None
            else 0,
            max_replicas=int(result.service_max_replicas[index])
            if result.service_max_replicas is not None
            else 0,
        )
    return out


def _round(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def summarize(
    results: dict[str, SimResult], slo_s: float, per_service: bool = False
) -> dict[str, Any]:
    """The JSON document: {"policies": {name: metrics (+ "note", + "services")}}."""
    policies = {}
    for name, result in results.items():
        m = metrics(result, slo_s)
        if result.note:
            m["note"] = result.note
        if per_service and len(result.services) > 1:
            m["services"] = service_metrics(result, slo_s)
        policies[name] = m
    return {"policies": policies, "slo_wait_s": slo_s}


def to_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2)


def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


COLUMNS = (
    ("policy", None),
    ("requests", lambda m: f"{m['requests']:,}"),
    ("cold-start req", lambda m: f"{m['cold_start_requests']:,} ({m['cold_start_pct']:.2f}%)"),
    ("cold starts", lambda m: f"{m['cold_starts']:,}"),
    ("p50 s", lambda m: _fmt_seconds(m["latency_p50"])),
    ("p99 s", lambda m: _fmt_seconds(m["latency_p99"])),
    ("wait p99 s", lambda m: _fmt_seconds(m["wait_p99"])),
    ("SLO miss", lambda m: f"{m['slo_violations']:,}"),
    ("504/503", lambda m: f"{m['timeouts']:,}/{m['rejected']:,}"),
    ("replica-h", lambda m: f"{m['replica_seconds'] / 3600:,.1f}"),
    ("GPU-h", lambda m: f"{m['gpu_seconds'] / 3600:,.1f}"),
    ("cost", lambda m: f"{m['cost']:,.2f}"),
)


def _label(policy: str, m: dict[str, Any]) -> str:
    return f"{policy} *" if m.get("note") else policy


def table(summary: dict[str, Any], title: str) -> Table:
    out = Table(title=title)
    for name, _ in COLUMNS:
        out.add_column(name, justify="left" if name == "policy" else "right")
    for policy, m in summary["policies"].items():
        out.add_row(_label(policy, m), *(fmt(m) for _, fmt in COLUMNS[1:]))
    return out


def notes(summary: dict[str, Any]) -> list[str]:
    """One line per row that did not run as itself."""
    return [f"* {p}: {m['note']}" for p, m in summary["policies"].items() if m.get("note")]


def top_services(summary: dict[str, Any], count: int = TOP_SERVICES) -> Table | None:
    """The services with the most cold-start requests (under the first policy), each policy's
    cold-start requests side by side."""
    policies = summary["policies"]
    fleets = {p: m["services"] for p, m in policies.items() if "services" in m}
    if not fleets:
        return None
    first = next(iter(fleets))
    ranked = sorted(fleets[first].items(), key=lambda kv: (-kv[1]["cold_start_requests"], kv[0]))[
        :count
    ]
    out = Table(title=f"{len(ranked)} services with the most cold-start requests ({first})")
    out.add_column("service")
    out.add_column("requests", justify="right")
    for policy in fleets:
        out.add_column(f"{policy} cold", justify="right")
    for name, m in ranked:
        cells = [
            f"{fleets[p][name]['cold_start_requests']:,} ({fleets[p][name]['cold_start_pct']:.1f}%)"
            for p in fleets
        ]
        out.add_row(name, f"{m['requests']:,}", *cells)
    return out


def frontier_table(summary: dict[str, Any]) -> Table | None:
    if "frontiers" not in summary:
        return None
    out = Table(title="sweep: cold-start requests vs cost (P = Pareto-optimal for the policy)")
    for name in ("policy", "setting", "cold-start req", "replica-h", "cost", "P"):
        out.add_column(name, justify="left" if name in ("policy", "setting") else "right")
    for policy, points in summary["frontiers"].items():
        for point in points:
            out.add_row(
                policy,
                point["setting"],
                f"{point['cold_start_requests']:,} ({point['cold_start_pct']:.2f}%)",
                f"{point['replica_seconds'] / 3600:,.1f}",
                f"{point['cost']:,.2f}",
                "P" if point["pareto_optimal"] else "",
            )
    return out


def print_tables(summary: dict[str, Any], title: str, console: Console | None = None) -> None:
    console = console or Console()
    console.print(table(summary, title))
    for line in notes(summary):
        console.print(line, highlight=False)
    for extra in (top_services(summary), frontier_table(summary)):
        if extra is not None:
            console.print(extra)


def markdown_table(summary: dict[str, Any]) -> str:
    lines = [
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for policy, m in summary["policies"].items():
        cells = [_label(policy, m), *(fmt(m) for _, fmt in COLUMNS[1:])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *notes(summary)])


def write_report(
    results: dict[str, SimResult], summary: dict[str, Any], directory: Path, title: str
) -> list[Path]:
    """PNG plots and summary.md in `directory`; returns the files written."""
    from tidal.sim import plots

    directory.mkdir(parents=True, exist_ok=True)
    files = [
        plots.load_and_replicas(results, directory / "load_replicas.png", title),
        plots.cold_starts_per_hour(results, directory / "cold_starts.png"),
        plots.cost_vs_cold_starts(summary, directory / "cost_vs_cold_starts.png"),
    ]
    if "frontiers" in summary:
        files.append(plots.frontiers(summary["frontiers"], directory / "frontiers.png"))
    images = "\n\n".join(f"![{f.stem}]({f.name})" for f in files)
    summary_md = directory / "summary.md"
    summary_md.write_text(
        f"# Simulation: {title}\n\n{markdown_table(summary)}\n\n"
        "Latencies are over served requests; a request's wait is its latency less its own "
        f"service time; an SLO miss waited more than {summary['slo_wait_s']:g} s or failed; "
        "504/503 are timeouts and pending-cap rejections. A cold-start request waited while "
        f"its service had no ready replica.\n\n{images}\n"
    )
    (directory / "summary.json").write_text(to_json(summary))
    html = write_html_report(directory, title)  # the same, as a page in the console's style
    return [*files, summary_md, directory / "summary.json", html]
