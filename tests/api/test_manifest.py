"""Bad manifests get an error that names the field (Knative webhook rules,
docs/autoscaling.md#annotations, docs/architecture.md#revisions-traffic-and-rollout)."""

from __future__ import annotations

from typing import Any

import pytest

from tidal.api.autoscaling import AutoscalerConfig
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import load_documents, validate_service

CONFIG = AutoscalerConfig()


def check(doc: dict[str, Any]):
    return validate_service(doc, CONFIG)


def test_valid_service_parses(hello_doc):
    valid = check(hello_doc)
    assert valid.name == "hello" and valid.namespace == "default"
    container = valid.service.spec.template.spec.containers[0]
    assert container.command == ["python", "app.py"]
    assert valid.service.spec.template.spec.timeout_seconds == 300
    assert valid.autoscaling is not None


def test_load_documents_reads_several_and_rejects_bad_yaml():
    docs = load_documents("a: 1\n---\nb: 2\n---\n")
    assert docs == [{"a": 1}, {"b": 2}]
    with pytest.raises(InvalidSpec, match="invalid YAML"):
        load_documents("a: [1,\n")
    with pytest.raises(InvalidSpec, match="expected a mapping"):
        load_documents("- 1\n- 2\n")


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(portz=[1]),
            "spec.template.spec.containers[0].portz",
            "unknown field",
        ),
        (lambda d: d["spec"].update(extra=1), "spec.extra", "unknown field"),
        (
            lambda d: d["spec"]["template"]["spec"].update(containerConcurrency="many"),
            "spec.template.spec.containerConcurrency",
            "integer",
        ),
        (
            lambda d: d["spec"]["template"]["spec"].update(timeoutSeconds=601),
            "spec.template.spec.timeoutSeconds",
            "600",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                livenessProbe={"httpGet": {"path": "/"}, "successThreshold": 2}
            ),
            "spec.template.spec.containers[0].livenessProbe.successThreshold",
            "must be 1",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                livenessProbe={"periodSeconds": 5}
            ),
            "spec.template.spec.containers[0].livenessProbe",
            "exactly one of httpGet, tcpSocket, grpc and exec",
        ),
        (
            lambda d: d["spec"]["template"]["spec"].update(idleTimeoutSeconds=-1),
            "spec.template.spec.idleTimeoutSeconds",
            "greater than or equal to 0",
        ),
        (
            lambda d: d["spec"]["template"]["spec"].update(responseStartTimeoutSeconds="soon"),
            "spec.template.spec.responseStartTimeoutSeconds",
            "integer",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                command=[], image="ghcr.io/x/y"
            ),
            "spec.template.spec.containers[0].command",
            "only an image",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "PORT", "value": "1"}
            ),
            "spec.template.spec.containers[0].env[1].name",
            "reserved",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "A=B", "value": "1"}
            ),
            "spec.template.spec.containers[0].env[1].name",
            "not an environment variable name",
        ),
        (  # the kernel would cut it at the NUL: the process would get "a"
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "X", "value": "a\0b"}
            ),
            "spec.template.spec.containers[0].env[1].value",
            "NUL character",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(args=["ok", "a\0"]),
            "spec.template.spec.containers[0].args",
            "NUL character",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                resources={"limits": {"cpu": "lots"}}
            ),
            "spec.template.spec.containers[0].resources.limits",
            "invalid quantity",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                resources={"limits": {"nvidia.com/gpu": "0.5"}}
            ),
            "spec.template.spec.containers[0].resources.limits",
            "whole number",
        ),
        (lambda d: d["metadata"].update(name="Hello_World"), "metadata.name", "DNS label"),
        (lambda d: d.update(apiVersion="apps/v1"), "apiVersion", "serving.knative.dev/v1"),
        (
            lambda d: (
                d["spec"]["template"]
                .setdefault("metadata", {})
                .update(annotations={"autoscaling.knative.dev/window": "2s"})
            ),
            "spec.template.metadata.annotations[autoscaling.knative.dev/window]",
            "2s",
        ),
        (
            lambda d: (
                d["spec"]["template"]
                .setdefault("metadata", {})
                .update(annotations={"serving.knative.dev/progress-deadline": "soon"})
            ),
            "spec.template.metadata.annotations[serving.knative.dev/progress-deadline]",
            "invalid duration",
        ),
        (
            lambda d: d["spec"]["template"].setdefault("metadata", {}).update(name="other-1"),
            "spec.template.metadata.name",
            "must start with the Service name",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                readinessProbe={"httpGet": {"path": "/"}, "tcpSocket": {}}
            ),
            "spec.template.spec.containers[0].readinessProbe",
            "exactly one",
        ),
    ],
)
def test_bad_fields_are_named(hello_doc, mutate, field, message):
    mutate(hello_doc)
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    assert info.value.field == field
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("traffic", "field", "message"),
    [
        ([{"latestRevision": True, "percent": 80}], "spec.traffic", "sum to 100, got 80"),
        ([{"latestRevision": True, "percent": 101}], "spec.traffic[0].percent", "100"),
        (
            [{"latestRevision": True, "revisionName": "hello-00001", "percent": 100}],
            "spec.traffic[0].revisionName",
            "must be empty",
        ),
        ([{"latestRevision": False, "percent": 100}], "spec.traffic[0].revisionName", "required"),
        (
            [{"configurationName": "hello", "percent": 100}],
            "spec.traffic[0].configurationName",
            "not allowed",
        ),
        (
            [
                {"latestRevision": True, "percent": 50, "tag": "a"},
                {"revisionName": "hello-00001", "percent": 50, "tag": "a"},
            ],
            "spec.traffic[1].tag",
            "used twice",
        ),
        (
            [{"latestRevision": True, "percent": 100, "tag": "Bad_Tag"}],
            "spec.traffic[0].tag",
            "DNS-1035",
        ),
        (
            [{"latestRevision": True, "percent": 100, "url": "http://x"}],
            "spec.traffic[0].url",
            "not allowed",
        ),
    ],
)
def test_bad_traffic_is_named(hello_doc, traffic, field, message):
    hello_doc["spec"]["traffic"] = traffic
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    assert info.value.field == field
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("traffic", "stored"),
    [
        (None, [{"latestRevision": True, "percent": 100}]),
        ([], [{"latestRevision": True, "percent": 100}]),
        (
            [
                {"revisionName": "hello-00001", "percent": 100},
                {"tag": "next"},  # 0%, following the latest revision
            ],
            [
                {"revisionName": "hello-00001", "latestRevision": False, "percent": 100},
                {"tag": "next", "latestRevision": True, "percent": 0},
            ],
        ),
    ],
)
def test_traffic_is_stored_with_knatives_defaults(hello_doc, traffic, stored):
    if traffic is not None:
        hello_doc["spec"]["traffic"] = traffic
    service = check(hello_doc).service.model_dump(by_alias=True, exclude_none=True)
    assert service["spec"]["traffic"] == stored


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ({}, {"timeoutSeconds": 300}),
        ({"timeoutSeconds": 0}, {"timeoutSeconds": 300}),
        ({"timeoutSeconds": 300}, {"timeoutSeconds": 300}),
        # Over Knative's default revision timeout: the response must start within that default.
        ({"timeoutSeconds": 600}, {"timeoutSeconds": 600, "responseStartTimeoutSeconds": 300}),
        (
            {"timeoutSeconds": 600, "responseStartTimeoutSeconds": 0, "idleTimeoutSeconds": 30},
            {"timeoutSeconds": 600, "responseStartTimeoutSeconds": 0, "idleTimeoutSeconds": 30},
        ),
    ],
)
def test_timeouts_are_stored_with_knatives_defaults(hello_doc, given, stored):
    hello_doc["spec"]["template"]["spec"].update(given)
    spec = check(hello_doc).service.model_dump(by_alias=True, exclude_none=True)["spec"]
    timeouts = {
        k: v for k, v in spec["template"]["spec"].items() if k.lower().endswith("timeoutseconds")
    }
    assert timeouts == stored


def test_rollout_duration_annotation(hello_doc):
    hello_doc["metadata"]["annotations"] = {"serving.knative.dev/rollout-duration": "2m"}
    assert check(hello_doc).rollout_duration_s == 120.0


@pytest.mark.parametrize(
    "key",
    [
        "autoscaling.knative.dev/min-scale",
        "autoscaling.knative.dev/class",
        "tidal.dev/mode",
        "tidal.dev/warm-standby-pool",
        "predictive.tidal.dev/quantile",
    ],
)
def test_revision_annotations_on_the_service_metadata_are_refused(hello_doc, key):
    """On the Service's own metadata they would silently do nothing (Knative refuses
    autoscaling.knative.dev/* there too)."""
    hello_doc["metadata"]["annotations"] = {key: "2", "team": "ml"}
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    assert info.value.field == f"metadata.annotations[{key}]"
    assert 'under "spec.template.metadata.annotations" to work' in info.value.message


def test_every_misplaced_annotation_is_named_at_once(hello_doc):
    hello_doc["metadata"]["annotations"] = {
        "autoscaling.knative.dev/min-scale": "1",
        "tidal.dev/mode": "auto",
    }
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    assert [field for field, _ in info.value.problems] == [
        "metadata.annotations[autoscaling.knative.dev/min-scale]",
        "metadata.annotations[tidal.dev/mode]",
    ]


def test_the_visibility_label_is_cluster_local_or_absent(hello_doc):
    assert check(hello_doc).public
    hello_doc["metadata"]["labels"] = {"networking.knative.dev/visibility": "cluster-local"}
    assert not check(hello_doc).public
    hello_doc["metadata"]["labels"] = {"networking.knative.dev/visibility": "private"}
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    assert info.value.field == "metadata.labels[networking.knative.dev/visibility]"
    assert "must be 'cluster-local'" in info.value.message and "'private'" in info.value.message


def test_a_tag_whose_host_label_is_too_long_is_refused(hello_doc):
    hello_doc["metadata"]["name"] = "b" * 50
    hello_doc["spec"]["traffic"] = [{"latestRevision": True, "percent": 100, "tag": "c" * 12}]
    check(hello_doc)  # "cccccccccccc-bbb…" is 63 characters: fits
    hello_doc["spec"]["traffic"][0]["tag"] = "c" * 13
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    assert info.value.field == "spec.traffic[0].tag"
    assert "64 characters; a DNS label has at most 63" in info.value.message


def test_port_names_are_knatives(hello_doc):
    container = hello_doc["spec"]["template"]["spec"]["containers"][0]
    for name in ("http1", "h2c", ""):
        container["ports"] = [{"containerPort": 8080, "name": name}]
        check(hello_doc)
    container["ports"][0]["name"] = "grpc"
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    assert info.value.field == "spec.template.spec.containers[0].ports[0].name"
    assert "'grpc' is not allowed: the name must be empty, 'http1' or 'h2c'" in info.value.message


def test_knatives_queue_proxy_ports_are_reserved(hello_doc):
    container = hello_doc["spec"]["template"]["spec"]["containers"][0]
    for port in (8012, 8013, 8022, 9090, 9091, 8008):
        container["ports"] = [{"containerPort": port}]
        with pytest.raises(InvalidSpec) as info:
            check(hello_doc)
        assert info.value.field == "spec.template.spec.containers[0].ports[0].containerPort"
        assert f"{port} is a reserved port" in info.value.message


def test_an_h2c_port_takes_no_http_probe(hello_doc):
    container = hello_doc["spec"]["template"]["spec"]["containers"][0]
    container["ports"] = [{"containerPort": 8080, "name": "h2c"}]
    container["readinessProbe"] = {"tcpSocket": {}}
    check(hello_doc)
    container["readinessProbe"] = {"grpc": {"service": "tidal.example.Model"}}
    check(hello_doc)
    container["readinessProbe"] = {"grpc": {}, "tcpSocket": {}}
    with pytest.raises(InvalidSpec, match="exactly one of httpGet, tcpSocket, grpc and exec"):
        check(hello_doc)
    container["readinessProbe"] = {"grpc": {"port": 9090}}
    with pytest.raises(InvalidSpec, match="9090 is not the container's port"):
        check(hello_doc)
    container["readinessProbe"] = {"grpc": {}}
    container["livenessProbe"] = {"httpGet": {"path": "/healthz"}}
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    assert info.value.field == "spec.template.spec.containers[0].livenessProbe.httpGet"
    assert "use grpc (the gRPC health check) or tcpSocket" in info.value.message


def test_aggressive_readiness_probing_takes_no_threshold_or_timeout(hello_doc):
    """Knative's rule: periodSeconds 0 means probing every 50 ms until the first success, so
    failureThreshold and timeoutSeconds would mean nothing, and are refused."""
    container = hello_doc["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"] = {"tcpSocket": {}, "failureThreshold": 3, "timeoutSeconds": 2}
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    base = "spec.template.spec.containers[0].readinessProbe"
    assert info.value.problems == [
        (f"{base}.failureThreshold", "failureThreshold is disallowed when periodSeconds is zero"),
        (f"{base}.timeoutSeconds", "timeoutSeconds is disallowed when periodSeconds is zero"),
    ]
    container["readinessProbe"]["periodSeconds"] = 5
    check(hello_doc)


def test_startup_and_exec_probes_are_checked(hello_doc):
    """Knative takes startupProbe and exec probes; their Kubernetes rules apply."""
    container = hello_doc["spec"]["template"]["spec"]["containers"][0]
    container["startupProbe"] = {"exec": {"command": ["test", "-f", "/tmp/loaded"]}}
    container["livenessProbe"] = {"exec": {"command": ["python", "check.py"]}, "periodSeconds": 5}
    probe = check(hello_doc).service.spec.template.spec.containers[0].startup_probe
    assert probe is not None and probe.exec is not None
    assert probe.exec.command == ["test", "-f", "/tmp/loaded"]
    for bad, field, message in [
        ({"exec": {"command": []}}, "startupProbe.exec.command", "at least 1 item"),
        ({"exec": {}}, "startupProbe.exec.command", "Field required"),
        ({"exec": {"command": ["a\0b"]}}, "startupProbe.exec.command", "NUL"),
        ({"exec": {"command": ["true"], "shell": True}}, "startupProbe.exec.shell", "unknown"),
        (
            {"exec": {"command": ["true"]}, "tcpSocket": {}},
            "startupProbe",
            "exactly one of httpGet, tcpSocket, grpc and exec",
        ),
        (
            {"tcpSocket": {}, "successThreshold": 2},
            "startupProbe.successThreshold",
            "must be 1 for a startup probe",
        ),
        ({"tcpSocket": {"port": 9}}, "startupProbe.tcpSocket.port", "9 is not the container's"),
    ]:
        container["startupProbe"] = bad
        with pytest.raises(InvalidSpec) as info:
            check(hello_doc)
        where = [field for field, _ in info.value.problems]
        assert f"spec.template.spec.containers[0].{field}" in where, (bad, where)
        assert message in str(info.value), (bad, str(info.value))


def test_a_probe_on_another_port_is_refused(hello_doc):
    container = hello_doc["spec"]["template"]["spec"]["containers"][0]
    for port in (8080, None):
        container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": port}}
        check(hello_doc)  # the serving port (Knative's default 8080), or none
    container["ports"] = [{"containerPort": 9000, "name": "http1"}]
    container["readinessProbe"] = {"tcpSocket": {"port": "http1"}}
    check(hello_doc)
    container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": 8081}}
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    assert info.value.field == "spec.template.spec.containers[0].readinessProbe.httpGet.port"
    assert "8081 is not the container's port (9000)" in info.value.message
    del container["readinessProbe"]
    container["livenessProbe"] = {"tcpSocket": {"port": 9001}}
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    assert info.value.field == "spec.template.spec.containers[0].livenessProbe.tcpSocket.port"


def test_server_fields_and_status_are_accepted_for_reapply(hello_doc):
    hello_doc["metadata"].update(
        resourceVersion="7", uid="u", generation=2, creationTimestamp="2026-01-01T00:00:00Z"
    )
    hello_doc["status"] = {"url": "http://hello.default.example.com"}
    assert check(hello_doc).name == "hello"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            lambda spec: spec["containers"][0].update(name="queue-proxy"),
            "spec.template.spec.containers[0].name",
            '"queue-proxy" is a reserved container name',
        ),
        (
            lambda spec: spec["containers"][0].update(name="Model_Server"),
            "spec.template.spec.containers[0].name",
            "'Model_Server' is not a DNS label (a container's name)",
        ),
        (
            lambda spec: spec.update(serviceAccountName="model runner"),
            "spec.template.spec.serviceAccountName",
            "'model runner' is not a DNS-1123 subdomain",
        ),
        (
            lambda spec: spec["containers"][0].update(
                resources={"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}
            ),
            "spec.template.spec.containers[0].resources.requests[memory]",
            "2Gi must be less than or equal to the memory limit of 1Gi",
        ),
    ],
)
def test_what_a_pod_may_not_have_is_refused_but_not_on_restore(hello_doc, change, field, message):
    """The API server's and Knative's pod rules, named at apply; a stored service that breaks
    one still runs after an upgrade (nothing on this machine depends on them)."""
    change(hello_doc["spec"]["template"]["spec"])
    with pytest.raises(InvalidSpec) as info:
        check(hello_doc)
    assert (field, message) in info.value.problems
    validate_service(hello_doc, CONFIG, restoring=True)
