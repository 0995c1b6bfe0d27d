"""SIGTERM with slow requests in flight: every one completes, then the platform exits and leaves
no replica behind (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.harness import (
    FAST_AUTOSCALER,
    Platform,
    concurrent_gets,
    free_port,
    hello_service,
    host,
    process_alive,
    wait_until,
)

SLOW_MS = 3000


@pytest.fixture
def platform(tmp_path):
    p = Platform(tmp_path, {"autoscaler": FAST_AUTOSCALER, "gateway": {"drain-timeout": "30s"}})
    yield p.start()
    p.stop(kill=True)


def test_sigterm_lets_20_slow_requests_finish(platform: Platform) -> None:
    platform.apply(hello_service("slow", annotations={"autoscaling.knative.dev/min-scale": "1"}))
    platform.wait_ready("slow")
    pids = [r["pid"] for r in platform.replicas("slow")]
    results: list[tuple[int, str, str]] = []

    def send() -> None:
        results.extend(
            asyncio.run(concurrent_gets(platform.gateway, host("slow"), 20, f"/?sleep={SLOW_MS}"))
        )

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(1.0)  # all 20 are at the replica, about 2 s from done
    assert platform.process is not None
    signalled = time.monotonic()
    platform.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(("127.0.0.1", platform.port), timeout=2).close()
    sender.join(timeout=30)
    platform.process.wait(timeout=30)
    exited = time.monotonic() - signalled
    statuses = [status for status, _, _ in results]
    print(f"\n20 in flight at SIGTERM: statuses {sorted(set(statuses))}, exit after {exited:.1f}s")
    assert statuses == [200] * 20
    assert exited < 15
    assert platform.process.returncode == 0
    wait_until(lambda: not any(process_alive(pid) for pid in pids), 5, "replicas to be gone")
    log = platform.log_path.read_text()
    assert "drained in" in log and "0 connection(s) cut" in log


def test_drain_timeout_cuts_what_is_left(tmp_path) -> None:
    platform = Platform(
        tmp_path, {"autoscaler": FAST_AUTOSCALER, "gateway": {"drain-timeout": "1s"}}
    ).start()
    try:
        platform.apply(
            hello_service("stuck", annotations={"autoscaling.knative.dev/min-scale": "1"})
        )
        platform.wait_ready("stuck")
        outcome: list[object] = []

        def send() -> None:
            try:
                outcome.append(platform.request(host("stuck"), "/?sleep=20000", timeout=30)[0])
            except OSError as exc:
                outcome.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(1.0)
        assert platform.process is not None
        signalled = time.monotonic()
        platform.process.send_signal(signal.SIGTERM)
        platform.process.wait(timeout=30)
        exited = time.monotonic() - signalled
        sender.join(timeout=30)
    finally:
        platform.stop(kill=True)
    print(f"\ndrain-timeout 1s with a 20 s request in flight: exit after {exited:.1f}s")
    assert exited < 10
    assert len(outcome) == 1 and isinstance(outcome[0], OSError)  # cut, not answered
    assert "1 connection(s) cut" in platform.log_path.read_text()


def test_gateway_process_drains_too(platform: Platform) -> None:
    platform.apply(hello_service("relay", annotations={"autoscaling.knative.dev/min-scale": "1"}))
    platform.wait_ready("relay")
    port = free_port()
    command = ["gateway", "--controller", platform.admin, "--port", str(port)]
    gateway = subprocess.Popen(
        [sys.executable, "-m", "tidal", *command, "--drain-timeout", "20s"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=platform.env,  # finds the admin token as a local CLI does
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _listening(port), 20, "the gateway process to listen")
        results: list[tuple[int, str, str]] = []

        def send() -> None:
            results.extend(asyncio.run(concurrent_gets(url, host("relay"), 10, "/?sleep=2000")))

        sender = threading.Thread(target=send)
        sender.start()
        time.sleep(0.8)
        gateway.send_signal(signal.SIGTERM)
        sender.join(timeout=30)
        assert gateway.wait(timeout=30) == 0
    finally:
        if gateway.poll() is None:
            gateway.kill()
    assert [status for status, _, _ in results] == [200] * 10
    assert "0 connection(s) cut" in (gateway.stderr.read() if gateway.stderr else "")


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
