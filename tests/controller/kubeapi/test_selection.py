import pytest

from tidal.controller.kubeapi.selection import field_selector, label_selector, matcher
from tidal.controller.kubeapi.status import ApiError


def obj(**labels):
    return {"metadata": {"name": "hello", "namespace": "default", "labels": labels}}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("env in (a, b),tier", {"env": "b", "tier": "x"}, True),
        ("env in (a,b)", {"env": "c"}, False),
        ("env notin (a,b)", {}, True),
        ("!canary", {"canary": "1"}, False),
        ("serving.knative.dev/service=hello", {"serving.knative.dev/service": "hello"}, True),
    ],
)
def test_label_selectors(selector, labels, expected):
    assert label_selector(selector)(obj(**labels)) is expected


def test_bad_label_selector_is_a_400():
    with pytest.raises(ApiError) as err:
        label_selector("a in b")
    assert err.value.code == 400


def test_field_selectors_and_both_together():
    assert field_selector("metadata.name=hello,metadata.namespace!=other")(obj())
    assert not field_selector("metadata.name=bye")(obj())
    assert matcher({"labelSelector": "a=1", "fieldSelector": "metadata.name=hello"})(obj(a="1"))
    with pytest.raises(ApiError):
        field_selector("metadata.name")
