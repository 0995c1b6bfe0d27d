"""A simulator report folder as one HTML page in the console's style: the summary JSON as tables
and every PNG chart of the folder (`tidal simulate --report DIR` writes DIR/report.html).

It reads only the files, so it keeps working whatever metrics the simulator adds: each policy's
scalar metrics become table columns, nested ones (per pool) a table of their own.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

REPORT_CSS = (resources.files("tidal.console") / "static" / "console.css").read_text

SUMMARY = "summary.json"
REPORT = "report.html"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    elif isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:,}"
    elif value is None:
        text = "-"
    else:
        text = str(value)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return f'<td class="{"num" if numeric else ""}">{html.escape(text)}</td>'


def _table(rows: dict[str, dict[str, Any]], first: str) -> str:
    columns: list[str] = []
    for metrics in rows.values():
        columns += [k for k, v in metrics.items() if not isinstance(v, dict) and k not in columns]
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in [first, *columns])
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>{''.join(_cell(m.get(c)) for c in columns)}</tr>"
        for name, m in rows.items()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _nested(policies: dict[str, dict[str, Any]]) -> str:
    """Tables for nested metrics, e.g. {"pools": {pool: {...}}} per policy."""
    out = []
    keys = {k for m in policies.values() for k, v in m.items() if isinstance(v, dict)}
    for key in sorted(keys):
        rows = {
            f"{policy} / {inner}": values
            for policy, m in policies.items()
            for inner, values in (m.get(key) or {}).items()
            if isinstance(values, dict)
        }
        if rows:
            out.append(f"<h2>{html.escape(key.replace('_', ' '))}</h2>{_table(rows, key)}")
    return "".join(out)


def render_report(summary: dict[str, Any], images: list[str], title: str) -> str:
    policies = summary.get("policies")
    if isinstance(policies, dict) and all(isinstance(m, dict) for m in policies.values()):
        tables = f"<h2>Policies</h2>{_table(policies, 'policy')}{_nested(policies)}"
    else:
        tables = f"<h2>Summary</h2><pre>{html.escape(json.dumps(summary, indent=2))}</pre>"
    figures = "".join(
        f'<figure class="card"><img src="{html.escape(name)}" alt="{html.escape(name)}">'
        f"<figcaption class='muted small'>{html.escape(name)}</figcaption></figure>"
        for name in images
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · tidal simulation</title><style>{REPORT_CSS()}</style>"
        '</head><body class="report"><header><span class="brand">tidal</span>'
        f"<nav><span>simulation report</span></nav></header><main>"
        f"<h1>Simulation: {html.escape(title)}</h1><div class='card'>{tables}</div>"
        "<p class='muted small'>Latencies are over served requests; 504/503 are timeouts and "
        "pending-cap rejections. A cold-start request waited while no replica was ready.</p>"
        f"<h2>Charts</h2>{figures or '<p class=muted>no charts in this folder</p>'}"
        "</main></body></html>\n"
    )


def write_html_report(directory: Path, title: str) -> Path:
    """DIR/report.html from DIR/summary.json and DIR/*.png; returns its path."""
    summary = json.loads((directory / SUMMARY).read_text())
    images = sorted(p.name for p in directory.glob("*.png"))
    path = directory / REPORT
    path.write_text(render_report(summary, images, title))
    return path
