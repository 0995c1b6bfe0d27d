"""A Service as it last ran, from what tidal made of it (tidal/controller/last_run.py)."""

from __future__ import annotations

from typing import Any

from tidal.controller.last_run import as_last_run

STORED: dict[str, Any] = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "hello", "namespace": "default", "labels": {"team": "ml"}},
    "spec": {"template": {"metadata": {"annotations": {"bad": "spec"}}, "spec": {}}},
    "status": {"latestCreatedRevisionName": "hello-00002"},
}
ROUTE: dict[str, Any] = {"spec": {"traffic": [{"revisionName": "hello-00001", "percent": 100}]}}


def revision(name: str, generation: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "labels": {
                "serving.knative.dev/service": "hello",
                "serving.knative.dev/configuration": "hello",
                "serving.knative.dev/configurationGeneration": str(generation),
                "serving.knative.dev/routingState": "active",
                "app": "hello",
            },
            "annotations": {
                "tidal.dev/template-hash": "0123456789abcdef",
                "serving.knative.dev/routes": "hello",
                "serving.knative.dev/routingStateModified": "2026-12-03T17:00:00Z",
                "autoscaling.knative.dev/min-scale": "1",
            },
        },
        "spec": {"containers": [{"image": f"example/{name}"}]},
    }


def test_the_latest_revisions_template_and_the_routes_traffic() -> None:
    service = as_last_run(STORED, [revision("hello-00001", 1), revision("hello-00002", 2)], ROUTE)
    assert service is not None
    assert service["metadata"] == STORED["metadata"]
    assert service["spec"] == {
        "template": {
            "metadata": {
                "labels": {"app": "hello"},  # what tidal added is left out
                "annotations": {"autoscaling.knative.dev/min-scale": "1"},
            },
            "spec": {"containers": [{"image": "example/hello-00002"}]},
        },
        "traffic": [{"revisionName": "hello-00001", "percent": 100}],
    }


def test_a_template_that_named_its_revision_keeps_the_name() -> None:
    stored = {**STORED, "status": {"latestCreatedRevisionName": "hello-v2"}}
    service = as_last_run(stored, [revision("hello-v2", 2)], ROUTE)
    assert service is not None
    assert service["spec"]["template"]["metadata"]["name"] == "hello-v2"


def test_without_the_revision_or_the_route_there_is_nothing_to_run() -> None:
    assert as_last_run(STORED, [revision("hello-00001", 1)], ROUTE) is None
    assert as_last_run(STORED, [revision("hello-00002", 2)], None) is None
