import pytest

from tidal.store.sqlite import Store


def doc(name: str, value: str = "a") -> dict:
    return {"kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": value}


def test_listeners_hear_committed_writes_in_order(tmp_path):
    store = Store(tmp_path / "t.db")
    heard: list[tuple[str, str, str]] = []
    store.listeners.append(
        lambda event, obj: heard.append(
            (event, obj["metadata"]["name"], obj["metadata"]["resourceVersion"])
        )
    )
    store.put(doc("a"))
    store.put(doc("a", "b"))
    assert store.delete("Service", "default", "a")
    assert not store.delete("Service", "default", "a")
    assert heard == [("ADDED", "a", "1"), ("MODIFIED", "a", "2"), ("DELETED", "a", "2")]


def test_a_rolled_back_transaction_tells_nothing(tmp_path):
    store = Store(tmp_path / "t.db")
    heard: list[str] = []
    store.listeners.append(lambda event, obj: heard.append(event))
    with pytest.raises(RuntimeError), store.transaction():
        store.put(doc("a"))
        assert heard == []  # not before the commit
        raise RuntimeError
    assert heard == [] and store.get("Service", "default", "a") is None
    with store.transaction():
        store.put(doc("b"))
        store.put(doc("c"))
        assert heard == []
    assert heard == ["ADDED", "ADDED"]
