"""The admin API's guards, limits and store-first ordering, in process (fast, no replicas)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.security.inprocess import AUTH, TOKEN, AdminUnderTest, hello

APPLY = "/apis/tidal.dev/v1/apply"
SERVICE = "/apis/serving.knative.dev/v1/namespaces/default/services/hello"
HISTORY = "/apis/tidal.dev/v1/namespaces/default/services"


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[AdminUnderTest]:
    under_test = AdminUnderTest(tmp_path / "data")
    yield under_test
    under_test.close()


class FullDisk:
    """Stands in for the SQLite connection and refuses writes as a full disk does, either at
    once ("write") or only when the transaction commits ("commit")."""

    def __init__(self, db: sqlite3.Connection, at: str) -> None:
        self._db = db
        self.at = at
        self.full = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        verb = sql.lstrip().split()[0].upper()
        failing = ("COMMIT",) if self.at == "commit" else ("INSERT", "DELETE", "UPDATE")
        if self.full and verb in failing:
            raise sqlite3.OperationalError("database or disk is full")
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def fill_disk(admin: AdminUnderTest, at: str) -> FullDisk:
    store = admin.platform.store
    disk = FullDisk(store._db, at)  # type: ignore[attr-defined]
    store._db = disk  # type: ignore[attr-defined]
    disk.full = True
    return disk


def test_unauthenticated_and_wrong_tokens_are_refused(admin: AdminUnderTest) -> None:
    for headers in (
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json", "Authorization": "Bearer wrong"},
        {"Content-Type": "application/json", "Authorization": f"Basic {TOKEN}"},
    ):
        status, body = admin.call("POST", APPLY, {"items": [hello()]}, headers)
        assert status == 401 and "bearer token" in body["message"]
        assert admin.call("GET", "/apis/serving.knative.dev/v1/services", None, headers)[0] == 401
    assert admin.platform.store.list("Service") == []
    # the token in X-Tidal-Token (what the Kubernetes API server's proxy passes on) works
    headers = {"Content-Type": "application/json", "X-Tidal-Token": TOKEN}
    assert admin.call("GET", "/apis/serving.knative.dev/v1/services", None, headers)[0] == 200


def test_errors_are_kubernetes_statuses_with_their_reason(admin: AdminUnderTest) -> None:
    status, body = admin.call("GET", "/apis/tidal.dev/v1/nope")
    assert status == 404 and body["reason"] == "NotFound"
    assert body["message"].startswith("the server could not find the requested resource")
    status, body = admin.call("GET", "/apis/tidal.dev/v1/info", None, {})
    assert (status, body["kind"], body["reason"]) == (401, "Status", "Unauthorized")
    admin.call("POST", APPLY, {"items": [hello()]})
    for method, path in (  # a kind under another kind's group is no path at all
        ("GET", "/apis/serving.knative.dev/v1beta1/services"),
        ("GET", "/apis/scheduling.alibabacloud.com/v1alpha1/namespaces/default/services/hello"),
        ("DELETE", "/apis/serving.knative.dev/v1/namespaces/default/domainmappings/x.y.z"),
    ):
        status, body = admin.call(method, path)
        assert (status, body["reason"]) == (404, "NotFound"), path
        assert body["message"].startswith("the server could not find the requested resource")
    assert admin.platform.store.get("Service", "default", "hello") is not None


def test_open_paths_need_no_token(admin: AdminUnderTest) -> None:
    assert admin.call("GET", "/healthz", headers={})[0] == 200
    assert admin.call("GET", "/metrics", headers={})[0] == 200


def test_foreign_browser_origins_are_refused_even_with_the_token(admin: AdminUnderTest) -> None:
    headers = {**AUTH, "Origin": "http://evil.example"}
    status, body = admin.call("POST", APPLY, {"items": [hello()]}, headers)
    assert status == 403 and "cross-origin request refused" in body["message"]
    assert admin.platform.store.list("Service") == []
    own = {**AUTH, "Origin": "http://127.0.0.1:8081"}
    assert admin.call("GET", "/apis/tidal.dev/v1/info", None, own)[0] == 200


# What a browser page may send cross-site without a CORS preflight (and a few near misses).
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
        "application/yaml",
        "text/json",
        "application/json-seq",
        "text/plain+json",
    ],
)
def test_mutating_calls_take_only_json(admin: AdminUnderTest, content_type: str | None) -> None:
    headers = {"Authorization": AUTH["Authorization"]}
    if content_type:
        headers["Content-Type"] = content_type
    status, body = admin.call("POST", APPLY, b'{"items": []}', headers)
    assert status == 415 and "application/json" in body["message"]
    assert "apply-patch+yaml" in body["message"]


def test_only_a_bodiless_upgrade_passes_without_json(admin: AdminUnderTest) -> None:
    """kubectl's SPDY exec (a POST with Upgrade and no body) reaches its handler, which refuses
    it; an Upgrade header does not let a body of another type through."""
    upgrade = {"Authorization": AUTH["Authorization"], "Upgrade": "SPDY/3.1"}
    with_body = {**upgrade, "Content-Type": "text/plain"}
    assert admin.call("POST", APPLY, b'{"items": []}', with_body)[0] == 415
    status, body = admin.call("POST", APPLY, b"", upgrade)
    assert status == 400 and "JSON" in body["message"]  # the handler's answer: nothing applied


# What kubectl sends for create, patch and apply: each needs a CORS preflight from a browser.
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ],
)
def test_kubectls_body_types_pass_the_guard(admin: AdminUnderTest, content_type: str) -> None:
    headers = {"Authorization": AUTH["Authorization"], "Content-Type": content_type}
    status, body = admin.call("POST", APPLY, b'{"items": []}', headers)
    assert status == 200, body


@pytest.mark.parametrize("at", ["write", "commit"])
def test_a_failed_apply_changes_nothing(admin: AdminUnderTest, at: str) -> None:
    before = admin.snapshot()
    disk = fill_disk(admin, at)
    status, body = admin.apply(hello())
    assert status == 507, body
    assert body["message"].startswith("state store full: database or disk is full")
    assert admin.snapshot() == before
    assert admin.platform.runtime.started == []  # type: ignore[attr-defined]
    assert admin.call("GET", SERVICE)[0] == 404
    disk.full = False
    assert admin.apply(hello())[0] == 200  # not left inside a dead transaction
    assert admin.call("GET", SERVICE)[0] == 200


@pytest.mark.parametrize("at", ["write", "commit"])
def test_a_failed_delete_changes_nothing(admin: AdminUnderTest, at: str) -> None:
    assert admin.apply(hello())[0] == 200
    assert "hello.default.example.com" in admin.platform.router.hosts
    before = admin.snapshot()
    disk = fill_disk(admin, at)
    status, body = admin.call("DELETE", SERVICE)
    assert status == 507 and "state store full" in body["message"]
    assert admin.snapshot() == before  # the gateway still routes the service
    disk.full = False
    assert admin.call("DELETE", SERVICE)[0] == 200
    assert "hello.default.example.com" not in admin.platform.router.hosts


def test_a_failed_traffic_change_changes_nothing(admin: AdminUnderTest) -> None:
    assert admin.apply(hello())[0] == 200
    second = hello(annotations={"autoscaling.knative.dev/target": "5"})
    assert admin.apply(second)[0] == 200
    before = admin.snapshot()
    fill_disk(admin, "commit")
    split = hello(annotations={"autoscaling.knative.dev/target": "5"})
    split["spec"]["traffic"] = [
        {"revisionName": "hello-00001", "percent": 50},
        {"revisionName": "hello-00002", "percent": 50},
    ]
    status, body = admin.apply(split)
    assert status == 507 and "state store full" in body["message"]
    assert admin.snapshot() == before


def test_deep_json_is_refused_not_a_500(admin: AdminUnderTest) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    status, body = admin.call("POST", APPLY, deep)
    assert status == 400 and "nested deeper than 100" in body["message"]
    deep_object = b'{"items": [' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"]}"
    assert admin.call("POST", APPLY, deep_object)[0] == 400


def test_bodies_over_3_mib_are_refused(admin: AdminUnderTest) -> None:
    status, body = admin.call("POST", APPLY, b" " * (3 * 1024 * 1024 + 1))
    assert status == 413 and "body" in body["message"].lower()


def test_yaml_is_not_taken_by_the_admin_api(admin: AdminUnderTest) -> None:
    bomb = b'a: &a ["lol","lol"]\nb: &b [*a,*a]\n'
    headers = {**AUTH, "Content-Type": "application/yaml"}
    assert admin.call("POST", APPLY, bomb, headers)[0] == 415
    assert admin.call("POST", APPLY, bomb)[0] == 400


@pytest.mark.parametrize(
    "doc, field, words",
    [
        (
            hello(annotations={"a": "x" * (256 * 1024)}),
            "spec.template.metadata.annotations",
            "at most 262144 bytes",
        ),
        (
            {**hello(), "metadata": {"name": "hello", "labels": {"team": "x" * 64}}},
            "metadata.labels[team]",
            "at most 63 characters",
        ),
        (
            {**hello(), "metadata": {"name": "hello", "labels": {"team": "a b"}}},
            "metadata.labels[team]",
            "value must be",
        ),
        (
            {**hello(), "metadata": {"name": "hello", "labels": {"Bad_Prefix/x": "a"}}},
            "metadata.labels[Bad_Prefix/x]",
            "DNS-1123 subdomain",
        ),
        (
            {**hello(), "metadata": {"name": "hello", "annotations": {"-x": "a"}}},
            "metadata.annotations[-x]",
            "key name",
        ),
        (hello("h" * 64), "metadata.name", "at most 63"),
    ],
)
def test_kubernetes_limits_on_metadata(
    admin: AdminUnderTest, doc: dict[str, Any], field: str, words: str
) -> None:
    status, body = admin.apply(doc)
    assert status == 422, body
    assert body["field"] == field and words in body["message"]
    assert admin.platform.store.list("Service") == []


def test_a_bad_document_stores_none_of_the_others(admin: AdminUnderTest) -> None:
    bad = {**hello("two"), "metadata": {"name": "two", "labels": {"x": "y" * 100}}}
    status, body = admin.apply(hello("one"), bad)
    assert status == 422 and body["field"] == "document 2: metadata.labels[x]"
    assert admin.platform.store.list("Service") == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "expected an object with timestamps and values lists"),
        ({"timestamps": "abc", "values": "abd"}, "bad history: could not convert"),
        ({"timestamps": [1e300], "values": [5]}, "is in the future"),
        ({"timestamps": [0], "values": [-5]}, "values[0] = -5.0"),
        ({"timestamps": [0], "values": [5], "field": "cpu"}, "not 'cpu'"),
    ],
)
def test_a_bad_history_import_is_a_400_naming_it(
    admin: AdminUnderTest, body: Any, problem: str
) -> None:
    assert admin.apply(hello())[0] == 200
    status, answer = admin.call("POST", f"{HISTORY}/hello/history", body)
    assert status == 400 and problem in answer["message"]
    assert admin.platform.history.first_minute("default", "hello") is None


def test_a_history_import_says_what_it_kept(admin: AdminUnderTest) -> None:
    assert admin.apply(hello())[0] == 200
    now = time.time() // 60 * 60
    stamps = [now - 50 * 86400, now - 120, now - 60]
    status, answer = admin.call(
        "POST", f"{HISTORY}/hello/history", {"timestamps": stamps, "values": [1, 2, 3]}
    )
    assert status == 200 and (answer["minutes"], answer["tooOld"]) == (2, 1)
    assert answer["from"] < answer["to"] and answer["to"].endswith("Z")
    status, answer = admin.call(
        "POST", f"{HISTORY}/nosuch/history", {"timestamps": [], "values": []}
    )
    assert status == 404


def test_following_logs_where_pods_keep_them_says_how_to_instead(admin: AdminUnderTest) -> None:
    """A runtime whose replicas keep their own logs and that cannot follow them (the Kubernetes
    runtime can: tests/kubernetes/test_k8s_platform.py) answers with kubectl's command."""
    admin.call("POST", APPLY, {"items": [hello()]})
    admin.platform.runtime.keeps_log_files = False
    status, body = admin.call("GET", f"{HISTORY}/hello/logs?follow=true")
    assert status == 501
    assert "kubectl logs -f -l serving.knative.dev/service=hello -n default" in body["message"]
