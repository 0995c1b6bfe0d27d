"""The CLI behaves as a kubectl user expects, checked through `tidal` against a real `tidal up`:
flags anywhere, created/configured/unchanged, every manifest error at once, not-found errors,
-o wide for every kind, get -w, logs -f, honest status of failed revisions, cost and progress."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.harness import FAST_AUTOSCALER, REPO, Platform, hello_service, wait_until


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("kubectl")).start()
    yield p
    p.stop()


def tidal(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`tidal` exactly as typed, without the harness' leading --server (`env`: the platform's,
    where the CLI finds its token)."""
    return subprocess.run(
        [sys.executable, "-m", "tidal", *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env={**(env or os.environ), "TIDAL_SERVER": "http://127.0.0.1:9"},  # nothing there
    )


def tidal_running(platform: Platform, *args: str) -> subprocess.Popen[str]:
    """`tidal ARGS` against the platform, left running (a watch, a follow); output merged."""
    return subprocess.Popen(
        [sys.executable, "-m", "tidal", "--server", platform.admin, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=platform.env,
    )


def test_global_flags_anywhere_on_the_line(platform):
    platform.apply(hello_service("flags"))
    for line in (
        ["get", "services", "--server", platform.admin],
        ["get", "services", f"--server={platform.admin}", "-n", "default"],
        ["-n", "default", "get", "services", "--server", platform.admin],
        ["-o", "json", "--server", platform.admin, "get", "services", "flags"],
        ["get", "-A", "services", "--server", platform.admin, "-o", "yaml"],
    ):
        result = tidal(*line, env=platform.env)
        assert result.returncode == 0, (line, result.stderr)
        assert "flags" in result.stdout, line
    # Without --server the CLI really goes to TIDAL_SERVER (nothing there): the flag was used.
    assert tidal("get", "services").returncode != 0


def test_apply_says_created_configured_unchanged(platform, tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(hello_service("verbs")))
    first = platform.cli("apply", "-f", str(path)).stdout
    assert first.startswith("service/verbs created (revision verbs-00001")
    assert "service/verbs unchanged" in platform.cli("apply", "-f", str(path)).stdout
    path.write_text(yaml.safe_dump(hello_service("verbs", env={"TARGET": "moon"})))
    assert (
        "service/verbs configured (revision verbs-00002"
        in platform.cli("apply", "-f", str(path)).stdout
    )
    assert "unchanged (dry run)" in platform.cli("apply", "-f", str(path), "--dry-run").stdout


def test_every_manifest_error_at_once_with_did_you_mean(platform):
    doc = hello_service("typos")
    doc["metadata"]["lables"] = {"a": "b"}
    doc["spec"]["template"]["spec"]["containerConcurency"] = 3
    doc["spec"]["template"]["spec"]["containers"][0]["imag"] = "x"
    result = platform.apply(doc, check=False)
    assert result.returncode != 0
    for expected in (
        "metadata.lables: unknown field (did you mean 'labels'?)",
        "spec.template.spec.containerConcurency: unknown field (did you mean "
        "'containerConcurrency'?)",
        "spec.template.spec.containers[0].imag: unknown field (did you mean 'image'?)",
    ):
        assert expected in result.stderr
    bogus = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "bogus"},
        "spec": {"bogus": 1},
    }
    result = platform.apply(bogus, check=False)
    assert result.returncode != 0 and "spec.bogus: unknown field" in result.stderr
    assert "spec.template" in result.stderr  # and the missing template, in the same run
    # Two bad documents of one apply: both reported, nothing stored.
    result = platform.apply(doc, bogus, check=False)
    assert "document 1: metadata.lables" in result.stderr
    assert "document 2: spec.bogus" in result.stderr
    assert platform.cli("get", "services", "typos", check=False).returncode != 0


def test_not_found_is_an_error_with_a_message(platform):
    platform.apply(hello_service("found"))
    for args, message in (
        (["logs", "found", "--revision", "found-00009"], 'revisions "found-00009" not found'),
        (["logs", "nobody"], 'services "nobody" not found'),
        (["get", "services", "nobody"], 'services "nobody" not found'),
        (["get", "replicas", "nobody"], 'replicas "nobody" not found'),
        (["describe", "service", "nobody"], 'services "nobody" not found'),
        (["delete", "service", "nobody"], 'services "nobody" not found'),
    ):
        result = platform.cli(*args, check=False)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)


def test_wide_adds_columns_for_every_kind(platform):
    platform.apply(
        hello_service("wide"),
        {
            "apiVersion": "scheduling.alibabacloud.com/v1alpha1",
            "kind": "ResourcePolicy",
            "metadata": {"name": "widepolicy"},
            "spec": {"selector": {"app": "none"}, "units": [{"resource": "ecs"}]},
        },
    )
    platform.wait_ready("wide")
    for kind, wide_only in (
        ("services", "MESSAGE"),
        ("revisions", "CONCURRENCY"),
        ("routes", "TAG URLS"),
        ("replicas", "PID"),
        ("pools", "PRICE/REPLICA-S"),
        ("resourcepolicies", "MATCH-LABEL-KEYS"),
    ):
        narrow = platform.cli("get", kind).stdout
        wide = platform.cli("get", kind, "-o", "wide").stdout
        assert wide_only not in narrow.splitlines()[0], kind
        assert wide_only in wide.splitlines()[0], kind


def test_get_watch_prints_again_on_change(platform):
    platform.apply(hello_service("watched"))
    watch = tidal_running(platform, "get", "revisions", "-w")
    try:
        time.sleep(1.5)
        platform.apply(hello_service("watched", env={"TARGET": "again"}))
        time.sleep(2.5)
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=10)
    assert "watched-00001" in out and "watched-00002" in out
    assert out.count("NAME") >= 2  # printed again after the change


TICKER = """
import http.server, os, threading, time
def tick():
    for n in range(10**6):
        print("tick", n, flush=True)
        time.sleep(0.1)
threading.Thread(target=tick, daemon=True).start()
port = int(os.environ["PORT"])
http.server.HTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler).serve_forever()
"""


def test_logs_follow_streams_every_new_line_until_the_service_is_deleted(platform):
    ticker = hello_service("ticker", annotations={"autoscaling.knative.dev/min-scale": "1"})
    ticker["spec"]["template"]["spec"]["containers"][0]["command"] = ["python", "-c", TICKER]
    platform.apply(ticker)
    platform.wait_ready("ticker")
    follow = tidal_running(platform, "logs", "ticker", "-f", "--tail", "2")
    try:
        time.sleep(2.5)
        platform.cli("delete", "service", "ticker")
        out, _ = follow.communicate(timeout=15)  # the stream ends with the service
    finally:
        follow.kill()
    assert follow.returncode == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("==> ticker-00001/ticker-00001-")
    ticks = [int(line.split()[1]) for line in lines if line.startswith("tick")]
    # the 2 lines of the tail, then every line written since: none lost, none twice
    assert len(ticks) >= 15 and ticks == list(range(ticks[0], ticks[0] + len(ticks)))
    assert lines.count(lines[0]) == 1, "one replica: its header once"


def test_traffic_to_a_failed_revision_is_refused_unless_forced(platform):
    platform.apply(hello_service("fails"))
    platform.wait_ready("fails")
    broken = hello_service("fails")
    broken["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "python",
        "-c",
        "import sys; print('cannot load weights'); sys.exit(3)",
    ]
    platform.apply(broken)

    def failed():
        status = platform.revision("fails-00002").get("status", {})
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        return status if ready and ready[0]["status"] == "False" else None

    status = wait_until(failed, 30, "fails-00002 to fail")
    assert status["desiredReplicas"] == 0
    assert status["autoscaler"]["active"] == "Failed"
    row = next(
        line for line in platform.cli("get", "revisions").stdout.splitlines() if "00002" in line
    )
    assert "Failed" in row and "ExitCode3" in row and "Activating" not in row

    refused = platform.cli("traffic", "fails", "--to", "fails-00002=100", check=False)
    assert refused.returncode != 0
    assert "fails-00002" in refused.stderr and "ExitCode3" in refused.stderr
    assert "--force" in refused.stderr
    route = platform.get_json("routes", "fails")["status"]["traffic"]
    assert [(t["revisionName"], t["percent"]) for t in route] == [("fails-00001", 100)]

    platform.cli("traffic", "fails", "--to", "fails-00002=100", "--force")
    condition = platform.service("fails")["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "RevisionFailed")
    assert "ExitCode3" in condition["message"]
    described = platform.cli("describe", "service", "fails").stdout
    assert "Ready: False RevisionFailed" in described


def test_cost_names_pools_without_a_price(platform):
    result = platform.cli("cost")
    assert "no price for pool(s) local" in result.stderr


def test_example_config_has_priced_pools(tmp_path):
    config = yaml.safe_load((REPO / "examples" / "tidal.yaml").read_text())
    config["autoscaler"] = FAST_AUTOSCALER
    p = Platform(tmp_path, config).start()
    try:
        p.apply(hello_service("priced"))
        p.wait_ready("priced")
        pools = {pool["name"]: pool for pool in p.get_json("pools")["items"]}
        assert pools["reserved"]["kind"] == "reserved" and pools["elastic"]["kind"] == "elastic"
        assert all(pool["price"]["replicaSecond"] > 0 for pool in pools.values())
        time.sleep(1)
        result = p.cli("cost")
        assert "no price" not in result.stderr
        items = yaml.safe_load(p.cli("cost", "-o", "json").stdout)["items"]
        assert any(i["pool"] == "reserved" and i["cost"] > 0 for i in items)
    finally:
        p.stop()


def _on_a_terminal(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run `tidal ARGS` with stdout and stderr on a pseudo-terminal; its screen output."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "tidal", *args],
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env={**(env or os.environ), "TERM": "xterm", "COLUMNS": "120"},
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=60)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_only(tmp_path):
    csv = tmp_path / "history.csv"
    start = 1_700_000_000
    rows = [f"{start + 60 * m},{10 + 5 * ((m % 1440) // 60 > 8)}" for m in range(4 * 1440)]
    csv.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    screen = _on_a_terminal("backtest", "--history", str(csv), cwd=tmp_path)
    assert "backtest: folds" in screen and "METHOD" in screen
    piped = subprocess.run(
        [sys.executable, "-m", "tidal", "backtest", "--history", str(csv)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0 and "METHOD" in piped.stdout
    assert "backtest: days" not in piped.stderr + piped.stdout


def test_apply_of_many_documents_shows_progress_on_a_terminal(platform, tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump_all([hello_service(f"many{i}") for i in range(6)]))
    screen = _on_a_terminal(
        "apply", "-f", str(path), "--server", platform.admin, cwd=tmp_path, env=platform.env
    )
    assert "applying 6 documents" in screen
    assert screen.count("created") == 6
    piped = platform.cli("apply", "-f", str(path))
    assert "applying" not in piped.stdout + piped.stderr
    assert piped.stdout.count("unchanged") == 6
