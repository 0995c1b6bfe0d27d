"""Replicas get neither tidal's secrets nor more privilege than the manifest grants: a clean
environment, securityContext honoured by the local runtime, and a non-dumpable platform."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import (
    FAST_AUTOSCALER,
    HELLO_DIR,
    NOT_FOR_OTHERS,
    Platform,
    hello_service,
    host,
    others_can_read,
    wait_until,
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    os.environ["TIDAL_TOKEN"] = "s3cret-of-the-platform"  # as an operator would export it
    try:
        p = Platform(tmp_path_factory.mktemp("privilege"), {"autoscaler": FAST_AUTOSCALER})
        p.start()
    finally:
        del os.environ["TIDAL_TOKEN"]
    p.env.pop("TIDAL_TOKEN")  # the platform got it; the test's CLI finds the admin token instead
    yield p
    p.stop()


def test_replicas_do_not_inherit_the_platforms_environment(platform: Platform) -> None:
    platform.apply(hello_service("clean", annotations={"autoscaling.knative.dev/min-scale": "1"}))
    platform.wait_ready("clean")
    [replica] = platform.replicas("clean")
    environ = Path(f"/proc/{replica['pid']}/environ").read_bytes().split(b"\0")
    names = {entry.partition(b"=")[0] for entry in environ if entry}
    assert b"TIDAL_TOKEN" not in names
    assert {b"PORT", b"K_REVISION", b"PATH"} <= names


def test_run_as_non_root_fails_the_revision_with_the_reason(platform: Platform) -> None:
    service = hello_service("rootless", annotations={"autoscaling.knative.dev/min-scale": "1"})
    security = (
        {"runAsNonRoot": True} if os.geteuid() == 0 else {"runAsNonRoot": True, "runAsUser": 0}
    )
    service["spec"]["template"]["spec"]["containers"][0]["securityContext"] = security
    platform.apply(service)

    def failed() -> str | None:
        conditions = platform.revision("rootless-00001").get("status", {}).get("conditions", [])
        return next((c["message"] for c in conditions if c["status"] == "False"), None)

    message = wait_until(failed, 30, "the revision to fail")
    assert "runAsNonRoot" in message and "root" in message
    assert "runAsNonRoot" in platform.cli("describe", "service", "rootless").stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_run_as_user_runs_the_replica_as_that_user(platform: Platform) -> None:
    if not others_can_read(HELLO_DIR / "app.py"):
        pytest.skip(NOT_FOR_OTHERS)
    service = hello_service("nobody", annotations={"autoscaling.knative.dev/min-scale": "1"})
    container = service["spec"]["template"]["spec"]["containers"][0]
    # tidal's own interpreter may live where nobody cannot read; the system one is world-readable
    container["command"] = ["/usr/bin/python3", "app.py"]
    container["workingDir"] = str(HELLO_DIR)
    container["securityContext"] = {
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "allowPrivilegeEscalation": False,
    }
    platform.apply(service)
    platform.wait_ready("nobody", timeout=60)
    [replica] = platform.replicas("nobody")
    status = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{replica['pid']}/status").read_text().splitlines()
    )
    assert status["Uid"].split() == ["65534"] * 4
    assert status["Groups"].strip() == ""
    assert status["NoNewPrivs"].strip() == "1"
    assert platform.request(host("nobody"))[0] == 200


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any process's environment anyway")
def test_a_process_of_the_same_user_cannot_read_tidals_environment(platform: Platform) -> None:
    assert platform.process is not None
    reader = subprocess.run(
        ["cat", f"/proc/{platform.process.pid}/environ"], capture_output=True, text=True
    )
    assert reader.returncode != 0 and "Permission denied" in reader.stderr
