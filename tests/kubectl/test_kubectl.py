"""The real `kubectl` against a running `tidal up`, with the kubeconfig `tidal up` writes.

kubectl never sees the user's ~/.kube: HOME points at the test's folder and every call names
the data dir's kubeconfig. Without a kubectl binary the module is skipped, saying why.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.controller.kubeapi.test_spdy import Client
from tests.integration.harness import (
    FOREIGN_UID,
    HELLO_DIR,
    REPO,
    Platform,
    hello_service,
    host,
    knative_export,
    kubectl_minor,
    wait_until,
)
from tidal.controller.kubeapi import spdy

KUBECTL = shutil.which("kubectl")
if KUBECTL is None:
    pytest.skip(
        "kubectl is not installed (CI installs Debian's kubernetes-client)",
        allow_module_level=True,
    )


class Kubectl:
    def __init__(self, platform: Platform, home: Path) -> None:
        self.platform = platform
        self.config = platform.data_dir / "kubeconfig"
        self.env = {**os.environ, "HOME": str(home)}
        self.env.pop("KUBECONFIG", None)

    def __call__(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [KUBECTL, "--kubeconfig", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            input=stdin,
            env=self.env,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result

    def stream(self, *args: str) -> subprocess.Popen[str]:
        """A kubectl that keeps running (`-w`, `logs -f`), its output read line by line."""
        return subprocess.Popen(
            [KUBECTL, "--kubeconfig", str(self.config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def apply(self, doc: dict[str, Any], *args: str, check: bool = True) -> Any:
        return self("apply", "-f", "-", *args, stdin=yaml.safe_dump(doc), check=check)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("kubectl")).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def kubectl(platform, tmp_path_factory):
    return Kubectl(platform, tmp_path_factory.mktemp("home"))


def example_hello(target: str) -> dict[str, Any]:
    """examples/hello/service.yaml as is, but for the folder: kubectl sends the manifest without
    saying where the file was, so `workingDir` must not be relative to it."""
    doc = yaml.safe_load((HELLO_DIR / "service.yaml").read_text())
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["workingDir"] = str(HELLO_DIR)
    container["env"] = [{"name": "TARGET", "value": target}]
    return doc


def revisions_of(kubectl: Kubectl, service: str) -> list[str]:
    items = kubectl.json("get", "revisions", "-l", f"serving.knative.dev/service={service}")
    return [r["metadata"]["name"] for r in items["items"]]


def header(output: str) -> list[str]:
    return re.split(r"\s{2,}", output.splitlines()[0].strip())


# -- discovery -------------------------------------------------------------------------------


def test_api_resources_and_version(kubectl):
    out = kubectl("api-resources").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "kservice,ksvc" in rows["services"] and "serving.knative.dev/v1" in rows["services"]
    assert " rev " in rows["revisions"] and " rt " in rows["routes"]
    assert "config,cfg" in rows["configurations"]
    assert "scheduling.alibabacloud.com/v1alpha1" in rows["resourcepolicies"]
    assert " dm " in rows["domainmappings"]
    assert "serving.knative.dev/v1beta1" in rows["domainmappings"]
    if kubectl_minor() >= 27:  # older clients have no --categories
        knative = kubectl("api-resources", "--categories", "knative", "-o", "name").stdout.split()
        assert set(knative) == {
            "services.serving.knative.dev",
            "revisions.serving.knative.dev",
            "routes.serving.knative.dev",
            "configurations.serving.knative.dev",
            "domainmappings.serving.knative.dev",
        }
    assert "v1.32.0+tidal" in kubectl("version").stdout


def test_explain_from_published_openapi(kubectl):
    if kubectl_minor() < 27:
        pytest.skip("kubectl before 1.27 explains from OpenAPI v2 protobuf; tidal publishes v3")
    out = kubectl("explain", "ksvc.spec.template").stdout
    assert "KIND:       Service" in out and "GROUP:      serving.knative.dev" in out
    assert re.search(r"^\s+spec\s+<RevisionSpec> -required-", out, re.M)
    env = kubectl("explain", "ksvc.spec.template.spec.containers.env").stdout
    assert re.search(r"^\s+name\s+<string> -required-", env, re.M)
    bad = kubectl("explain", "ksvc.spec.nosuchfield", check=False)
    assert bad.returncode != 0 and "nosuchfield" in bad.stderr


# -- apply, get, serve -----------------------------------------------------------------------


def test_apply_example_is_served_and_listed(platform, kubectl):
    out = kubectl.apply(example_hello("kubectl")).stdout
    assert out.strip() == "service.serving.knative.dev/hello created"
    kubectl("wait", "--for=condition=Ready", "ksvc/hello", "--timeout=60s")
    status, headers, body = platform.request(host("hello"), "/env")
    assert status == 200 and headers["X-Tidal-Revision"] == "hello-00001"
    assert json.loads(body)["TARGET"] == "kubectl"
    # Two doors into one store: tidal sees what kubectl applied.
    assert platform.service("hello")["status"]["latestReadyRevisionName"] == "hello-00001"

    svc = kubectl.json("get", "ksvc", "hello")
    meta, status_ = svc["metadata"], svc["status"]
    assert {"uid", "resourceVersion", "generation", "creationTimestamp"} <= set(meta)
    assert status_["url"] == "http://hello.default.example.com"
    assert status_["latestCreatedRevisionName"] == status_["latestReadyRevisionName"]
    assert status_["traffic"] == [
        {"latestRevision": True, "percent": 100, "revisionName": "hello-00001"}
    ]
    assert {"type": "Ready", "status": "True"} in status_["conditions"]


def test_a_relative_working_dir_is_taken_with_a_warning_that_says_where(platform, kubectl):
    """kubectl sends no file location: the bundled example's `workingDir: "."` would run in
    tidal up's folder, and kubectl prints the API server's warning saying so."""
    doc = yaml.safe_load((HELLO_DIR / "service.yaml").read_text())
    doc["metadata"]["name"] = "relative"
    out = kubectl.apply(doc, "--dry-run=server")
    assert "configured (server dry run)" in out.stdout or "created (server dry run)" in out.stdout
    assert "Warning: spec.template.spec.containers[0].workingDir '.' is relative" in out.stderr
    assert f"it is {Path(platform.workdir).resolve()} (from the folder tidal up runs in)" in (
        out.stderr
    )
    assert "Warning" not in kubectl.apply(example_hello("kubectl"), "--dry-run=server").stderr


def test_a_service_exported_from_a_knative_cluster_applies_unedited(platform, kubectl):
    """The same export `tidal apply` takes (tests/integration/test_serving.py), by kubectl."""
    doc = knative_export("moved-by-kubectl")
    assert "created" in kubectl.apply(doc).stdout
    stored = kubectl.json("get", "ksvc", "moved-by-kubectl")
    assert stored["metadata"]["uid"] != FOREIGN_UID and "managedFields" not in stored["metadata"]
    kubectl.apply(doc)  # again, unedited: kubectl patches, and no new revision comes of it
    again = kubectl.json("get", "ksvc", "moved-by-kubectl")
    assert again["status"]["latestCreatedRevisionName"] == "moved-by-kubectl-00001"
    assert again["metadata"]["generation"] == stored["metadata"]["generation"]
    kubectl("delete", "ksvc", "moved-by-kubectl")


def test_secrets_and_config_maps(kubectl):
    """A Secret's YAML piped to `kubectl apply` (JSON on the wire) and a ConfigMap applied."""
    made = kubectl(
        "create",
        "secret",
        "generic",
        "hf",
        "--from-literal=token=s3cret",
        "--dry-run=client",
        "-o",
        "yaml",
    ).stdout
    assert "secret/hf created" in kubectl("apply", "-f", "-", stdin=made).stdout
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "model"},
        "data": {"NAME": "small"},
    }
    assert "configmap/model created" in kubectl.apply(config).stdout
    listed = kubectl("get", "secrets").stdout
    assert re.search(r"^hf\s+Opaque\s+1\s+", listed, re.M), listed
    assert re.search(r"^model\s+1\s+", kubectl("get", "cm").stdout, re.M)
    stored = kubectl.json("get", "secret", "hf")
    assert base64.b64decode(stored["data"]["token"]) == b"s3cret"
    kubectl("delete", "secret", "hf")
    kubectl("delete", "configmap", "model")
    assert "No resources found" in kubectl("get", "secrets").stderr


def test_kubectl_create_secret_and_configmap_in_protobuf(kubectl, tmp_path):
    """`kubectl create secret|configmap` send Kubernetes' protobuf, which tidal reads for these
    two kinds (tidal.controller.kubeapi.protobuf), with kubectl's own error words."""
    created = kubectl("create", "secret", "generic", "hf", "--from-literal=token=s3cret").stdout
    assert "secret/hf created" in created
    settings = tmp_path / "llm.yaml"
    settings.write_text("model: small\n")
    made = kubectl(
        "create", "configmap", "llm", f"--from-file={settings}", "--from-literal=threads=4"
    )
    assert "configmap/llm created" in made.stdout
    registry = kubectl(
        "create",
        "secret",
        "docker-registry",
        "registry",
        "--docker-server=registry.example",
        "--docker-username=u",
        "--docker-password=p",
    )
    assert "secret/registry created" in registry.stdout
    stored = kubectl.json("get", "secret", "hf")
    assert base64.b64decode(stored["data"]["token"]) == b"s3cret"
    assert stored["type"] == "Opaque"
    assert kubectl.json("get", "secret", "registry")["type"] == "kubernetes.io/dockerconfigjson"
    assert kubectl.json("get", "cm", "llm")["data"] == {
        "llm.yaml": "model: small\n",
        "threads": "4",
    }
    again = kubectl("create", "secret", "generic", "hf", "--from-literal=a=b", check=False)
    assert again.returncode != 0 and 'secrets "hf" already exists' in again.stderr
    bad = kubectl("create", "configmap", "Bad_Name", "--from-literal=a=b", check=False)
    assert bad.returncode != 0 and 'ConfigMap "Bad_Name" is invalid: metadata.name' in bad.stderr
    for kind, name in (("secret", "hf"), ("secret", "registry"), ("configmap", "llm")):
        kubectl("delete", kind, name)


def test_get_columns_and_output_formats(kubectl):
    out = kubectl("get", "ksvc").stdout
    assert header(out) == ["NAME", "URL", "LATESTCREATED", "LATESTREADY", "READY", "REASON"]
    assert re.search(
        r"^hello\s+http://hello.default.example.com\s+hello-00001\s+hello-00001\s+True", out, re.M
    )
    revs = kubectl("get", "revisions").stdout
    assert header(revs) == [
        "NAME", "CONFIG NAME", "GENERATION", "READY", "REASON", "ACTUAL REPLICAS",
        "DESIRED REPLICAS",
    ]  # fmt: skip
    assert re.search(r"^hello-00001\s+hello\s+1\s+True\s+\d+\s+\d+", revs, re.M)
    assert header(kubectl("get", "routes.serving.knative.dev").stdout) == [
        "NAME", "URL", "READY", "REASON",
    ]  # fmt: skip
    cfg = kubectl("get", "configurations").stdout
    assert header(cfg) == ["NAME", "LATESTCREATED", "LATESTREADY", "READY", "REASON"]
    assert header(kubectl("get", "ksvc", "-A").stdout)[0] == "NAMESPACE"
    assert "hello" in kubectl("get", "kservice", "-o", "wide", "-n", "default").stdout
    assert (
        "No resources found in elsewhere namespace"
        in kubectl("get", "ksvc", "-n", "elsewhere").stderr
    )
    assert kubectl("get", "ksvc", "-o", "name").stdout.split() == [
        "service.serving.knative.dev/hello"
    ]
    url = kubectl("get", "ksvc", "hello", "-o", "jsonpath={.status.url}").stdout
    assert url == "http://hello.default.example.com"
    listed = yaml.safe_load(kubectl("get", "rt", "-o", "yaml").stdout)
    assert listed["items"][0]["status"]["traffic"][0]["revisionName"] == "hello-00001"
    assert kubectl("get", "rev", "-l", "serving.knative.dev/service=hello", "-o", "name").stdout
    assert (
        "No resources found"
        in kubectl("get", "rev", "-l", "serving.knative.dev/service!=hello").stderr
    )
    assert (
        "hello-00001"
        in kubectl(
            "get", "rev", "-l", "serving.knative.dev/configurationGeneration in (1,2)"
        ).stdout
    )


def test_apply_changes_client_and_server_side_and_dry_run(kubectl):
    out = kubectl.apply(example_hello("second")).stdout
    assert out.strip() == "service.serving.knative.dev/hello configured"
    assert revisions_of(kubectl, "hello") == ["hello-00001", "hello-00002"]
    out = kubectl.apply(example_hello("third"), "--server-side").stdout
    assert out.strip() == "service.serving.knative.dev/hello serverside-applied"
    assert revisions_of(kubectl, "hello")[-1] == "hello-00003"
    out = kubectl.apply(example_hello("fourth"), "--dry-run=server", "-o", "json").stdout
    planned = json.loads(out)
    assert planned["status"]["latestCreatedRevisionName"] == "hello-00004"
    assert revisions_of(kubectl, "hello")[-1] == "hello-00003"
    stored = kubectl.json("get", "ksvc", "hello")
    assert stored["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] == "third"
    kubectl("wait", "--for=condition=Ready", "ksvc/hello", "--timeout=60s")


def test_patch_traffic_takes_effect_for_next_request(platform, kubectl):
    kubectl(
        "patch", "ksvc", "hello", "--type", "merge", "-p",
        '{"spec":{"traffic":[{"revisionName":"hello-00001","percent":100}]}}',
    )  # fmt: skip
    status, headers, _ = platform.request(host("hello"))
    assert status == 200 and headers["X-Tidal-Revision"] == "hello-00001"
    kubectl(
        "patch", "ksvc", "hello", "--type", "json", "-p",
        '[{"op":"replace","path":"/spec/traffic",'
        '"value":[{"latestRevision":true,"percent":100}]}]',
    )  # fmt: skip
    route = kubectl.json("get", "route", "hello")
    assert route["status"]["traffic"][0]["revisionName"] == "hello-00003"
    # Rollout to the latest revision may be gradual; the route says where it ends.
    wait_until(
        lambda: platform.request(host("hello"))[1]["X-Tidal-Revision"] == "hello-00003",
        30,
        "traffic back on hello-00003",
    )


def test_watch_streams_a_change(kubectl):
    watch = kubectl.stream("get", "ksvc", "hello", "-w")
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()
        assert first.split()[0] == "NAME"
        assert watch.stdout.readline().split()[2] == "hello-00003"
        kubectl.apply(example_hello("watched"))
        deadline = time.monotonic() + 30
        seen = ""
        while "hello-00004" not in seen and time.monotonic() < deadline:
            seen += watch.stdout.readline()
        assert re.search(r"^hello\s+\S+\s+hello-00004\s", seen, re.M), seen
    finally:
        watch.terminate()
        watch.wait(timeout=10)
    kubectl("wait", "--for=condition=Ready", "ksvc/hello", "--timeout=60s")


def logged_service(folder: Path, name: str = "logged", pinned: bool = False) -> dict[str, Any]:
    """A process that logs each request it serves (Python's http.server, to stderr); `pinned`:
    one replica always (min-scale 1)."""
    server = f"exec {sys.executable} -u -m http.server $PORT --bind 127.0.0.1"
    template: dict[str, Any] = {
        "spec": {"containers": [{"command": ["sh", "-c", server], "workingDir": str(folder)}]}
    }
    if pinned:
        template["metadata"] = {"annotations": {"autoscaling.knative.dev/min-scale": "1"}}
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": template},
    }


def test_pods_are_the_replicas_with_their_logs_and_a_deleted_one_is_replaced(
    platform, kubectl, tmp_path
):
    kubectl.apply(logged_service(tmp_path))
    kubectl("wait", "--for=condition=Ready", "ksvc/logged", "--timeout=60s")
    selector = "serving.knative.dev/service=logged"
    [pod] = kubectl.json("get", "pods", "-l", selector)["items"]
    name = pod["metadata"]["name"]
    assert name.startswith("logged-00001-") and pod["status"]["phase"] == "Running"
    assert pod["metadata"]["labels"]["serving.knative.dev/revision"] == "logged-00001"
    listed = kubectl("get", "pods", "-l", selector).stdout
    assert header(listed) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert re.split(r"\s+", listed.splitlines()[1])[:4] == [name, "1/1", "Running", "0"]

    follow = kubectl.stream("logs", "-f", f"pod/{name}")
    try:
        time.sleep(1)  # following from here on
        assert platform.request(host("logged"), "/followed")[0] == 404
        assert follow.stdout is not None
        deadline = time.monotonic() + 30
        seen = ""
        while '"GET /followed HTTP/1.1" 404' not in seen and time.monotonic() < deadline:
            seen += follow.stdout.readline()
        assert '"GET /followed HTTP/1.1" 404' in seen, seen
    finally:
        follow.terminate()
        follow.wait(timeout=10)
    assert "GET /followed" in kubectl("logs", name, "--tail=1").stdout

    def top() -> list[str] | None:  # once the replica has been measured (the sampler's period)
        shown = kubectl("top", "pod", "-l", selector, check=False).stdout.splitlines()
        return shown if len(shown) == 2 else None

    heading, row = wait_until(top, 60, "kubectl top to show the replica", period=1)
    assert heading.split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert row.split()[0] == name and row.split()[2].endswith("Mi")
    wrong = kubectl("logs", name, "-c", "sidecar", check=False)
    assert (
        wrong.returncode != 0 and f"container sidecar is not valid for pod {name}" in wrong.stderr
    )

    watch = kubectl.stream("get", "pods", "-l", selector, "-w", "--output-watch-events")
    described = kubectl("describe", "pod", name).stdout.split("Events:")[1]
    assert re.search(rf"Normal\s+Scheduled\s.*assigned default/{name} to ", described)
    assert re.search(r"Normal\s+Started\s.*Started container user-container", described)
    try:
        assert watch.stdout is not None
        assert watch.stdout.readline().split()[:2] == ["EVENT", "NAME"]
        assert watch.stdout.readline().split()[:2] == ["ADDED", name]
        kubectl("delete", "pod", name)
        deadline = time.monotonic() + 30
        events: list[list[str]] = []

        def replaced() -> bool:
            deleted = any(event[:2] == ["DELETED", name] for event in events)
            running = [e for e in events if e[1] != name and e[2:4] == ["1/1", "Running"]]
            return deleted and bool(running)

        while time.monotonic() < deadline and not replaced():
            events.append(watch.stdout.readline().split())
        assert replaced(), events
        assert ["ADDED", name] not in [event[:2] for event in events], events  # listed once
    finally:
        watch.terminate()
        watch.wait(timeout=10)
    missing = kubectl("logs", name, check=False)
    assert missing.returncode != 0 and f'pods "{name}" not found' in missing.stderr
    its = kubectl("get", "events", "--field-selector", f"involvedObject.name={name}").stdout
    assert re.search(rf"Normal\s+Killing\s+pod/{name}\s+Stopping container", its)
    kubectl("delete", "ksvc", "logged")


def test_a_revisions_deployment_leads_to_its_pods(kubectl, tmp_path):
    """Each revision is served as the Deployment Knative makes of it (docs/kubectl.md#deployments),
    so kubectl's habits with deployments work: get, wait, rollout status, and logs and exec of
    the pod its selector picks; its replicas are the autoscaler's, so it cannot be changed."""
    kubectl.apply(logged_service(tmp_path, "deployed", pinned=True))
    kubectl("wait", "--for=condition=Ready", "ksvc/deployed", "--timeout=60s")
    name = "deploy/deployed-00001-deployment"
    kubectl("wait", "--for=condition=Available", name, "--timeout=60s")
    listed = kubectl("get", "deploy", "deployed-00001-deployment", "-o", "wide").stdout
    assert header(listed)[:5] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert re.search(r"deployed-00001-deployment\s+1/1\s+1\s+1\s", listed)
    assert "serving.knative.dev/revision=deployed-00001" in listed
    deployment = kubectl.json("get", name)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["metadata"]["labels"]["serving.knative.dev/service"] == "deployed"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert "successfully rolled out" in kubectl("rollout", "status", name).stdout
    ran = kubectl("exec", name, "--", "sh", "-c", "echo $K_REVISION")
    assert ran.stdout == "deployed-00001\n"
    assert "Serving HTTP on 127.0.0.1" in kubectl("logs", name).stdout
    scaled = kubectl("scale", name, "--replicas=3", check=False)
    assert scaled.returncode != 0 and "the autoscaler sets a revision's replicas" in scaled.stderr
    deleted = kubectl("delete", name, check=False)
    assert deleted.returncode != 0 and "cannot be changed directly" in deleted.stderr
    own = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "mine"},
        "spec": {
            "selector": {"matchLabels": {"app": "mine"}},
            "template": {
                "metadata": {"labels": {"app": "mine"}},
                "spec": {"containers": [{"name": "app", "image": "example/app"}]},
            },
        },
    }
    refused = kubectl.apply(own, check=False)
    assert refused.returncode != 0 and "write a serving.knative.dev/v1 Service" in refused.stderr
    kubectl("delete", "ksvc", "deployed")
    kubectl("wait", "--for=delete", name, "--timeout=30s")


def test_pools_are_nodes(platform, kubectl):
    """Each pool is served as a Node (docs/kubectl.md#nodes): listed, described with its
    capacity (this machine's CPUs and memory where the pool sets none), measured by top."""
    pools = [pool["name"] for pool in platform.get_json("pools")["items"]]
    listed = kubectl.json("get", "nodes")["items"]
    assert [node["metadata"]["name"] for node in listed] == pools
    capacity = listed[0]["status"]["capacity"]
    assert capacity["cpu"] == f"{(os.cpu_count() or 1) * 1000}m"
    assert "Kubelet Version:" in kubectl("describe", "node", pools[0]).stdout
    top = kubectl("top", "node").stdout
    assert header(top)[:3] == ["NAME", "CPU(cores)", "CPU(%)"] and pools[0] in top
    edit = kubectl("label", "node", pools[0], "gpu=yes", check=False)
    assert edit.returncode != 0 and "cannot be changed directly" in edit.stderr


def test_auth_can_i_and_whoami_answer_for_the_admin_token(kubectl):
    """`kubectl auth can-i`: yes for what tidal serves, no with the reason otherwise;
    `--list` the rules; `kubectl auth whoami` the token's user (docs/kubectl.md#access)."""
    assert kubectl("auth", "can-i", "create", "ksvc").stdout.strip() == "yes"
    assert kubectl("auth", "can-i", "create", "pods", "--subresource=exec").stdout == "yes\n"
    forward = kubectl("auth", "can-i", "create", "pods", "--subresource=portforward")
    assert forward.stdout == "yes\n"
    refused = kubectl("auth", "can-i", "update", "revisions", check=False)
    assert refused.returncode == 1
    assert refused.stdout.strip() == (
        "no - tidal serves get, list, watch on revisions.serving.knative.dev, not update"
    )
    missing = kubectl("auth", "can-i", "create", "statefulsets.apps", check=False)
    assert missing.stdout.strip() == "no - tidal does not serve statefulsets.apps"
    views = kubectl("auth", "can-i", "patch", "deployments", check=False)
    assert views.stdout.strip() == (
        "no - tidal serves get, list, watch on deployments.apps, not patch"
    )
    listed = kubectl("auth", "can-i", "--list").stdout
    assert re.search(r"^services\.serving\.knative\.dev\s.*\[create delete get", listed, re.M)
    assert "tidal-admin" in kubectl("auth", "whoami").stdout


def spdy_refused(platform: Platform, pod_path: str) -> bytes:
    """What a kubectl too old for WebSocket streams hears: a 400 whose body says why."""
    status, body = platform.api(
        "POST",
        f"/api/v1/namespaces/default/pods/{pod_path}",
        headers={"Upgrade": "SPDY/3.1", "Connection": "Upgrade"},
    )
    assert status == 400
    return body


def test_exec_and_cp_run_in_the_replica_with_its_environment(platform, kubectl, tmp_path):
    """`kubectl exec` and `kubectl cp` over Kubernetes' WebSocket protocol (docs/kubectl.md#exec):
    the command runs as the replica does, its output and exit code are kubectl's."""
    if kubectl_minor() < 30:
        pytest.skip("kubectl before 1.30 speaks exec over SPDY only, which tidal does not serve")
    kubectl.apply(logged_service(tmp_path, "shell", pinned=True))
    kubectl("wait", "--for=condition=Ready", "ksvc/shell", "--timeout=60s")
    [pod] = kubectl.json("get", "pods", "-l", "serving.knative.dev/service=shell")["items"]
    name = pod["metadata"]["name"]

    script = "echo $K_REVISION; pwd; echo oops >&2; exit 3"
    ran = kubectl("exec", name, "--", "sh", "-c", script, check=False)
    assert ran.returncode == 3 and ran.stdout.splitlines() == ["shell-00001", str(tmp_path)]
    assert "oops" in ran.stderr and "command terminated with exit code 3" in ran.stderr
    piped = kubectl(
        "exec",
        "-i",
        name,
        "--",
        "sh",
        "-c",
        "cat > weights.bin; wc -c < weights.bin",
        stdin="0123456789",
    )
    assert piped.stdout.strip() == "10"
    assert (tmp_path / "weights.bin").read_text() == "0123456789"
    kubectl("cp", f"{name}:{tmp_path / 'weights.bin'}", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_text() == "0123456789"

    # With a terminal (kubectl needs one of its own for -t): the size kubectl sends, an echo.
    reply = "stty size; read line; echo got $line"
    stdout, stderr, status = platform.exec_in_pod(name, "sh", "-c", reply, stdin=b"ok\n", tty=True)
    assert b"30 100\r\n" in stdout and b"got ok\r\n" in stdout and stderr == b""
    assert status == {"metadata": {}, "status": "Success"}
    wrong = kubectl("exec", name, "-c", "sidecar", "--", "true", check=False)
    assert wrong.returncode != 0 and f"container sidecar is not valid for pod {name}" in (
        wrong.stderr
    )
    assert b"exec over WebSocket only (kubectl 1.30 or newer)" in spdy_refused(
        platform, f"{name}/exec?command=true"
    )
    gone = kubectl("exec", "shell-00001-none", "--", "true", check=False)
    assert gone.returncode != 0 and 'pods "shell-00001-none" not found' in gone.stderr

    sleeper = kubectl.stream("exec", name, "--", "sleep", "120")  # ends with its replica
    try:
        time.sleep(1)
        kubectl("delete", "pod", name)
        assert sleeper.wait(timeout=30) == 137
        assert sleeper.stderr is not None
        assert "command terminated with exit code 137" in sleeper.stderr.read()
    finally:
        sleeper.kill()
    # A watch of the deleted pod from a version listed before it went (kubectl delete's wait
    # lists, then watches): it hears that the pod went, though pods keep no history.
    query = f"fieldSelector=metadata.name={name}&watch=1&resourceVersion=1&timeoutSeconds=1"
    status, body = platform.api("GET", f"/api/v1/namespaces/default/pods?{query}")
    first = json.loads(body.splitlines()[0])
    assert status == 200 and (first["type"], first["object"]["metadata"]["name"]) == (
        "DELETED",
        name,
    )
    kubectl("delete", "ksvc", "shell")


ECHO_SERVER = """
import asyncio, os

async def echo(reader, writer):
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(echo, "127.0.0.1", int(os.environ["PORT"]))
    await server.serve_forever()

asyncio.run(main())
"""


async def _echoed(port: int, sent: bytes) -> bytes:
    """What comes back from a TCP echo through 127.0.0.1:`port`, sending `sent` then the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def send() -> None:
        for start in range(0, len(sent), 65536):
            writer.write(sent[start : start + 65536])
            await writer.drain()
        writer.write_eof()

    sending = asyncio.ensure_future(send())
    received = await reader.read(-1)
    await sending
    writer.close()
    return received


async def _spoken(platform: Platform, pod: str) -> list[spdy.Frame]:
    """The port-forward protocol spoken by hand: a ping, a stream without a type, then a
    connection that sends "ping" and closes its end; what comes back, SYN_REPLYs left out."""
    client = Client()
    url = f"{platform.admin}/api/v1/namespaces/default/pods/{pod}/portforward"
    headers = {"Authorization": f"Bearer {platform.token}"}
    stream = {"port": "8080", "requestid": "7"}
    sent = (
        spdy.ping(1)
        + client.syn_stream(1, stream)
        + client.syn_stream(3, {**stream, "streamtype": "error"})
        + client.syn_stream(5, {**stream, "streamtype": "data"})
        + spdy.data(5, b"ping", fin=True)
    )
    reader, frames = spdy.FrameReader(), []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=(spdy.PROTOCOL,), headers=headers) as ws,
    ):
        await ws.send_bytes(sent)
        while spdy.Data(3, b"", True) not in frames:
            message = await asyncio.wait_for(ws.receive(), 10)
            assert message.type == aiohttp.WSMsgType.BINARY, message
            frames += reader.feed(message.data)
    return frames


def test_port_forward_reaches_the_replica_and_ends_with_it(platform, kubectl, tmp_path):
    """`kubectl port-forward` over SPDY in a WebSocket (docs/kubectl.md#port-forward): the
    serving port's bytes both ways, intact, for connections one after another and at once; a
    port the replica cannot have is refused in the kubelet's words; the forward ends with its
    replica."""
    if kubectl_minor() < 31:
        pytest.skip("kubectl before 1.31 speaks port-forward over SPDY only")
    (tmp_path / "echo.py").write_text(ECHO_SERVER)
    service = hello_service("echo", {"autoscaling.knative.dev/min-scale": "1"})
    container = service["spec"]["template"]["spec"]["containers"][0]
    container.update(command=["python", "echo.py"], workingDir=str(tmp_path))
    kubectl.apply(service)
    kubectl("wait", "--for=condition=Ready", "ksvc/echo", "--timeout=60s")
    [pod] = kubectl.json("get", "pods", "-l", "serving.knative.dev/service=echo")["items"]
    name = pod["metadata"]["name"]

    assert asyncio.run(_spoken(platform, name)) == [
        spdy.Ping(1),  # answered in kind
        spdy.RstStream(1, spdy.PROTOCOL_ERROR),  # no streamType: refused
        spdy.Data(5, b"ping", False),  # the replica's echo on the data stream, then its end
        spdy.Data(5, b"", True),
        spdy.Data(3, b"", True),  # and the error stream's, with nothing to say
    ]
    with platform.port_forward(name, 8080) as (local, forward):
        big = os.urandom(3 << 20)
        assert asyncio.run(_echoed(local, big)) == big
        assert asyncio.run(_echoed(local, b"again")) == b"again"

        async def at_once() -> list[bytes]:
            return await asyncio.gather(*(_echoed(local, b"%d" % i * 1000) for i in range(8)))

        assert asyncio.run(at_once()) == [b"%d" % i * 1000 for i in range(8)]
        kubectl("delete", "pod", name)
        assert forward.wait(timeout=30) == 1
        assert forward.stderr is not None and "lost connection to pod" in forward.stderr.read()

    def replacement() -> str | None:
        pods = kubectl.json("get", "pods", "-l", "serving.knative.dev/service=echo")["items"]
        return next((p["metadata"]["name"] for p in pods if p["metadata"]["name"] != name), None)

    name = wait_until(replacement, 30, "a replica in place of the deleted one")
    kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s")
    with platform.port_forward(name, 9999) as (local, forward):
        with contextlib.suppress(ConnectionError):  # kubectl drops the connection, then ends
            assert asyncio.run(_echoed(local, b"x")) == b""
        assert forward.wait(timeout=30) == 1
        assert forward.stderr is not None
        said = forward.stderr.read()
    assert f"error forwarding port 9999 to pod {name}" in said
    assert "a process replica shares this machine's network" in said
    assert b"port-forward over WebSocket only (kubectl 1.31" in spdy_refused(
        platform, f"{name}/portforward"
    )
    gone = kubectl("port-forward", "pod/echo-00001-none", ":8080", check=False)
    assert gone.returncode != 0 and 'pods "echo-00001-none" not found' in gone.stderr
    kubectl("delete", "ksvc", "echo")


def test_a_persistent_volume_claim_is_a_folder_listed_grown_and_deleted(platform, kubectl):
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "model-cache"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
    }
    kubectl.apply(claim)
    folder = platform.data_dir / "claims" / "default" / "model-cache"
    assert folder.is_dir()
    listed = kubectl("get", "pvc").stdout
    assert header(listed)[:6] == [
        "NAME",
        "STATUS",
        "VOLUME",
        "CAPACITY",
        "ACCESS MODES",
        "STORAGECLASS",
    ]
    assert re.split(r"\s+", listed.splitlines()[1])[:5] == [
        "model-cache",
        "Bound",
        "claim-model-cache",
        "10Gi",
        "RWO",
    ]
    assert "model-cache  Bound   10Gi" in platform.cli("get", "pvc").stdout
    claim["spec"]["resources"]["requests"]["storage"] = "1Gi"
    smaller = kubectl.apply(claim, check=False)
    assert smaller.returncode != 0
    assert "spec.resources.requests.storage: field can not be less than previous value" in (
        smaller.stderr
    )
    claim["spec"]["resources"]["requests"]["storage"] = "20Gi"
    kubectl.apply(claim)
    assert kubectl.json("get", "pvc", "model-cache")["status"]["capacity"] == {"storage": "20Gi"}
    kubectl("delete", "pvc", "model-cache")
    assert not folder.exists()


def test_namespaces_are_created_listed_and_deleted_with_what_they_hold(platform, kubectl):
    """`kubectl create namespace|serviceaccount` (protobuf), a bundle that starts with its
    Namespace, `kubectl get ns`, and `kubectl delete ns`, which waits until the namespace and
    everything in it are gone (docs/kubectl.md#namespaces)."""
    assert "namespace/scratch created" in kubectl("create", "namespace", "scratch").stdout
    made = kubectl("create", "serviceaccount", "puller", "-n", "scratch").stdout
    assert "serviceaccount/puller created" in made
    declared = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "vision", "labels": {"team": "vision"}},
    }
    service = example_hello("in vision")
    service["metadata"]["namespace"] = "vision"
    out = kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([declared, service])).stdout
    assert "namespace/vision created" in out and "hello created" in out
    listed = kubectl("get", "ns").stdout
    assert header(listed) == ["NAME", "STATUS", "AGE"]
    rows = {line.split()[0]: line.split()[1] for line in listed.splitlines()[1:]}
    assert {"default", "scratch", "vision"} <= set(rows) and set(rows.values()) == {"Active"}
    labels = kubectl.json("get", "ns", "vision")["metadata"]["labels"]
    assert labels == {"team": "vision", "kubernetes.io/metadata.name": "vision"}
    kubectl("wait", "--for=condition=Ready", "ksvc/hello", "-n", "vision", "--timeout=60s")
    status, _, body = platform.request(host("hello", namespace="vision"), "/env")
    assert status == 200 and json.loads(body)["TARGET"] == "in vision"

    # The bundle deleted as it was applied: the namespace first, then what the file lists in
    # it, which is still there (Terminating) as on a cluster, so kubectl finds no error.
    deleted = kubectl("delete", "-f", "-", stdin=yaml.safe_dump_all([declared, service])).stdout
    assert (
        'namespace "vision" deleted' in deleted
        and 'service.serving.knative.dev "hello" deleted' in (deleted)
    )
    assert "namespace/vision" not in kubectl("get", "ns", "-o", "name").stdout
    assert "No resources found" in kubectl("get", "ksvc,rev", "-n", "vision").stderr
    wait_until(
        lambda: platform.request(host("hello", namespace="vision"), "/env")[0] == 404,
        10,
        "the deleted namespace's host unrouted",
    )
    assert "puller" in kubectl("get", "sa", "-n", "scratch", "-o", "name").stdout  # untouched
    forbidden = kubectl("delete", "ns", "default", check=False)
    assert 'namespaces "default" is forbidden: this namespace may not be deleted' in (
        forbidden.stderr
    )
    assert "scratch  Active" in platform.cli("get", "ns").stdout
    assert "namespace/scratch deleted" in platform.cli("delete", "ns", "scratch").stdout
    assert "scratch  Terminating" in platform.cli("get", "ns").stdout  # emptied in a second
    wait_until(
        lambda: (
            'namespaces "scratch" not found' in kubectl("get", "ns", "scratch", check=False).stderr
        ),
        10,
        "the namespace gone",
    )
    assert "No resources found" in kubectl("get", "sa", "-n", "scratch").stderr


def test_diff_shows_only_what_an_apply_would_change(kubectl):
    stored = yaml.safe_dump(example_hello("watched"))  # applied by the test before
    same = kubectl("diff", "-f", "-", stdin=stored, check=False)
    assert (same.returncode, same.stdout) == (0, ""), same.stdout + same.stderr
    changed = kubectl("diff", "-f", "-", stdin=yaml.safe_dump(example_hello("diffed")), check=False)
    assert changed.returncode == 1, changed.stderr
    lines = [line for line in changed.stdout.splitlines() if line[:1] in "+-"]
    lines = [line for line in lines if not line.startswith(("+++", "---"))]
    assert "+          value: diffed" in lines
    assert "+  latestCreatedRevisionName: hello-00005" in lines  # what the apply would create
    for server_field in ("uid", "creationTimestamp", "resourceVersion", "traffic"):
        assert not any(server_field in line for line in lines), lines
    assert revisions_of(kubectl, "hello")[-1] == "hello-00004"


def test_describe_shows_revision_events(kubectl):
    out = kubectl("describe", "ksvc", "hello").stdout
    events = out.split("Events:")[1]
    assert re.search(
        r'Normal\s+Created\s+\S+\s+tidal-controller\s+Created Revision "hello-00001"', events
    )
    assert re.search(r'Normal\s+RevisionReady\s+.*Revision "hello-00004" is ready', events)
    assert re.search(r'Normal\s+Scaled\s+.*Revision "hello-00001" scaled from 0 to 1', events)
    crash = hello_service("crash")
    crash["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "python", "-c", "import sys; sys.exit(3)",
    ]  # fmt: skip
    kubectl.apply(crash)

    def described_failure() -> str:
        out = kubectl("describe", "ksvc", "crash").stdout
        return out if "RevisionFailed" in out else ""

    failed = wait_until(described_failure, 30, "a RevisionFailed event")
    assert re.search(
        r'Warning\s+RevisionFailed\s+.*Revision "crash-00001" failed: ExitCode3', failed
    )
    wait = kubectl("wait", "--for=condition=Ready", "ksvc/crash", "--timeout=2s", check=False)
    assert wait.returncode != 0
    kubectl("delete", "ksvc", "crash")


# -- create, replace, conflicts, errors, delete ---------------------------------------------


def test_create_replace_conflict_and_delete(kubectl, tmp_path):
    doc = hello_service("second", env={"TARGET": "created"})
    path = tmp_path / "second.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert kubectl("create", "-f", str(path)).stdout.strip() == (
        "service.serving.knative.dev/second created"
    )
    again = kubectl("create", "-f", str(path), check=False)
    assert again.returncode != 0 and "(AlreadyExists)" in again.stderr
    # Status updates change the resourceVersion too: read once the service has settled.
    kubectl("wait", "--for=condition=Ready", "ksvc/second", "--timeout=60s")
    stale = kubectl.json("get", "ksvc", "second")
    current = kubectl.json("get", "ksvc", "second")
    current["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "replaced"
    out = kubectl("replace", "-f", "-", stdin=json.dumps(current)).stdout
    assert out.strip() == "service.serving.knative.dev/second replaced"
    assert revisions_of(kubectl, "second") == ["second-00001", "second-00002"]
    stale["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "stale"
    conflict = kubectl("replace", "-f", "-", stdin=json.dumps(stale), check=False)
    assert conflict.returncode != 0 and "(Conflict)" in conflict.stderr
    assert "the object has been modified" in conflict.stderr
    pinned = kubectl(
        "patch", "ksvc", "second", "--type", "merge", "-p",
        json.dumps({"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]}}),
        check=False,
    )  # fmt: skip
    assert pinned.returncode != 0 and "(Conflict)" in pinned.stderr
    assert revisions_of(kubectl, "second") == ["second-00001", "second-00002"]
    readonly = kubectl("delete", "revision", "second-00001", check=False)
    assert readonly.returncode != 0 and "MethodNotAllowed" in readonly.stderr
    kubectl("label", "ksvc", "second", "team=a")
    assert kubectl("get", "ksvc", "-l", "team=a", "-o", "name").stdout.split() == [
        "service.serving.knative.dev/second"
    ]
    assert "(server dry run)" in kubectl("delete", "ksvc", "second", "--dry-run=server").stdout
    assert kubectl("get", "ksvc", "second", "-o", "name").returncode == 0
    assert kubectl("delete", "-f", str(path)).stdout.strip() == (
        'service.serving.knative.dev "second" deleted'
    )
    assert kubectl("get", "rev", "-l", "serving.knative.dev/service=second").stdout == ""
    missing = kubectl("get", "ksvc", "second", check=False)
    assert missing.returncode != 0 and "(NotFound)" in missing.stderr


def test_validation_errors_name_their_paths_and_store_nothing(kubectl):
    bad = hello_service("bad", env={"PORT": "1"})
    bad["spec"]["template"]["spec"]["containers"][0]["bogus"] = True
    result = kubectl.apply(bad, check=False)
    assert result.returncode != 0
    assert 'The Service "bad" is invalid' in result.stderr
    assert "spec.template.spec.containers[0].bogus" in result.stderr
    fixed = hello_service("bad", env={"PORT": "1"})
    result = kubectl.apply(fixed, check=False)
    assert result.returncode != 0
    assert "spec.template.spec.containers[0].env[0].name: PORT is reserved" in result.stderr
    traffic = hello_service("bad", traffic=[{"latestRevision": True, "percent": 50}])
    result = kubectl.apply(traffic, "--dry-run=server", check=False)
    assert result.returncode != 0 and "spec.traffic: percentages must sum to 100" in result.stderr
    assert kubectl("get", "ksvc", "bad", check=False).returncode != 0


def test_a_path_not_served_is_not_found_in_kubernetes_words(kubectl):
    # Knative Services have no scale subresource: the API server's 404 Status, with its reason
    kubectl.apply(example_hello("world"))
    result = kubectl("scale", "ksvc", "hello", "--replicas=3", check=False)
    assert result.returncode != 0
    assert "Error from server (NotFound): the server could not find the requested resource" in (
        result.stderr
    )


def test_resource_policy_through_kubectl(kubectl):
    policy = {
        "apiVersion": "scheduling.alibabacloud.com/v1alpha1",
        "kind": "ResourcePolicy",
        "metadata": {"name": "cheap-first"},
        "spec": {"units": [{"resource": "ecs"}, {"resource": "eci"}]},
    }
    created = kubectl.apply(policy).stdout
    assert created.strip() == "resourcepolicy.scheduling.alibabacloud.com/cheap-first created"
    out = kubectl("get", "resourcepolicies").stdout
    assert header(out) == ["NAME", "STRATEGY", "AGE"] and "cheap-first" in out
    kubectl("delete", "resourcepolicy", "cheap-first")
    assert "No resources found" in kubectl("get", "resourcepolicies").stderr


def test_domain_mapping_through_kubectl_the_cli_and_the_gateway(platform, kubectl):
    mapping = {
        "apiVersion": "serving.knative.dev/v1beta1",
        "kind": "DomainMapping",
        "metadata": {"name": "api.example.org"},
        "spec": {
            "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "hello"}
        },
    }
    created = kubectl.apply(mapping).stdout
    assert created.strip() == "domainmapping.serving.knative.dev/api.example.org created"
    out = kubectl("get", "dm").stdout
    assert header(out) == ["NAME", "URL", "READY", "REASON"]
    assert re.search(r"^api\.example\.org\s+http://api\.example\.org\s+True", out, re.M), out
    assert "KIND:       DomainMapping" in kubectl("explain", "domainmapping").stdout
    status, headers, _ = platform.request("api.example.org")
    assert status == 200 and headers["X-Tidal-Revision"].startswith("hello-")
    listed = platform.cli("get", "domainmappings").stdout
    assert re.search(r"api\.example\.org\s+http://api\.example\.org\s+hello\s+True", listed)
    refused = kubectl.apply(
        {**mapping, "spec": {"ref": {**mapping["spec"]["ref"], "kind": "Job"}}}, check=False
    )
    assert (
        refused.returncode != 0
        and "spec.ref: tidal maps domains to Knative Services" in refused.stderr
    )
    assert "Domains: http://api.example.org" in platform.cli("describe", "service", "hello").stdout
    kubectl("delete", "dm", "api.example.org")
    # The gateway process follows the routing table's feed: soon, not within the delete.
    wait_until(lambda: platform.request("api.example.org")[0] == 404, 10, "the domain unrouted")


def test_tidal_kubeconfig_prints_and_merges(platform, tmp_path):
    printed = platform.cli("kubeconfig", "--data-dir", str(platform.data_dir)).stdout
    config = yaml.safe_load(printed)
    # kubectl sends its token over https only: its own TLS listener, trusting the platform's CA.
    cluster = config["clusters"][0]["cluster"]
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", cluster["server"])
    assert cluster["server"] != platform.admin.replace("http:", "https:")
    ca = base64.b64decode(cluster["certificate-authority-data"])
    assert ca == (platform.data_dir / "tls" / "ca.crt").read_bytes()
    command = f"kubectl --kubeconfig {platform.data_dir / 'kubeconfig'} get ksvc"
    # `tidal up` says how to use it, once it is up (/healthz may answer a moment before)
    wait_until(lambda: command in platform.log_path.read_text(), 30, "the kubectl line")
    assert config["current-context"] == "tidal"
    mine = tmp_path / "config"
    mine.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "prod", "cluster": {"server": "https://prod"}}],
                "users": [{"name": "prod", "user": {}}],
                "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}],
                "current-context": "prod",
            }
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidal",
            "kubeconfig",
            "--merge",
            "--data-dir",
            str(platform.data_dir),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(mine), "PYTHONPATH": str(REPO)},
        timeout=60,
        check=True,
    )
    assert str(mine) in result.stdout
    merged = yaml.safe_load(mine.read_text())
    assert [c["name"] for c in merged["contexts"]] == ["prod", "tidal"]
    assert merged["current-context"] == "prod"
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", str(mine), "--context", "tidal", "get", "ksvc", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path)},
    ).stdout
    assert "service.serving.knative.dev/hello" in out.split()
