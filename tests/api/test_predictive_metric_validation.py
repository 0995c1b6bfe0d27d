"""The predictive classes take every metric they can plan on, and nothing else
(docs/autoscaling.md#predictive-on-every-metric)."""

from __future__ import annotations

import pytest

from tests.api.test_metric_validation import HPA, PREDICTIVE, A, accepted, refused

AHPA = {A + "class": "ahpa.autoscaling.knative.dev"}
NEEDS = {
    "concurrency": ({}, None),
    "rps": ({}, None),
    "rt": ({A + "target": "200"}, None),
    "cpu": ({A + "target": "60"}, {"requests": {"cpu": "500m"}}),
    "memory": ({A + "target": "512"}, None),
    "gpu": ({A + "target": "70"}, {"limits": {"nvidia.com/gpu": 1}}),
}


@pytest.mark.parametrize("cls", [PREDICTIVE, AHPA], ids=["predictive", "ahpa"])
@pytest.mark.parametrize("metric", list(NEEDS))
def test_predictive_classes_take_every_metric_with_what_it_needs(cls, metric):
    extra, resources = NEEDS[metric]
    got = accepted({**cls, A + "metric": metric, **extra}, resources)
    assert got.metric == metric and got.autoscaler_class == cls[A + "class"]


def test_predictive_refuses_metrics_it_cannot_plan_on():
    message = refused({**PREDICTIVE, A + "metric": "queue_depth", A + "target": "5"})
    assert f"annotations[{A}metric]" in message and "queue_depth" in message
    assert "concurrency, rps, rt, cpu, memory, gpu" in message


@pytest.mark.parametrize("metric", ["rt", "cpu", "memory", "gpu"])
def test_a_utilisation_on_a_measured_metric_is_refused_not_ignored(metric):
    extra, resources = NEEDS[metric]
    annotations = {**PREDICTIVE, A + "metric": metric, **extra}
    message = refused({**annotations, A + "target-utilization-percentage": "80"}, resources)
    assert f"annotations[{A}target-utilization-percentage]" in message
    assert "only applies to metric concurrency or rps" in message
    # Concurrency takes it; Knative's HPA class accepts it on cpu (and ignores it), so does tidal.
    assert accepted({**PREDICTIVE, A + "target-utilization-percentage": "80"})
    cpu = {**HPA, A + "metric": "cpu", A + "target-utilization-percentage": "80"}
    assert accepted(cpu).metric == "cpu"
