"""`tidal kubernetes controller` as the controller pod runs it: a process of its own with a
kubeconfig for the emulator, its webhook certificate and its token, as the install gives them.
What kubectl writes reaches it through the watch, what it would refuse is refused by its
webhook over TLS, and the tidal CLI sees the same services."""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client import ApiClient

from tests.kubernetes.controllers import SERVICE, admission_review, as_stored
from tests.kubernetes.emulator import FakeCluster, ThreadedEmulator, eventually
from tidal.security.localca import issue_once

TOKEN = "controller-test-token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Controller:
    process: subprocess.Popen[bytes]
    admin: str
    webhook: str
    ca: Path
    log: Path

    def review(self, obj: dict[str, Any]) -> dict[str, Any]:
        body = admission_review("1", obj)
        request = urllib.request.Request(self.webhook, json.dumps(body).encode(), method="POST")
        context = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return json.loads(response.read())["response"]


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the controller exited: {log.read_text()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"the controller never listened on {port}: {log.read_text()}")


@pytest.fixture
def controller(emulator: ThreadedEmulator, tmp_path: Path) -> Iterator[Controller]:
    emulator.write_kubeconfig(tmp_path / "kubeconfig")
    config = {"pools": [{"name": "ecs", "kind": "reserved", "labels": {"pool": "ecs"}}]}
    (tmp_path / "tidal.yaml").write_text(yaml.safe_dump(config))
    ca, cert, key = issue_once(["127.0.0.1"], "test webhook CA")
    for name, pem in (("ca.crt", ca), ("tls.crt", cert), ("tls.key", key)):
        (tmp_path / name).write_bytes(pem)
    gateway, admin, webhook = free_port(), free_port(), free_port()
    log = tmp_path / "controller.log"
    command = [
        sys.executable,
        "-m",
        "tidal",
        "--kubeconfig",
        str(tmp_path / "kubeconfig"),
        "--token",
        TOKEN,
        "kubernetes",
        "controller",
        "--config",
        str(tmp_path / "tidal.yaml"),
        "--data-dir",
        str(tmp_path / "state"),
        "--webhook-cert",
        str(tmp_path / "tls.crt"),
        "--webhook-key",
        str(tmp_path / "tls.key"),
        "--host",
        "127.0.0.1",
        "--port",
        str(gateway),
        "--admin-port",
        str(admin),
        "--webhook-port",
        str(webhook),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(gateway, process, log)  # it listens once it leads and has restored
        yield Controller(
            process,
            f"http://127.0.0.1:{admin}",
            f"https://127.0.0.1:{webhook}/validate",
            tmp_path / "ca.crt",
            log,
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def test_the_controller_process_follows_kubectl_refuses_bad_specs_and_stops_on_sigterm(
    controller: Controller, api: ApiClient, cluster: FakeCluster
) -> None:
    bad = copy.deepcopy(SERVICE)
    bad["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] = "-1"
    denied = controller.review(bad)
    assert denied["allowed"] is False and "min-scale" in denied["status"]["message"]
    assert controller.review(SERVICE)["allowed"] is True

    crs = client.CustomObjectsApi(api)
    crs.create_namespaced_custom_object(
        "serving.tidal.dev",
        "v1",
        "default",
        "services",
        as_stored(SERVICE),
    )
    apps = client.AppsV1Api(api)

    def deployments() -> list[str]:
        return [d.metadata.name for d in apps.list_namespaced_deployment("default").items]

    await eventually(lambda: "hello-00001-ecs" in deployments(), 15, "the revision's Deployment")
    cli = [sys.executable, "-m", "tidal", "--server", controller.admin, "--token", TOKEN]
    listed = subprocess.run(
        [*cli, "get", "services"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "hello" in listed.stdout and "hello-00001" in listed.stdout

    # `tidal logs -f`: the pod's log, through the controller, as the kubelet writes it.
    await eventually(lambda: cluster.pods(), 15, "the replica's pod")
    (pod,) = cluster.pods()
    cluster.write_log(pod, "loading weights\nserving on :9000\n")
    cluster.ready(pod)
    follow = subprocess.Popen(
        [*cli, "logs", "hello", "-f", "--tail", "1"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert follow.stdout is not None
        header = await asyncio.wait_for(asyncio.to_thread(follow.stdout.readline), 20)
        assert header.startswith("==> hello-00001/")
        assert await asyncio.to_thread(follow.stdout.readline) == "serving on :9000\n"
        cluster.write_log(pod, "loading weights\nserving on :9000\nGET / 200\n")
        line = await asyncio.wait_for(asyncio.to_thread(follow.stdout.readline), 20)
        assert line == "GET / 200\n"
    finally:
        follow.kill()
        follow.wait(10)

    controller.process.send_signal(signal.SIGTERM)
    assert controller.process.wait(20) == 0, controller.log.read_text()
    assert "hello-00001-ecs" in deployments()  # left for the next leader
