"""End to end through the CLI and the gateway: `tidal up` as a child process, real replicas."""

from __future__ import annotations

import asyncio
import collections
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.integration.harness import (
    FOREIGN_UID,
    HELLO_DIR,
    Platform,
    concurrent_gets,
    hello_service,
    host,
    knative_export,
    run,
    wait_until,
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("serving")).start()
    yield p
    p.stop()


def test_apply_creates_revision_and_serves(platform):
    out = platform.apply(hello_service("hello", env={"TARGET": "tests"})).stdout
    assert "service/hello created (revision hello-00001" in out
    status, headers, body = platform.request(host("hello"), "/env")
    assert status == 200
    assert headers["X-Tidal-Revision"] == "hello-00001"
    env = json.loads(body)
    assert env["K_SERVICE"] == "hello" and env["K_CONFIGURATION"] == "hello"
    assert env["K_REVISION"] == "hello-00001" and env["TARGET"] == "tests"
    assert env["PORT"].isdigit()
    service = platform.wait_ready("hello")
    assert service["status"]["latestReadyRevisionName"] == "hello-00001"
    assert service["status"]["url"] == "http://hello.default.example.com"
    revisions = platform.get_json("revisions")["items"]
    assert [
        r["metadata"]["name"]
        for r in revisions
        if r["metadata"]["labels"]["serving.knative.dev/service"] == "hello"
    ] == ["hello-00001"]
    # Applying the same template again makes no new revision.
    assert (
        "revision hello-00001"
        in platform.apply(hello_service("hello", env={"TARGET": "tests"})).stdout
    )
    replicas = platform.replicas("hello")
    assert replicas and {"revision", "pool", "state", "port"} <= set(replicas[0])
    assert replicas[0]["pool"] == "local"


def test_unknown_host_is_404(platform):
    status, _headers, body = platform.request("nobody.default.example.com")
    assert status == 404
    assert b"no service answers host" in body


def test_a_cluster_local_service_answers_only_its_cluster_local_names(platform):
    """networking.knative.dev/visibility: cluster-local, as in Knative: no external host, and the
    cluster-local names answer this machine (the default gateway.cluster-networks)."""
    private = hello_service("private")
    private["metadata"]["labels"] = {"networking.knative.dev/visibility": "cluster-local"}
    out = platform.apply(private).stdout
    assert "url http://private.default.svc.cluster.local" in out
    status, _, body = platform.request(host("private"), "/")
    assert status == 404 and b"no service answers host" in body
    for name in ("private.default.svc.cluster.local", "private.default.svc", "private.default"):
        status, headers, _ = platform.request(name, "/")
        assert status == 200 and headers["X-Tidal-Revision"] == "private-00001", name
    service = platform.service("private")["status"]
    assert service["address"]["url"] == service["url"] == "http://private.default.svc.cluster.local"
    del private["metadata"]["labels"]  # public again: the external host answers too
    platform.apply(private)
    assert platform.request(host("private"), "/")[0] == 200
    assert platform.service("private")["status"]["url"] == f"http://{host('private')}"


def test_scale_from_zero_holds_all_50_first_requests(platform):
    # At CC 1 and at most 2 replicas, 50 is more than their queue-proxies would hold
    # (10 x CC each): at zero the activator holds them all, as Knative's does.
    platform.apply(
        hello_service(
            "cold",
            cc=1,
            env={"STARTUP_DELAY": "1"},
            annotations={"autoscaling.knative.dev/max-scale": "2"},
        )
    )
    platform.wait_ready("cold")
    # Let the initial replica go: stable window 6 s + grace 1 s.
    wait_until(lambda: not platform.replicas("cold"), 40, "cold to scale to zero", period=0.5)
    results = run(concurrent_gets(platform.gateway, host("cold"), 50, "/?sleep=50"))
    statuses = collections.Counter(status for status, _, _ in results)
    assert statuses == {200: 50}, statuses
    assert all(revision == "cold-00001" for _, revision, _ in results)
    metrics = platform.api("GET", "/metrics")[1].decode()
    assert (
        'tidal_cold_starts_total{namespace="default",revision="cold-00001",service="cold"}'
        in metrics
    )


def test_scale_up_under_load_then_down_to_zero(platform):
    platform.apply(hello_service("load", annotations={"autoscaling.knative.dev/target": "2"}))
    platform.wait_ready("load")

    async def load() -> list[int]:
        deadline = time.monotonic() + 8
        statuses: list[int] = []
        while time.monotonic() < deadline:
            batch = await concurrent_gets(platform.gateway, host("load"), 10, "/?sleep=300")
            statuses += [s for s, _, _ in batch]
        return statuses

    statuses = run(load())
    assert set(statuses) == {200}
    peak = platform.revision("load-00001")["status"]["desiredReplicas"]
    assert peak >= 3, f"10 concurrent requests at target 2 should need >= 3 replicas, got {peak}"
    wait_until(lambda: platform.ready_replicas("load") >= 3, 20, "replicas to be ready")
    wait_until(lambda: not platform.replicas("load"), 60, "load to scale to zero", period=0.5)
    assert platform.revision("load-00001")["status"]["desiredReplicas"] == 0


def test_traffic_split_tags_and_rollback(platform):
    platform.apply(hello_service("split", env={"TARGET": "v1"}))
    platform.wait_ready("split")
    platform.apply(hello_service("split", env={"TARGET": "v2"}))
    wait_until(
        lambda: platform.service("split")["status"].get("latestReadyRevisionName") == "split-00002",
        30,
        "split-00002 to be ready",
    )
    platform.cli(
        "traffic",
        "split",
        "--to",
        "split-00001=80",
        "--to",
        "split-00002=20",
        "--tag",
        "split-00001=stable",
        "--tag",
        "split-00002=canary",
    )
    results = run(concurrent_gets(platform.gateway, host("split"), 2000, concurrency=10))
    counts = collections.Counter(rev for status, rev, _ in results if status == 200)
    assert sum(counts.values()) == 2000
    share = counts["split-00001"] / 2000
    assert 0.75 <= share <= 0.85, counts
    # Tag hosts send everything to their revision.
    assert platform.request(host("split", "canary"))[1]["X-Tidal-Revision"] == "split-00002"
    assert platform.request(host("split", "stable"))[1]["X-Tidal-Revision"] == "split-00001"
    route = platform.get_json("routes", "split")
    assert {t.get("tag"): t["percent"] for t in route["status"]["traffic"]} == {
        "stable": 80,
        "canary": 20,
    }
    # Rollback: one command, effective for the next request.
    platform.cli("traffic", "split", "--to", "split-00001=100")
    for _ in range(20):
        assert platform.request(host("split"))[1]["X-Tidal-Revision"] == "split-00001"


def test_container_concurrency_overload_sheds_with_503(platform):
    # Target burst capacity 0 takes the activator out of the path once the replica is ready;
    # CC 1 and at most 1 replica: its queue-proxy holds 10 x CC x 1 = 10 waiting requests.
    annotations = {
        "autoscaling.knative.dev/max-scale": "1",
        "autoscaling.knative.dev/target-burst-capacity": "0",
    }
    platform.apply(hello_service("narrow", cc=1, annotations=annotations))
    platform.wait_ready("narrow")

    def out_of_path() -> bool:  # as the gateway processes read it, after a decision tick
        state = json.loads(platform.api("GET", "/apis/tidal.dev/v1/gateway/state")[1])
        return state["revisions"]["default/narrow-00001"]["activatorInPath"] is False

    wait_until(out_of_path, 10, "the activator to leave narrow's path")
    results = run(concurrent_gets(platform.gateway, host("narrow"), 30, "/?sleep=200"))
    statuses = collections.Counter(status for status, _, _ in results)
    assert statuses[503] > 0 and statuses[200] >= 10, statuses
    assert set(statuses) == {200, 503}, statuses
    shed = [body for status, _, body in results if status == 503]
    full = "pending request queue full (10 waiting: 10 x CC 1 per ready replica)"
    assert all(full in body for body in shed), shed[:1]
    # describe says why: the activator is out of the path (Knative's SKS Serve mode).
    assert "Serve mode (up to 10 wait)" in platform.cli("describe", "service", "narrow").stdout


def test_crashing_app_fails_revision_with_reason(platform):
    doc = hello_service("crash")
    doc["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "python",
        "-c",
        "import sys; print('model weights missing'); sys.exit(3)",
    ]
    platform.apply(doc)

    def failed():
        conditions = platform.revision("crash-00001")["status"]["conditions"]
        return next((c for c in conditions if c["status"] == "False"), None)

    condition = wait_until(failed, 20, "crash-00001 to fail")
    assert condition["reason"] == "ExitCode3"
    assert "model weights missing" in condition["message"]
    status, _, body = platform.request(host("crash"), timeout=10)
    assert status == 503 and b"ExitCode3" in body and b"model weights missing" in body
    described = platform.cli("describe", "service", "crash").stdout
    assert "RevisionFailed" in described and "model weights missing" in described


def test_never_ready_app_fails_at_progress_deadline(platform):
    doc = hello_service("stuck", annotations={"serving.knative.dev/progress-deadline": "3s"})
    doc["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "python",
        "-c",
        "import time; print('loading forever', flush=True); time.sleep(600)",
    ]
    platform.apply(doc)
    started = time.monotonic()
    status, _, body = platform.request(host("stuck"), timeout=20)
    assert status == 503 and b"ProgressDeadlineExceeded" in body
    assert time.monotonic() - started < 10
    assert "loading forever" in platform.cli("logs", "stuck").stdout


def test_tidal_exec_runs_a_command_in_a_ready_replica(platform):
    """`tidal exec` (the CLI's side of pod exec): the replica's environment and folder, stdin
    passed with -i, the command's exit code as the CLI's, and why when none is ready."""
    platform.apply(hello_service("shell", {"autoscaling.knative.dev/min-scale": "1"}))
    platform.wait_ready("shell")
    ran = platform.cli(
        "exec", "shell", "--", "sh", "-c", "echo $K_REVISION; pwd; exit 4", check=False
    )
    assert ran.returncode == 4 and ran.stdout.splitlines() == ["shell-00001", str(HELLO_DIR)]
    piped = platform.cli("exec", "-i", "shell", "--", "sh", "-c", "wc -c", stdin="12345")
    assert piped.stdout.strip() == "5"
    missing = platform.cli("exec", "nothing", "--", "true", check=False)
    assert missing.returncode == 1 and "no ready service 'nothing' in default" in missing.stderr
    platform.cli("delete", "service", "shell")


def test_tidal_port_forward_reaches_a_replica_until_it_ends(platform):
    """`tidal port-forward` (the CLI's side of pod port-forward): local ports to the replica's
    serving port, a port it cannot have reported without ending the others, and the end of
    the replica ending the forward."""
    platform.apply(hello_service("tunnel", {"autoscaling.knative.dev/min-scale": "1"}))
    platform.wait_ready("tunnel")
    command = [sys.executable, "-m", "tidal", "--server", platform.admin]
    forward = subprocess.Popen(
        [*command, "port-forward", "tunnel", ":8080", ":9999"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=platform.env,
    )
    try:
        assert forward.stdout is not None and forward.stderr is not None
        lines = [forward.stdout.readline() for _ in range(2)]
        serving, other = (int(line.split(":")[1].split()[0]) for line in lines)
        assert lines[1].endswith("-> 9999\n")
        for _ in range(2):  # one connection after another
            connection = http.client.HTTPConnection("127.0.0.1", serving, timeout=10)
            connection.request("GET", "/")
            assert connection.getresponse().read() == b"Hello from tunnel-00001!\n"
            connection.close()
        with socket.create_connection(("127.0.0.1", other), timeout=10) as refused:
            assert refused.recv(10) == b""
        assert "only its serving port can be forwarded" in forward.stderr.readline()
        [replica] = platform.replicas("tunnel")
        platform.api("DELETE", f"/api/v1/namespaces/default/pods/{replica['name']}")
        assert forward.wait(timeout=30) == 1
        assert "lost connection to the replica" in forward.stderr.read()
    finally:
        forward.kill()
        forward.wait()
    platform.cli("delete", "service", "tunnel")


def test_logs_and_metrics(platform):
    platform.apply(hello_service("logs"))
    platform.request(host("logs"))
    assert "listening on http://127.0.0.1:" in platform.cli("logs", "logs").stdout
    metrics = platform.api("GET", "/metrics")[1].decode()
    for name in (
        "tidal_requests_total",
        "tidal_request_duration_seconds_bucket",
        "tidal_inflight_requests",
        "tidal_desired_replicas",
        "tidal_ready_replicas",
        "tidal_replica_startup_seconds_bucket",
    ):
        assert name in metrics, name
    assert 'revision="logs-00001",service="logs"' in metrics


def test_exited_replica_is_replaced(platform):
    platform.apply(hello_service("phoenix", annotations={"autoscaling.knative.dev/min-scale": "1"}))
    platform.wait_ready("phoenix")
    [replica] = wait_until(
        lambda: [r for r in platform.replicas("phoenix") if r["state"] == "Ready"],
        20,
        "a ready replica",
    )
    os.kill(replica["pid"], signal.SIGKILL)
    replacement = wait_until(
        lambda: [
            r
            for r in platform.replicas("phoenix")
            if r["state"] == "Ready" and r["pid"] != replica["pid"]
        ],
        20,
        "a replacement replica",
    )
    assert len(replacement) == 1
    assert platform.request(host("phoenix"))[0] == 200
    # Where a user sees why: a Warning event on the service, in `tidal describe` too.
    why = f'Replica {replica["name"]} of revision "phoenix-00001": exited with code -9'
    assert ("Warning", "ReplicaExited", why) in service_events(platform, "phoenix")
    described = platform.cli("describe", "service", "phoenix").stdout
    assert "ReplicaExited" in described and "exited with code -9" in described


def service_events(platform, name):
    events = json.loads(platform.api("GET", "/api/v1/namespaces/default/events")[1])["items"]
    return [
        (e["type"], e["reason"], e["message"])
        for e in events
        if e["involvedObject"]["kind"] == "Service" and e["involvedObject"]["name"] == name
    ]


def test_a_replica_failing_its_liveness_probe_is_replaced(platform):
    """examples/hello's /healthz turns 503 UNHEALTHY_AFTER seconds after it starts."""
    doc = hello_service(
        "wedged",
        annotations={"autoscaling.knative.dev/min-scale": "1"},
        env={"UNHEALTHY_AFTER": "2"},
    )
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"] = {
        "httpGet": {"path": "/healthz"},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    platform.apply(doc)
    platform.wait_ready("wedged")
    [first] = platform.replicas("wedged")
    wait_until(
        lambda: any(r["name"] != first["name"] for r in platform.replicas("wedged")),
        30,
        "a replacement of the wedged replica",
    )
    why = (
        f'Replica {first["name"]} of revision "wedged-00001": killed after its liveness probe '
        "failed 2 times in a row (HTTP 503 from /healthz)"
    )
    assert ("Warning", "ReplicaExited", why) in service_events(platform, "wedged")
    assert platform.request(host("wedged"))[0] == 200  # a fresh replica serves meanwhile
    platform.cli("delete", "service", "wedged")


def test_startup_and_exec_probes_gate_a_loading_model(platform, tmp_path):
    """A startupProbe keeps a replica that listens out of routing until its model is loaded
    (here: a file exists), and an exec livenessProbe replaces it once it is wedged."""
    loaded, wedged = tmp_path / "model.bin", tmp_path / "wedged"
    doc = hello_service("loader", annotations={"autoscaling.knative.dev/min-scale": "1"})
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["startupProbe"] = {
        "exec": {"command": ["test", "-f", str(loaded)]},
        "periodSeconds": 1,
        "failureThreshold": 60,
    }
    check = f"import os, sys; sys.exit(os.path.exists({str(wedged)!r}))"
    container["livenessProbe"] = {
        "exec": {"command": ["python", "-c", check]},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    platform.apply(doc)
    wait_until(lambda: platform.replicas("loader"), 10, "a loader replica")
    time.sleep(2)  # hello listens within a second; the startup probe still fails
    assert [r["state"] for r in platform.replicas("loader")] == ["Starting"]
    loaded.touch()
    platform.wait_ready("loader")
    assert platform.request(host("loader"))[0] == 200
    [first] = platform.replicas("loader")
    wedged.touch()
    wait_until(
        lambda: any(r["name"] != first["name"] for r in platform.replicas("loader")),
        30,
        "a replacement of the wedged replica",
    )
    wedged.unlink()
    why = (
        f'Replica {first["name"]} of revision "loader-00001": killed after its liveness probe '
        f"failed 2 times in a row (exec python -c {shlex.quote(check)} exited with code 1)"
    )
    assert ("Warning", "ReplicaExited", why) in service_events(platform, "loader")
    platform.cli("delete", "service", "loader")


def test_a_revision_failing_its_startup_probe_fails_with_why(platform):
    doc = hello_service("unloaded")
    doc["spec"]["template"]["spec"]["containers"][0]["startupProbe"] = {
        "exec": {"command": ["ls", "model.bin"]},
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    platform.apply(doc)
    status, _, body = platform.request(host("unloaded"), timeout=20)
    assert status == 503 and b"StartupProbeFailed" in body
    condition = next(
        c
        for c in platform.revision("unloaded-00001")["status"]["conditions"]
        if c["status"] == "False"
    )
    assert condition["reason"] == "StartupProbeFailed"
    assert condition["message"].startswith(
        "killed after its startup probe failed 2 times in a row (exec ls model.bin exited with "
        "code 2: ls: cannot access 'model.bin'"
    )
    platform.cli("delete", "service", "unloaded")


def test_a_service_exported_from_a_knative_cluster_applies_unedited(platform):
    """Moving a service from Knative: its exported YAML is applied as it is. The other cluster's
    uid and resourceVersion pin nothing here, and its server fields are not stored."""
    doc = knative_export("moved")
    assert "created" in platform.apply(doc).stdout
    platform.wait_ready("moved")
    assert platform.request(host("moved"))[0] == 200
    stored = platform.get_json("ksvc", "moved")
    assert stored["metadata"]["uid"] != FOREIGN_UID
    assert not {"managedFields", "selfLink"} & set(stored["metadata"])
    template = stored["spec"]["template"]
    assert "creationTimestamp" not in template["metadata"]
    assert template["spec"]["enableServiceLinks"] is False
    assert template["spec"]["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert "unchanged" in platform.apply(doc).stdout  # again, unedited
    # A document read here stays pinned to the version it was read at.
    stale = platform.get_json("ksvc", "moved")
    platform.apply(hello_service("moved", env={"TARGET": "v2"}))
    conflict = platform.apply(stale, check=False)
    assert conflict.returncode != 0 and "was modified" in conflict.stderr
    platform.cli("delete", "service", "moved")


ENV_APP = """
import http.server, json, os
class Env(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(dict(os.environ)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Env).serve_forever()
"""


def test_secrets_and_config_maps_reach_the_environment(platform):
    """A model's token and settings, applied with the service in one file, reach its replica's
    environment; the revision holds only the references, and a missing one is refused."""
    service = hello_service("tokens")
    container = service["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python", "-c", ENV_APP]
    container["env"] = [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        {"name": "MODEL_CARD", "value": "$(MODEL_NAME)-x$(MODEL_THREADS) on $$(PORT)"},
    ]
    container["envFrom"] = [{"configMapRef": {"name": "model-config"}, "prefix": "MODEL_"}]
    refused = platform.apply(service, check=False)
    assert refused.returncode != 0
    assert 'env HF_TOKEN: secret "hf" not found' in refused.stderr
    assert 'envFrom: configmap "model-config" not found' in refused.stderr
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "hf"},
        "stringData": {"token": "hf_s3cret"},
    }
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "model-config"},
        "data": {"NAME": "small", "THREADS": "4"},
    }
    out = platform.apply(secret, config, service).stdout
    assert "secret/hf created" in out and "configmap/model-config created" in out
    platform.wait_ready("tokens")
    status, _, body = platform.request(host("tokens"))
    env = json.loads(body)
    assert status == 200 and env["HF_TOKEN"] == "hf_s3cret"
    assert (env["MODEL_NAME"], env["MODEL_THREADS"]) == ("small", "4")
    assert env["MODEL_CARD"] == "small-x4 on $(PORT)"  # references expanded, as the kubelet does
    assert "hf_s3cret" not in platform.cli("get", "revision", "tokens-00001", "-o", "yaml").stdout
    listed = platform.cli("get", "secrets").stdout
    assert "hf" in listed and "Opaque" in listed and "hf_s3cret" not in listed
    assert "model-config" in platform.cli("get", "configmaps").stdout
    assert platform.cli("delete", "secret", "hf").stdout.strip() == "secret/hf deleted"
    assert platform.request(host("tokens"))[0] == 200  # a running replica keeps its values
    platform.cli("delete", "service", "tokens")
    platform.cli("delete", "configmap", "model-config")


def test_scale_in_drains_in_flight_requests(platform):
    platform.apply(hello_service("drain", env={"TARGET": "v1"}))
    platform.wait_ready("drain")

    async def slow_request_then_move_traffic():
        slow = asyncio.ensure_future(
            concurrent_gets(platform.gateway, host("drain"), 1, "/?sleep=2500")
        )
        await asyncio.sleep(0.5)
        # v2 takes all traffic: v1 becomes unreachable and scales to zero while serving.
        await asyncio.to_thread(platform.apply, hello_service("drain", env={"TARGET": "v2"}))
        return await slow

    [(status, revision, _)] = run(slow_request_then_move_traffic())
    assert (status, revision) == (200, "drain-00001")
    wait_until(
        lambda: not [r for r in platform.replicas("drain") if r["revision"] == "drain-00001"],
        30,
        "drain-00001 to scale to zero",
    )


def test_delete_service(platform):
    platform.apply(hello_service("gone"))
    platform.request(host("gone"))
    assert "service/gone deleted" in platform.cli("delete", "service", "gone").stdout
    assert platform.request(host("gone"))[0] == 404
    assert not platform.replicas("gone")
    result = platform.cli("get", "services", "gone", check=False)
    assert result.returncode != 0 and 'services "gone" not found' in result.stderr
