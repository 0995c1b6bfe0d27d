"""`tidal up --gateway-workers 2`: the data plane runs in worker processes apart from the
controller, so a controller that does not run (SIGSTOP) delays no request to a ready replica; a
killed worker is restarted; SIGTERM still drains (docs/architecture.md#processes)."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import (
    FAST_AUTOSCALER,
    Platform,
    concurrent_gets,
    hello_service,
    host,
    process_alive,
    run,
    wait_until,
)

MIN_ONE = {"autoscaling.knative.dev/min-scale": "1"}


def workers(platform: Platform) -> list[int]:
    """The pids of the platform's live gateway workers (from /proc)."""
    assert platform.process is not None
    found = []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            command = (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == platform.process.pid and state != "Z" and b"tidal.gateway.worker" in command:
            found.append(int(proc.name))
    return sorted(found)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(
        tmp_path_factory.mktemp("apart"),
        {"autoscaler": FAST_AUTOSCALER, "gateway": {"drain-timeout": "20s"}},
        args=("--gateway-workers", "2"),
    ).start()
    p.apply(hello_service("steady", MIN_ONE))
    p.wait_ready("steady")
    yield p
    p.stop(kill=True)


def test_two_workers_serve_the_port(platform: Platform) -> None:
    assert len(workers(platform)) == 2
    results = run(concurrent_gets(platform.gateway, host("steady"), 40))
    assert collections.Counter(s for s, _, _ in results) == {200: 40}
    assert {r for _, r, _ in results} == {"steady-00001"}


def metric(platform: Platform, name: str, **labels: str) -> float:
    return sample_sum(platform.api("GET", "/metrics")[1].decode(), name, **labels)


def sample_sum(body: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_admin_metrics_count_what_the_workers_serve(platform: Platform) -> None:
    """Latency histograms and in-flight requests come from the workers' reports."""
    steady = {"revision": "steady-00001"}

    def slower_than_2_5_s() -> float:
        # One scrape for both: the workers' reports of earlier requests may land in between.
        body = platform.api("GET", "/metrics")[1].decode()
        count = sample_sum(body, "tidal_request_duration_seconds_count", **steady)
        return count - sample_sum(body, "tidal_request_duration_seconds_bucket", le="2.5", **steady)

    # The earlier tests' requests may be slow on a busy machine: count from what /metrics
    # holds once the workers' reports of them have landed (a report a second).
    counts: list[float] = []

    def settled() -> bool:  # unchanged over one period: 1.5 s, more than a report's second
        counts.append(metric(platform, "tidal_request_duration_seconds_count", **steady))
        return len(counts) > 1 and counts[-1] == counts[-2]

    wait_until(settled, 10, "the earlier requests' reports to land", period=1.5)
    before = slower_than_2_5_s()
    results: list[tuple[int, str, str]] = []
    sender = threading.Thread(
        target=lambda: results.extend(
            run(concurrent_gets(platform.gateway, host("steady"), 6, "/?sleep=2500"))
        )
    )
    sender.start()
    wait_until(
        lambda: metric(platform, "tidal_inflight_requests", **steady) >= 1,
        5,
        "requests in flight at the workers in /metrics",
    )
    sender.join(timeout=30)
    assert [s for s, _, _ in results] == [200] * 6
    wait_until(lambda: slower_than_2_5_s() >= before + 6, 5, "the workers' latencies in /metrics")


def test_a_stopped_controller_delays_no_request_to_a_ready_replica(platform: Platform) -> None:
    assert platform.process is not None
    assert platform.request(host("steady"))[0] == 200
    platform.process.send_signal(signal.SIGSTOP)
    try:
        times = []
        stop_at = time.monotonic() + 2.0
        while time.monotonic() < stop_at:
            started = time.monotonic()
            status, headers, _ = platform.request(host("steady"), timeout=5)
            times.append(time.monotonic() - started)
            assert status == 200 and headers["X-Tidal-Revision"] == "steady-00001"
            time.sleep(0.05)
    finally:
        platform.process.send_signal(signal.SIGCONT)
    print(f"\n{len(times)} requests while the controller was stopped, slowest {max(times):.3f}s")
    assert len(times) >= 10
    assert max(times) < 0.5  # a stalled data plane would wait out the whole 2 s


def test_a_killed_worker_is_restarted(platform: Platform) -> None:
    before = workers(platform)
    os.kill(before[0], signal.SIGKILL)
    after = wait_until(
        lambda: (pids := workers(platform)) and len(pids) == 2 and before[0] not in pids and pids,
        20,
        "the killed worker to be replaced",
    )
    assert before[1] in after
    results = run(concurrent_gets(platform.gateway, host("steady"), 20))
    assert collections.Counter(s for s, _, _ in results) == {200: 20}
    assert "exited with -9; restarting" in platform.log_path.read_text()


def test_sigterm_drains_the_workers(platform: Platform) -> None:
    """Last in this module: it stops the platform."""
    pids = workers(platform)
    results: list[tuple[int, str, str]] = []
    sender = threading.Thread(
        target=lambda: results.extend(
            run(concurrent_gets(platform.gateway, host("steady"), 8, "/?sleep=1500"))
        )
    )
    sender.start()
    time.sleep(0.7)
    assert platform.process is not None
    platform.process.send_signal(signal.SIGTERM)
    sender.join(timeout=30)
    assert platform.process.wait(timeout=30) == 0
    assert [s for s, _, _ in results] == [200] * 8
    wait_until(lambda: not any(process_alive(pid) for pid in pids), 5, "the workers to be gone")
    assert "drained in" in platform.log_path.read_text()


def test_port_0_prints_the_bound_ports(tmp_path: Path) -> None:
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidal",
                "up",
                "--data-dir",
                str(tmp_path / "data"),
                *("--port", "0", "--admin-port", "0", "--kube-port", "0"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        # The banner is written a line at a time: wait for the lines naming the ports.
        text = wait_until(
            lambda: "metrics http" in (t := log.read_text()) and t, 30, "tidal up to start"
        )
        gateway = re.search(r"gateway\s+http://127\.0\.0\.1:(\d+)", text)
        admin = re.search(r"admin API http://127\.0\.0\.1:(\d+)", text)
        assert gateway and admin, text
        assert int(gateway.group(1)) > 0 and int(admin.group(1)) > 0
        probe = Platform(tmp_path)  # only for its clients, pointed at the printed ports
        probe.port, probe.admin_port = int(gateway.group(1)), int(admin.group(1))
        assert probe.api("GET", "/healthz", token=False)[0] == 200
        assert probe.request("nobody.default.example.com", timeout=5)[0] == 404
    finally:
        process.terminate()
        process.wait(timeout=30)
