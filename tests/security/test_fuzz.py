"""Property-based fuzzing of manifests and admin requests: never a 500, never a partial write."""

from __future__ import annotations

import copy
import json
import string
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.security.inprocess import AUTH, AdminUnderTest, hello

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OK_STATUSES = {200, 400, 404, 405, 409, 413, 415, 422}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=70)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
ANNOTATION_KEYS = [
    "autoscaling.knative.dev/target",
    "autoscaling.knative.dev/min-scale",
    "autoscaling.knative.dev/max-scale",
    "autoscaling.knative.dev/class",
    "autoscaling.knative.dev/metric",
    "autoscaling.knative.dev/window",
    "autoscaling.knative.dev/panic-window-percentage",
    "serving.knative.dev/progress-deadline",
    "tidal.dev/warm-standby-pool",
]
PATHS = [
    ("apiVersion",),
    ("kind",),
    ("metadata", "name"),
    ("metadata", "namespace"),
    ("metadata", "labels"),
    ("metadata", "annotations"),
    ("metadata", "resourceVersion"),
    ("spec",),
    ("spec", "traffic"),
    ("spec", "template"),
    ("spec", "template", "metadata"),
    ("spec", "template", "metadata", "name"),
    ("spec", "template", "spec", "containerConcurrency"),
    ("spec", "template", "spec", "timeoutSeconds"),
    ("spec", "template", "spec", "responseStartTimeoutSeconds"),
    ("spec", "template", "spec", "idleTimeoutSeconds"),
    ("spec", "template", "spec", "containers"),
]
CONTAINER_PATHS = ["command", "args", "env", "image", "workingDir", "resources", "readinessProbe"]


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid Service with a few parts replaced by arbitrary JSON or plausible values."""
    doc = copy.deepcopy(hello(draw(st.sampled_from(["a", "b", "c"]))))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        choice = draw(st.integers(0, 2))
        if choice == 0:
            path = draw(st.sampled_from(PATHS))
            target = doc
            for part in path[:-1]:
                if not isinstance(target.get(part), dict):
                    target[part] = {}
                target = target[part]
            target[path[-1]] = draw(json_values)
        elif choice == 1:
            spec = doc.get("spec")
            template = spec.get("template") if isinstance(spec, dict) else None
            if isinstance(template, dict):
                meta = template.setdefault("metadata", {})
                if isinstance(meta, dict):
                    annotations = meta.setdefault("annotations", {})
                    if isinstance(annotations, dict):
                        key = draw(st.sampled_from(ANNOTATION_KEYS))
                        annotations[key] = draw(st.text(max_size=8) | st.just("3"))
        else:
            containers: Any = doc
            for part in ("spec", "template", "spec", "containers"):
                containers = containers.get(part) if isinstance(containers, dict) else None
            if isinstance(containers, list) and containers and isinstance(containers[0], dict):
                containers[0][draw(st.sampled_from(CONTAINER_PATHS))] = draw(json_values)
    return doc


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminUnderTest]:
    under_test = AdminUnderTest(tmp_path_factory.mktemp("fuzz") / "data")
    yield under_test
    under_test.close()


@FUZZ
@given(docs=st.lists(manifests(), min_size=1, max_size=3))
def test_apply_is_all_or_nothing_and_never_a_500(
    admin: AdminUnderTest, docs: list[dict[str, Any]]
) -> None:
    before = admin.snapshot()
    status, body = admin.apply(*docs)
    event(f"apply answered {status}")  # --hypothesis-show-statistics: how many got through
    assert status in OK_STATUSES, body
    if status != 200:
        assert isinstance(body, dict) and body["message"], body
        assert admin.snapshot() == before, f"a refused apply ({status}) changed state: {body}"
        return
    for doc in docs:
        stored = admin.platform.store.get("Service", "default", doc["metadata"]["name"])
        assert stored is not None and stored["spec"]["template"]["spec"]["containers"]


segments = st.text(string.ascii_lowercase + string.digits + "-._~", min_size=1, max_size=12)
admin_paths = st.one_of(
    st.sampled_from(
        [
            "/apis/tidal.dev/v1/apply",
            "/apis/tidal.dev/v1/apply?dryRun=true",
            "/apis/tidal.dev/v1/gateway/stats",
            "/apis/tidal.dev/v1/gateway/poke",
            "/apis/tidal.dev/v1/gateway/state",
            "/apis/tidal.dev/v1/info",
            "/apis/tidal.dev/v1/cost?start=x",
            "/apis/tidal.dev/v1/pools",
            "/apis/serving.knative.dev/v1/services",
        ]
    ),
    st.builds(
        lambda group, ns, plural, name, tail: f"{group}/namespaces/{ns}/{plural}/{name}{tail}",
        st.sampled_from(
            [
                "/apis/serving.knative.dev/v1",
                "/apis/scheduling.alibabacloud.com/v1alpha1",
                "/apis/tidal.dev/v1",
            ]
        ),
        segments,
        st.sampled_from(["services", "revisions", "routes", "resourcepolicies"]) | segments,
        segments,
        st.sampled_from(["", "/logs?tail=x", "/logs?tail=5", "/forecast", "/history"]),
    ),
)
bodies = st.one_of(
    st.none(),
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(manifests(), max_size=2).map(lambda items: json.dumps({"items": items}).encode()),
)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    path=admin_paths,
    body=bodies,
    content_type=st.sampled_from(["application/json", "text/plain", "application/yaml", ""]),
    origin=st.sampled_from([None, None, None, "http://127.0.0.1:8081", "http://evil.example"]),
)
def test_admin_requests_never_get_a_500(
    admin: AdminUnderTest,
    method: str,
    path: str,
    body: bytes | None,
    content_type: str,
    origin: str | None,
) -> None:
    headers = {"Authorization": AUTH["Authorization"]}
    if content_type:
        headers["Content-Type"] = content_type
    if origin:
        headers["Origin"] = origin
    before = admin.snapshot()
    status, answer = admin.call(method, path, body, headers)
    event(f"answered {status}")
    assert status < 500, answer
    if status >= 400:
        assert isinstance(answer, dict) and answer["message"], answer
        assert admin.snapshot() == before
