"""Which `tidal up -f` manifests a start applies (tidal.controller.up_manifests)."""

from __future__ import annotations

from pathlib import Path

from tidal.controller.up_manifests import (
    RECORD,
    digest,
    load_record,
    object_key,
    save_record,
    to_apply,
)


def doc(name: str, target: str = "world") -> dict:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [{"env": [{"name": "T", "value": target}]}]}}},
    }


def test_new_changed_or_missing_objects_are_applied_unchanged_ones_kept() -> None:
    same, changed, missing, new = doc("same"), doc("changed", "v2"), doc("missing"), doc("new")
    before = {object_key(d): digest(d) for d in (same, doc("changed"), missing)}
    stored = {object_key(d) for d in (same, changed)}  # "missing" was deleted since
    todo = to_apply([same, changed, missing, new], before, stored.__contains__)
    assert todo == [changed, missing, new]
    assert object_key(same) == "Service/default/same"


def test_the_record_survives_restarts_and_a_damaged_one_applies_everything(tmp_path: Path) -> None:
    assert load_record(tmp_path) == {}
    save_record(tmp_path, {"Service/other/x": "abc"}, [doc("a")])
    record = load_record(tmp_path)
    assert record == {"Service/other/x": "abc", "Service/default/a": digest(doc("a"))}
    assert to_apply([doc("a")], record, lambda key: True) == []
    (tmp_path / RECORD).write_text("{not json")
    assert load_record(tmp_path) == {}
    assert to_apply([doc("a")], load_record(tmp_path), lambda key: True) == [doc("a")]
