from __future__ import annotations

import pytest

from tidal.store.history import MetricHistory
from tidal.store.sqlite import Conflict, Store, StoreError


def obj(name: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Thing", "metadata": {"name": name}, "spec": spec}


def test_put_get_list_delete_and_versions(tmp_path):
    store = Store(tmp_path / "t.db")
    first = store.put(obj("a", x=1))
    assert first["metadata"]["namespace"] == "default"
    assert first["metadata"]["resourceVersion"] == "1"
    uid = first["metadata"]["uid"]
    second = store.put(obj("a", x=2))
    assert second["metadata"]["resourceVersion"] == "2"
    assert second["metadata"]["uid"] == uid
    store.put(obj("b", x=3) | {"metadata": {"name": "b", "labels": {"k": "v"}}})
    assert [o["metadata"]["name"] for o in store.list("Thing")] == ["a", "b"]
    assert [o["metadata"]["name"] for o in store.list("Thing", labels={"k": "v"})] == ["b"]
    assert store.get("Thing", "default", "a")["spec"] == {"x": 2}
    assert store.delete("Thing", "default", "a")
    assert store.get("Thing", "default", "a") is None


def test_expected_version_conflict(tmp_path):
    store = Store(tmp_path / "t.db")
    store.put(obj("a"))
    store.put(obj("a", x=1))
    with pytest.raises(Conflict, match="resourceVersion 1"):
        store.put(obj("a", x=2), expected_version="1")
    assert store.get("Thing", "default", "a")["spec"] == {"x": 1}


def test_transaction_is_all_or_nothing_and_survives_reopen(tmp_path):
    store = Store(tmp_path / "t.db")
    store.put(obj("keep"))
    with pytest.raises(RuntimeError), store.transaction():
        store.put(obj("half"))
        raise RuntimeError("boom")
    assert store.get("Thing", "default", "half") is None
    store.close()
    reopened = Store(tmp_path / "t.db")
    assert [o["metadata"]["name"] for o in reopened.list("Thing")] == ["keep"]
    assert reopened.put(obj("next"))["metadata"]["resourceVersion"] == "2"


@pytest.mark.parametrize(
    "content", [b"not a database at all" * 100, b"SQLite format 3\x00" + bytes(range(256)) * 8]
)
@pytest.mark.parametrize("opener", [Store, MetricHistory])
def test_a_file_that_is_not_a_state_file_is_named_and_left_alone(tmp_path, content, opener):
    path = tmp_path / "tidal.db"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="is not a tidal state file or is damaged") as info:
        opener(path)
    assert str(path) in str(info.value) and "move it aside" in str(info.value)
    assert path.read_bytes() == content
