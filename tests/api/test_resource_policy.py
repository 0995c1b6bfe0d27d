"""ResourcePolicy manifests (ACK scheduling.alibabacloud.com/v1alpha1, docs/pools.md#units)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tidal.api.errors import InvalidSpec
from tidal.api.manifest import load_documents
from tidal.api.resource_policy import selects, validate_resource_policy

SERVICE = "serving.knative.dev/service"

# The shape of ACK's documented example, pointed at a Knative Service.
ACK_EXAMPLE = """
apiVersion: scheduling.alibabacloud.com/v1alpha1
kind: ResourcePolicy
metadata:
  name: hello
  namespace: default
spec:
  ignorePreviousPod: false
  ignoreTerminatingPod: true
  matchLabelKeys:
  - pod-template-hash
  preemptPolicy: AfterAllUnits
  selector:
    serving.knative.dev/service: hello
  strategy: prefer
  units:
  - resource: ecs
    nodeSelector:
      tier: ecs
    max: 2
    podLabels:
      unit: reserved
    podAnnotations:
      note: reserved
  - resource: eci
  whenTryNextUnits:
    policy: TimeoutOrExceedMax
    timeout: 1m
"""


def example() -> dict[str, Any]:
    return copy.deepcopy(load_documents(ACK_EXAMPLE)[0])


def test_ack_example_parses_with_its_field_names():
    spec = validate_resource_policy(example()).spec
    assert spec.selector == {"serving.knative.dev/service": "hello"}
    assert [(u.resource, u.node_selector, u.max) for u in spec.units] == [
        ("ecs", {"tier": "ecs"}, 2),
        ("eci", {}, None),
    ]
    assert spec.units[0].pod_labels == {"unit": "reserved"}
    assert spec.when_try_next_units.policy == "TimeoutOrExceedMax"
    assert spec.when_try_next_units.timeout_s == 60
    assert spec.match_label_keys == ["pod-template-hash"]


def test_defaults_follow_ack():
    doc = example()
    doc["spec"] = {"units": [{"resource": "ecs"}]}
    spec = validate_resource_policy(doc).spec
    assert spec.strategy == "prefer"
    assert spec.when_try_next_units.policy == "LackResourceOrExceedMax"
    assert spec.when_try_next_units.timeout_s == 15 * 60
    assert spec.ignore_terminating_pod is True
    assert spec.selector == {} and spec.match_label_keys == []


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]
    if isinstance(doc, list):
        doc[int(last)] = value
    else:
        doc[last] = value


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        ("apiVersion", "scheduling.sigs.x-k8s.io/v1alpha1", "apiVersion", "expected apiVersion"),
        ("metadata.name", None, "metadata.name", "needs a name"),
        ("spec.units", [], "spec.units", "at least one unit"),
        ("spec.units.0.max", -1, "spec.units[0].max", "greater than or equal to 0"),
        ("spec.units.1.resource", "spot", "spec.units[1].resource", "'ecs', 'eci'"),
        ("spec.units.1.maxReplicas", 3, "spec.units[1].maxReplicas", "unknown field"),
        ("spec.strategy", "always", "spec.strategy", "'prefer' or 'required'"),
        ("spec.whenTryNextUnits.policy", "Never", "spec.whenTryNextUnits.policy", "ExceedMax"),
        (
            "spec.whenTryNextUnits.timeout",
            "soon",
            "spec.whenTryNextUnits.timeout",
            "invalid duration",
        ),
        ("spec.whenTryNextUnits.timeout", "0s", "spec.whenTryNextUnits.timeout", "must be > 0"),
        ("spec.ignorePreviousPod", True, "spec.ignorePreviousPod", "not supported"),
        ("spec.matchLabelKeys", ["a", "a"], "spec.matchLabelKeys[1]", "listed twice"),
        ("spec.matchLabelKeys", [""], "spec.matchLabelKeys[0]", "must not be empty"),
        ("spec.preemptPolicy", "Always", "spec.preemptPolicy", "AfterAllUnits"),
        ("spec.selector", {"a": 1}, "spec.selector.a", "valid string"),
    ],
)
def test_bad_policies_name_the_field(path, value, field, message):
    doc = example()
    set_path(doc, path, value)
    with pytest.raises(InvalidSpec) as err:
        validate_resource_policy(doc)
    assert err.value.field == field
    assert message in err.value.message


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({SERVICE: "hello"}, {SERVICE: "hello", "other": "x"}, True),
        ({SERVICE: "hello"}, {SERVICE: "other"}, False),
        ({SERVICE: "hello", "tier": "a"}, {SERVICE: "hello"}, False),
        ({}, {"anything": "x"}, True),  # an empty selector selects every pod of the namespace
    ],
)  # fmt: skip
def test_selects_matches_every_selector_label(selector, labels, expected):
    doc = example()
    doc["spec"]["selector"] = selector
    assert selects(validate_resource_policy(doc), labels) is expected
