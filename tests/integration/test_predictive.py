"""Predictive scaling end to end: history in (CSV, Prometheus), plan out, replicas ahead of load."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from tests.integration.harness import FAST_AUTOSCALER, Platform, hello_service, wait_until
from tidal.autoscaler.predictive.warm import MIN_GAPS

PREDICTIVE = {
    "autoscaling.knative.dev/class": "predictive.tidal.dev",
    "autoscaling.knative.dev/target": "2",
    "autoscaling.knative.dev/target-utilization-percentage": "100",
    "autoscaling.knative.dev/max-scale": "6",
}


def daily_history(now: float, days: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-minute concurrency for `days` before `now`: about 5 in the three hours around this
    time of day, 0.2 otherwise, with a little noise."""
    end = int(now // 60)
    minutes = np.arange(end - days * 1440, end)
    offset = (minutes - end) % 1440
    busy = (offset >= 1440 - 60) | (offset < 120)
    noise = np.random.default_rng(seed).normal(0, 0.1, len(minutes))
    return minutes * 60.0, np.clip(np.where(busy, 5.0, 0.2) + noise, 0, None)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("predictive"), {"autoscaler": FAST_AUTOSCALER}).start()
    yield p
    p.stop()


def test_plan_from_imported_history_scales_ahead_without_traffic(platform, tmp_path):
    platform.apply(hello_service("shop", PREDICTIVE))
    platform.wait_ready("shop")
    stamps, values = daily_history(time.time())
    csv = tmp_path / "history.csv"
    csv.write_text(
        "timestamp,value\n"
        + "".join(f"{int(t)},{v:.3f}\n" for t, v in zip(stamps, values, strict=True))
    )
    out = platform.cli("history", "import", "shop", "--csv", str(csv)).stdout
    assert "imported 4320 minutes" in out
    # ~5 in flight expected at target 2 → 3 replicas, with no request sent at all.
    wait_until(
        lambda: platform.ready_replicas("shop") >= 3, 60, "the plan's 3 replicas", period=0.5
    )
    view = json.loads(platform.cli("forecast", "shop", "-o", "json").stdout)
    assert view["periodsMinutes"][0] == 1440
    assert len(view["replicas"]) == 1440 and view["replicas"][0] >= 3
    assert view["mode"] == "auto" and view["modeUsed"] == "auto"
    assert view["historyMinutes"] >= 4320
    assert view["readyTimeSamples"] >= 1 and view["readyTimeP90Seconds"] < 10
    # Twelve hours from now the history was quiet: the plan goes down to one replica.
    assert min(view["replicas"][600:700]) <= 1
    text = platform.cli("forecast", "shop").stdout
    assert "periods: daily" in text and "mode: auto" in text
    assert "warm decision: " in text and "idle gaps" in text
    # The live account behind the auto price: the plan's replicas are replica time spent.
    account = view["account"]
    assert account["spentReplicaSeconds"] > 0 and account["kpaReplicaSeconds"] >= 0
    assert account["savingMeasured"] in (True, False)
    assert "measured (a week's half-life): " in text and "spent against the KPA alone's" in text
    assert view["warm"]["fitted"] or view["warm"]["needGaps"] == MIN_GAPS
    plot = tmp_path / "plan.png"
    platform.cli("forecast", "shop", "--plot", str(plot), "-o", "json")
    assert plot.read_bytes()[:4] == b"\x89PNG"
    metrics = platform.api("GET", "/metrics")[1].decode()
    assert 'tidal_planned_replicas{namespace="default",revision="shop-00001"}' in metrics
    assert "tidal_predicted_demand" in metrics


def test_short_history_runs_in_observer_and_says_why(platform):
    platform.apply(hello_service("fresh", PREDICTIVE))
    platform.wait_ready("fresh")

    def explained():
        view = json.loads(platform.cli("forecast", "fresh", "-o", "json").stdout)
        return view if "history" in view["reason"] else None

    view = wait_until(explained, 30, "a decision made with a plan", period=1)
    assert view["modeUsed"] == "observer" and "need 2d" in view["reason"], view["reason"]


def test_bad_predictive_annotation_is_named(platform):
    result = platform.apply(
        hello_service("badq", {**PREDICTIVE, "tidal.dev/quantile": "150"}), check=False
    )
    assert result.returncode != 0
    assert "spec.template.metadata.annotations[tidal.dev/quantile]" in result.stderr


class FakePrometheus(BaseHTTPRequestHandler):
    """Answers query_range with two series of 1 and 2 per step, so their sum is 3."""

    calls: list[dict[str, list[str]]] = []

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        FakePrometheus.calls.append(query)
        start, end = float(query["start"][0]), float(query["end"][0])
        step = float(query["step"][0].rstrip("s"))
        stamps = np.arange(start, end + 1e-9, step)
        result = [
            {"metric": {"pod": str(i)}, "values": [[t, str(v)] for t in stamps]}
            for i, v in ((0, 1.0), (1, 2.0))
        ]
        body = json.dumps(
            {"status": "success", "data": {"resultType": "matrix", "result": result}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_history_import_from_prometheus_query_range(platform):
    platform.apply(hello_service("promsvc"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        out = platform.cli(
            "history",
            "import",
            "promsvc",
            "--prometheus",
            url,
            "--query",
            "sum(rate(x[1m]))",
            "--days",
            "8d",
        ).stdout
    finally:
        server.shutdown()
    minutes = int(out.split()[1])
    assert abs(minutes - 8 * 1440) <= 2
    assert len(FakePrometheus.calls) == 2  # 11,520 points > 10,000 per query: two chunks
    view = json.loads(platform.cli("forecast", "promsvc", "-o", "json").stdout)
    assert view["historyMinutes"] >= 8 * 1440 - 2
    assert view["demand"][0] == pytest.approx(3.0, abs=0.2)
    assert "not predictive" in view["reason"]


def test_backtest_command(platform, tmp_path):
    stamps, values = daily_history(time.time(), days=4, seed=1)
    csv = tmp_path / "bt.csv"
    csv.write_text("".join(f"{int(t)},{v:.3f}\n" for t, v in zip(stamps, values, strict=True)))
    result = json.loads(
        platform.cli("backtest", "--history", str(csv), "--target", "2", "-o", "json").stdout
    )
    for method in ("tidal", "seasonal_naive", "holt_winters"):
        figures = result["methods"][method]
        assert {"mase", "under_provisioned_minutes", "replica_minutes"} <= set(figures)
        assert figures["replica_minutes"] > 0
    bad = tmp_path / "bad.csv"
    bad.write_text("1700000000,1\nnot-a-time,2\n")
    failed = platform.cli("backtest", "--history", str(bad), check=False)
    assert failed.returncode != 0 and ":2:" in failed.stderr
