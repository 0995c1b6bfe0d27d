"""A gateway in a process of its own: it routes with the controller's state, holds requests
while a revision scales from zero, and its stats drive the autoscaler."""

from __future__ import annotations

import collections
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import (
    Load,
    Platform,
    concurrent_gets,
    free_port,
    hello_service,
    host,
    run,
    wait_until,
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("gateway")).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def gateway(platform):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tidal",
            "gateway",
            "--controller",
            platform.admin,
            "--port",
            str(port),
            "--id",
            "second",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=platform.env,  # finds the platform's admin token as a local CLI does
    )
    url = f"http://127.0.0.1:{port}"
    original = platform.port
    try:
        platform.port = port  # platform.request() now goes through the second gateway
        wait_until(lambda: _answers(platform), 20, "the second gateway to listen")
        yield url
    finally:
        platform.port = original
        process.terminate()
        process.wait(timeout=10)


def _answers(platform: Platform) -> bool:
    try:
        return platform.request("nobody.default.example.com", timeout=2)[0] == 404
    except OSError:
        return False


def test_routes_like_the_controller_and_scales_from_zero(platform, gateway):
    platform.apply(hello_service("far"))
    platform.wait_ready("far")
    status, headers, _ = platform.request(host("far"))
    assert status == 200 and headers["X-Tidal-Revision"] == "far-00001"
    wait_until(lambda: not platform.replicas("far"), 40, "far to scale to zero", period=0.5)
    results = run(concurrent_gets(gateway, host("far"), 20, "/?sleep=50"))
    assert collections.Counter(s for s, _, _ in results) == {200: 20}


def _metric(platform: Platform, name: str, **labels: str) -> float:
    status, body = platform.api("GET", "/metrics")
    assert status == 200
    total = 0.0
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


def test_its_requests_and_cold_starts_are_in_the_admin_metrics(platform, gateway):
    """Every request of the test above went through the second gateway; the controller's
    /metrics counts them (1 + 20 answered 200) and the cold start it held them through."""
    labels = {"service": "far", "revision": "far-00001"}
    wait_until(
        lambda: _metric(platform, "tidal_requests_total", code="200", **labels) >= 21,
        10,
        "the second gateway's answers in /metrics",
        period=0.5,
    )
    assert _metric(platform, "tidal_cold_starts_total", **labels) >= 1
    assert _metric(platform, "tidal_cold_start_duration_seconds_count", **labels) >= 1


def test_its_stats_drive_the_autoscaler(platform, gateway):
    annotations = {
        "autoscaling.knative.dev/target": "2",
        "autoscaling.knative.dev/target-utilization-percentage": "100",
    }
    platform.apply(hello_service("farload", annotations))
    platform.wait_ready("farload")
    load = Load(gateway, host("farload"), "/?sleep=300").start(6)
    try:
        wait_until(
            lambda: platform.revision("farload-00001")["status"]["desiredReplicas"] >= 3,
            30,
            "6 in flight at the second gateway to ask for 3 replicas",
            period=0.5,
        )
        time.sleep(1)
    finally:
        statuses = load.stop()
    assert statuses and set(statuses) == {200}
