"""The simulator report page: tables from any summary JSON, every chart of the folder."""

from __future__ import annotations

import json

from tidal.console.report import write_html_report


def test_report_page_has_every_policy_metric_and_chart(tmp_path):
    summary = {
        "policies": {
            "kpa": {
                "requests": 1200,
                "cold_start_pct": 2.5,
                "cost": 0.1234,
                "pools": {"reserved": {"cost": 0.1}},
            },
            "peak<script>": {
                "requests": 1200,
                "cold_start_pct": 0.0,
                "cost": 1.5,
                "frontier": None,
            },
        }
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    for name in ("load_replicas.png", "frontier.png"):
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    page = write_html_report(tmp_path, "a day").read_text()
    assert page.count("<img ") == 2 and 'src="frontier.png"' in page
    assert "<td>kpa</td>" in page and "1,200" in page and "2.5" in page
    assert "cold start pct" in page and "frontier" in page
    assert "kpa / reserved" in page  # nested per-pool metrics get their own table
    assert "<script>" not in page and "peak&lt;script&gt;" in page  # names are escaped
    assert "<style>" in page and "http" not in page  # styles inline: no external asset


def test_report_page_shows_an_unknown_summary_as_json(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"sweep": [1, 2]}))
    page = write_html_report(tmp_path, "sweep").read_text()
    assert "&quot;sweep&quot;" in page and "no charts in this folder" in page
