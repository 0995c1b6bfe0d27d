"""Every manifest tidal generates is valid for a current Kubernetes (kubernetes-validate)."""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from kubernetes.client import ApiClient, CoreV1Api

from tests.kubernetes.emulator import ThreadedEmulator
from tidal.cli.client import ApiError
from tidal.cli.kubernetes import ClusterClient
from tidal.cli.main import main
from tidal.kubernetes.manifests import manifests
from tidal.runtime.deployments import (
    VIRTUAL_KUBELET_TOLERATION,
    PodPlacement,
    deployment_manifest,
)
from tidal.security.credentials import TOKEN_HEADER

KUBERNETES = "1.37.0"
OWNER = "serving.tidal.dev/v1"  # where the default install keeps Revisions
REVISION: dict[str, Any] = {
    "metadata": {
        "name": "hello-00001",
        "namespace": "default",
        "uid": "0b7c4a52-1d1c-4a43-9a57-6d1f0b2b1a11",
        "labels": {"serving.knative.dev/service": "hello"},
    },
    "spec": {
        "serviceAccountName": "inference",
        "containers": [
            {
                "image": "ghcr.io/example/hello:1",
                "args": ["--model", "small"],
                "ports": [{"containerPort": 9000}],
                "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": 1}},
                "readinessProbe": {"tcpSocket": {}, "periodSeconds": 0, "timeoutSeconds": 2},
                "livenessProbe": {"grpc": {"service": "model"}, "periodSeconds": 0},
                "startupProbe": {"exec": {"command": ["cat", "/tmp/loaded"]}},
            }
        ],
    },
}


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize(
    "doc",
    [*manifests(), *manifests(api_groups="knative")],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_install_manifests_validate(doc: dict[str, Any]) -> None:
    validate(doc)


def test_the_install_has_what_the_issue_lists() -> None:
    kinds = [(d["kind"], d["metadata"]["name"]) for d in manifests()]
    assert ("CustomResourceDefinition", "services.serving.tidal.dev") in kinds
    assert ("CustomResourceDefinition", "resourcepolicies.scheduling.tidal.dev") in kinds
    assert ("Role", "tidal-controller") in kinds  # the Lease, in its own namespace only
    assert ("ConfigMap", "tidal-config") in kinds
    controller = next(d for d in manifests() if d["kind"] == "Deployment")
    assert controller["spec"]["replicas"] == 1
    cluster_role = next(d for d in manifests() if d["kind"] == "ClusterRole")
    assert all("*" not in rule["verbs"] for rule in cluster_role["rules"])
    watched = {
        (group, resource)
        for rule in cluster_role["rules"]
        if "watch" in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    # What users write with kubectl is followed; what only tidal writes is not.
    assert {
        ("serving.tidal.dev", "services"),
        ("serving.tidal.dev", "domainmappings"),
        ("scheduling.tidal.dev", "resourcepolicies"),
    } <= watched
    assert ("serving.tidal.dev", "revisions") not in watched


@pytest.mark.parametrize(
    "placement, extra",
    [
        (PodPlacement({"pool": "ecs"}), {}),
        (PodPlacement({"type": "virtual-kubelet"}, (VIRTUAL_KUBELET_TOLERATION,)), {"u": "1"}),
    ],
)
def test_revision_deployments_validate(placement: PodPlacement, extra: dict[str, str]) -> None:
    validate(deployment_manifest(REVISION, "hello-00001-ecs", "ecs", placement, extra, 30, OWNER))


def test_a_revision_with_a_sidecar_is_one_pod_of_both_containers() -> None:
    """Knative's pod: every container named (defaulted as Knative does), Knative's variables in
    each, the port, PORT and the probes in the serving container only; init containers too."""
    revision = copy.deepcopy(REVISION)
    server = revision["spec"]["containers"][0]
    revision["spec"]["containers"] = [
        {"image": "ghcr.io/example/puller:1", "args": ["--to", "/models"]},
        server,
    ]
    revision["spec"]["initContainers"] = [{"image": "ghcr.io/example/fetch:1"}]
    deployment = deployment_manifest(
        revision, "hello-00001-ecs", "ecs", PodPlacement(), {}, 30, OWNER
    )
    validate(deployment)
    [init] = deployment["spec"]["template"]["spec"]["initContainers"]
    assert (init["name"], init["image"]) == ("init-container", "ghcr.io/example/fetch:1")
    assert "ports" not in init and "readinessProbe" not in init
    puller, serving = deployment["spec"]["template"]["spec"]["containers"]
    assert (puller["name"], serving["name"]) == ("user-container-0", "user-container-1")
    assert [e["name"] for e in puller["env"]] == ["K_SERVICE", "K_CONFIGURATION", "K_REVISION"]
    assert "PORT" in [e["name"] for e in serving["env"]]
    assert set(puller) == {"name", "image", "env", "args"}
    assert serving["ports"] == [{"name": "user-port", "containerPort": 9000, "protocol": "TCP"}]
    assert "readinessProbe" in serving and "startupProbe" in serving


def test_tidal_kubernetes_manifests_prints_them() -> None:
    result = CliRunner().invoke(main, ["kubernetes", "manifests", "--namespace", "ml"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.output))
    assert {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}} in docs
    for doc in docs:
        validate(doc)


def test_the_cli_reaches_the_admin_api_through_the_service_proxy(
    emulator: ThreadedEmulator, api: ApiClient
) -> None:
    proxy = "/api/v1/namespaces/tidal-system/services/tidal-admin:8081/proxy"
    seen: list[Any] = []
    emulator.emulator[f"post {proxy}/apis/tidal.dev/v1/apply"] << {"items": []} >> seen
    secret = next(d for d in manifests(token="s3cret") if d["kind"] == "Secret")
    assert secret["stringData"] == {"token": "s3cret"}
    # as the API server stores it (the emulator keeps stringData as written)
    secret["data"] = {"token": base64.b64encode(b"s3cret").decode()}
    del secret["stringData"]
    CoreV1Api(api).create_namespaced_secret("tidal-system", secret)
    cluster = ClusterClient(None, None)
    cluster._api = api
    assert cluster.call("POST", "/apis/tidal.dev/v1/apply?dryRun=true", {"items": []}) == {
        "items": []
    }
    assert seen[0].params == {"dryRun": "true"}
    assert seen[0].data["items"] == []
    # the admin token comes from the install's Secret, in a header the API server passes on
    assert seen[0].headers[TOKEN_HEADER] == "s3cret"


def test_tidal_logs_f_streams_through_the_service_proxy(
    emulator: ThreadedEmulator, api: ApiClient
) -> None:
    proxy = "/api/v1/namespaces/tidal-system/services/tidal-admin:8081/proxy"
    logs = "/apis/tidal.dev/v1/namespaces/default/services/hello/logs"
    seen: list[Any] = []
    emulator.emulator[f"get {proxy}{logs}"] << b"==> hello-00001/a <==\nserving\n" >> seen
    cluster = ClusterClient(None, None, token="s3cret")
    cluster._api = api
    assert b"".join(cluster.stream(f"{logs}?tail=10&follow=true")) == (
        b"==> hello-00001/a <==\nserving\n"
    )
    assert seen[0].params == {"tail": "10", "follow": "true"}
    assert seen[0].headers[TOKEN_HEADER] == "s3cret"
    with pytest.raises(ApiError):  # what the proxy answers for a path it has nothing for
        list(cluster.stream("/apis/tidal.dev/v1/namespaces/default/services/other/logs"))


STATUS_OF = {
    "url": "http://hello.default.example.com",
    "latestCreatedRevisionName": "hello-00002",
    "latestReadyRevisionName": "hello-00001",
    "actualReplicas": 2,
    "desiredReplicas": 3,
    "conditions": [{"type": "Ready", "status": "Unknown", "reason": "RevisionMissing"}],
}
COLUMNS = {
    "Service": {
        "URL": "http://hello.default.example.com",
        "LatestCreated": "hello-00002",
        "LatestReady": "hello-00001",
        "Ready": "Unknown",
        "Reason": "RevisionMissing",
    },
    "Revision": {
        "Config Name": "hello",
        "Generation": "2",
        "Ready": "Unknown",
        "Reason": "RevisionMissing",
        "Actual Replicas": "2",
        "Desired Replicas": "3",
    },
    "Route": {
        "URL": "http://hello.default.example.com",
        "Ready": "Unknown",
        "Reason": "RevisionMissing",
    },
    "DomainMapping": {
        "URL": "http://hello.default.example.com",
        "Ready": "Unknown",
        "Reason": "RevisionMissing",
    },
    "ResourcePolicy": {},
}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("kind", sorted(COLUMNS))
def test_kubectl_get_shows_knatives_columns(kind: str, tmp_path: Path) -> None:
    """Each printer column's jsonPath, evaluated by kubectl itself on an object of its kind
    (offline: `kubectl label --local ... -o jsonpath`), gives the value `kubectl get` shows."""
    crd = next(
        d
        for d in manifests()
        if d["kind"] == "CustomResourceDefinition" and d["spec"]["names"]["kind"] == kind
    )
    columns = {
        c["name"]: c["jsonPath"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert list(columns) == [*COLUMNS[kind], "Age"]
    obj = {
        "apiVersion": f"{crd['spec']['group']}/v1",
        "kind": kind,
        "metadata": {
            "name": "hello",
            "namespace": "default",
            "creationTimestamp": "2026-12-03T10:00:00Z",
            "labels": {
                "serving.knative.dev/configuration": "hello",
                "serving.knative.dev/configurationGeneration": "2",
            },
        },
        "status": STATUS_OF,
    }
    path = tmp_path / "obj.yaml"
    path.write_text(yaml.safe_dump(obj))
    for name, expected in {**COLUMNS[kind], "Age": "2026-12-03T10:00:00Z"}.items():
        local = ["kubectl", "label", "--local", "-f", str(path), "probe=1", "-o"]
        shown = subprocess.run(
            [*local, f"jsonpath={{{columns[name]}}}", "--kubeconfig", os.devnull],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == expected, (name, shown.stdout)
