import json

from tidal.controller.kubeapi.openapi import group_version_document, root, v2_protobuf
from tidal.controller.kubeapi.resources import REVISIONS
from tidal.controller.kubeapi.tables import age, table, wants_table

NOW = 1_800_000_000.0


def test_wants_table_reads_kubectls_accept_header():
    assert wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert not wants_table("application/json")
    assert not wants_table("application/json;as=Table;v=v1beta1;g=meta.k8s.io")


def test_ages_as_kubectl_prints_them():
    def stamp(ago: float) -> str:
        import datetime as dt

        return dt.datetime.fromtimestamp(NOW - ago, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S%z")

    assert [age(stamp(s), NOW) for s in (5, 150, 1200, 4 * 3600 + 600, 30 * 3600, 3 * 86400)] == [
        "5s",
        "2m30s",
        "20m",
        "4h10m",
        "30h",
        "3d",
    ]


def test_revision_rows_have_knatives_columns_and_metadata():
    revision = {
        "metadata": {
            "name": "hello-00001",
            "labels": {
                "serving.knative.dev/configuration": "hello",
                "serving.knative.dev/configurationGeneration": "1",
            },
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "actualReplicas": 2,
            "desiredReplicas": 3,
        },
    }
    out = table(REVISIONS, [revision])
    assert [c["name"] for c in out["columnDefinitions"]] == [
        "Name", "Config Name", "Generation", "Ready", "Reason", "Actual Replicas",
        "Desired Replicas",
    ]  # fmt: skip
    assert out["rows"][0]["cells"] == ["hello-00001", "hello", "1", "True", "", 2, 3]
    assert out["rows"][0]["object"]["metadata"]["name"] == "hello-00001"


def test_openapi_v3_describes_services_for_explain_and_server_validation():
    doc = group_version_document("serving.knative.dev/v1")
    schemas = doc["components"]["schemas"]
    service = schemas["Service"]
    assert service["x-kubernetes-group-version-kind"] == [
        {"group": "serving.knative.dev", "version": "v1", "kind": "Service"}
    ]
    template = schemas["ServiceSpec"]["properties"]["template"]
    assert template["allOf"] == [{"$ref": "#/components/schemas/RevisionTemplate"}]
    assert template["description"].startswith("The revision template")
    assert "anyOf" not in json.dumps(schemas)  # optional fields are plain types, no null branch
    port = schemas["HTTPGetAction"]["properties"]["port"]
    assert port["x-kubernetes-int-or-string"] is True
    patch = doc["paths"]["/apis/serving.knative.dev/v1/namespaces/{namespace}/services/{name}"]
    assert {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}} in patch[
        "patch"
    ]["parameters"]
    assert (
        "patch"
        not in doc["paths"]["/apis/serving.knative.dev/v1/namespaces/{namespace}/revisions/{name}"]
    )
    urls = [p["serverRelativeURL"] for p in root()["paths"].values()]
    assert any(u.startswith("/openapi/v3/apis/serving.knative.dev/v1?hash=") for u in urls)


def test_openapi_v2_protobuf_lists_patch_with_dry_run():
    data = v2_protobuf()
    assert data.startswith(b"\x0a\x032.0")  # field 1, swagger = "2.0"
    assert b"dryRun" in data
    assert b"group: serving.knative.dev\nkind: Service\nversion: v1\n" in data
    assert b"kind: Revision" not in data  # read-only kinds have no PATCH
