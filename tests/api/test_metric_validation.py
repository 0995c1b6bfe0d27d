"""Which metric each class takes, and what a metric needs, refused as Knative (and ACK) refuse it:
the message names the annotation or field."""

from __future__ import annotations

import pytest

from tidal.api.autoscaling import AutoscalerConfig
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import validate_service

A = "autoscaling.knative.dev/"
HPA = {A + "class": "hpa.autoscaling.knative.dev"}
PREDICTIVE = {A + "class": "predictive.tidal.dev"}


def service(annotations: dict[str, str], resources: dict | None = None) -> dict:
    container = {"command": ["python", "app.py"], "resources": resources or {}}
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "svc"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [container]},
            }
        },
    }


def refused(annotations: dict[str, str], resources: dict | None = None) -> str:
    with pytest.raises(InvalidSpec) as exc:
        validate_service(service(annotations, resources), AutoscalerConfig())
    return str(exc.value)


def accepted(annotations: dict[str, str], resources: dict | None = None):
    return validate_service(service(annotations, resources), AutoscalerConfig()).autoscaling


CPU = {"requests": {"cpu": "200m"}}


@pytest.mark.parametrize("metric", ["cpu", "memory", "gpu"])
def test_kpa_refuses_resource_metrics_and_names_the_classes_that_take_them(metric):
    message = refused({A + "metric": metric, A + "target": "50"}, CPU)
    assert f"annotations[{A}metric]" in message
    assert "must be concurrency, rps or rt" in message
    assert "hpa.autoscaling.knative.dev" in message and "predictive.tidal.dev" in message


def test_hpa_refuses_rt_and_custom_metrics_it_cannot_measure():
    assert "response time with class kpa" in refused(
        {**HPA, A + "metric": "rt", A + "target": "200"}
    )
    message = refused({**HPA, A + "metric": "queue_depth", A + "target": "5"})
    assert "metrics adapter" in message and "queue_depth" in message


def test_every_class_takes_the_metrics_it_scales_on():
    assert accepted({A + "metric": "rt", A + "target": "200"}).metric == "rt"
    for metric in ("cpu", "memory", "concurrency", "rps"):
        assert accepted({**HPA, A + "metric": metric, A + "target": "50"}, CPU).metric == metric
    for metric in ("rt", "cpu", "memory", "rps"):
        got = accepted({**PREDICTIVE, A + "metric": metric, A + "target": "50"}, CPU)
        assert got.metric == metric
    assert accepted({**HPA}, None).metric == "cpu"  # Knative's default for the HPA class


def test_rt_and_memory_need_a_target():
    assert "milliseconds" in refused({A + "metric": "rt"})
    message = refused({**HPA, A + "metric": "memory"})
    assert f"annotations[{A}target]" in message and "MiB" in message


def test_cpu_needs_a_request_on_the_predictive_class_and_gpu_needs_a_gpu():
    message = refused({**PREDICTIVE, A + "metric": "cpu"})
    assert "resources.requests.cpu" in message
    assert "nvidia.com/gpu" in refused({**HPA, A + "metric": "gpu", A + "target": "50"})
    gpu = {"limits": {"nvidia.com/gpu": 1}}
    assert accepted({**HPA, A + "metric": "gpu", A + "target": "50"}, gpu).metric == "gpu"


def test_rt_percentile_and_hpa_sync_period_are_checked():
    rt = {A + "metric": "rt", A + "target": "200"}
    assert accepted({**rt, "tidal.dev/rt-percentile": "95"}).metric == "rt"
    assert "0 < value < 100" in refused({**rt, "tidal.dev/rt-percentile": "100"})
    assert "only applies to metric rt" in refused({"tidal.dev/rt-percentile": "95"})
    assert "1s <= value <= 15m" in refused({**HPA, "tidal.dev/hpa-sync-period": "0s"}, CPU)
    assert "only applies to class" in refused({"tidal.dev/hpa-sync-period": "5s"})
