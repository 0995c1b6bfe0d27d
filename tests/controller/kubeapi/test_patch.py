import json

import pytest

from tidal.controller.kubeapi.patch import APPLY, JSON, MERGE, STRATEGIC, apply_patch
from tidal.controller.kubeapi.status import ApiError

CURRENT = {
    "metadata": {"name": "hello", "labels": {"a": "1"}, "annotations": {"x": "y"}},
    "spec": {"template": {"spec": {"containers": [{"name": "c"}]}}, "traffic": [{"percent": 100}]},
}


def test_merge_patch_replaces_lists_and_null_removes():
    patch = {"spec": {"traffic": None, "template": {"spec": {"containers": [{"name": "d"}]}}}}
    out = apply_patch(CURRENT, MERGE, json.dumps(patch).encode())
    assert "traffic" not in out["spec"]
    assert out["spec"]["template"]["spec"]["containers"] == [{"name": "d"}]
    assert CURRENT["spec"]["traffic"] == [{"percent": 100}]  # the input is not changed


def test_strategic_merge_drops_directives():
    patch = {
        "metadata": {"labels": {"b": "2"}},
        "spec": {"$setElementOrder/traffic": [{"percent": 1}], "$retainKeys": ["traffic"]},
    }
    out = apply_patch(CURRENT, STRATEGIC, json.dumps(patch).encode())
    assert out["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert not any(k.startswith("$") for k in out["spec"])


def test_json_patch_and_its_errors():
    ops = [{"op": "replace", "path": "/spec/traffic/0/percent", "value": 50}]
    assert (
        apply_patch(CURRENT, JSON, json.dumps(ops).encode())["spec"]["traffic"][0]["percent"] == 50
    )
    with pytest.raises(ApiError) as err:
        apply_patch(CURRENT, JSON, b'[{"op": "remove", "path": "/spec/nothing"}]')
    assert err.value.code == 422


def test_server_side_apply_owns_spec_and_merges_labels():
    applied = b"metadata:\n  name: hello\n  labels: {b: '2'}\nspec:\n  template: {spec: {}}\n"
    out = apply_patch(CURRENT, APPLY, applied)
    assert out["spec"] == {"template": {"spec": {}}}  # traffic left the configuration
    assert out["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert out["metadata"]["annotations"] == {"x": "y"}


def test_unknown_patch_type_and_bad_bodies():
    with pytest.raises(ApiError) as err:
        apply_patch(CURRENT, "application/xml", b"{}")
    assert err.value.code == 415
    with pytest.raises(ApiError) as err:
        apply_patch(CURRENT, MERGE, b"{not json")
    assert err.value.code == 400


ALIAS_BOMB = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(
            f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]"
            for a, b in zip("abcdefg", "bcdefgh", strict=True)
        ),
    ]
)


@pytest.mark.parametrize(
    "content_type, body, why",
    [
        # as deep as Python's own parser gives up on: refused by tidal's limit, not a 500
        (MERGE, b"[" * 100_000 + b"]" * 100_000, "is refused: JSON nested deeper than 100"),
        (STRATEGIC, b'{"a":' * 101 + b"1" + b"}" * 101, "nested deeper than 100 levels"),
        (APPLY, f"spec:\n  {ALIAS_BOMB.replace(chr(10), chr(10) + '  ')}".encode(), "expands"),
        (APPLY, b"a: 1\n---\nb: 2\n", "must be one document, not 2"),
    ],
    ids=["deep-json", "deep-object", "yaml-aliases", "two-documents"],
)
def test_bodies_past_tidals_limits_are_refused_with_why(
    content_type: str, body: bytes, why: str
) -> None:
    with pytest.raises(ApiError) as err:
        apply_patch(CURRENT, content_type, body)
    assert err.value.code == 400
    assert why in str(err.value)


def test_validation_causes_one_per_problem():
    from tidal.api.errors import InvalidSpec
    from tidal.controller.kubeapi.status import causes_of, invalid

    one = InvalidSpec("spec.traffic", "percentages must sum to 100, got 50")
    assert causes_of(one) == [
        {"reason": "FieldValueInvalid", "field": "spec.traffic", "message": one.message}
    ]
    lines = InvalidSpec("", "spec.a: bad\nspec.b[0].name: worse")
    assert [(c["field"], c["message"]) for c in causes_of(lines)] == [
        ("spec.a", "bad"),
        ("spec.b[0].name", "worse"),
    ]
    listed = InvalidSpec("spec.a", "bad")
    listed.problems = [InvalidSpec("spec.a", "bad"), InvalidSpec("metadata.name", "missing")]
    error = invalid("Service", "serving.knative.dev", "x", listed)
    assert error.code == 422 and error.reason == "Invalid"
    assert [c["field"] for c in error.details["causes"]] == ["spec.a", "metadata.name"]
    assert error.message == (
        'Service.serving.knative.dev "x" is invalid: spec.a: bad; metadata.name: missing'
    )
