import yaml

from tidal.controller.kubeapi.events import EventRecorder
from tidal.controller.kubeapi.kubeconfig import merge_into, write_kubeconfig

SERVICE = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "hello", "namespace": "default", "uid": "u-1"},
}


def revision(ready: str, desired: int, reason: str = "") -> dict:
    return {
        "kind": "Revision",
        "metadata": {
            "name": "hello-00001",
            "namespace": "default",
            "labels": {"serving.knative.dev/service": "hello"},
        },
        "status": {
            "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": "m"}],
            "desiredReplicas": desired,
        },
    }


def test_recorder_turns_revision_changes_into_service_events():
    published = []
    recorder = EventRecorder(lambda ns, name: SERVICE, lambda *e: published.append(e), [])
    recorder.revision_changed("ADDED", revision("Unknown", 0))
    recorder.revision_changed("MODIFIED", revision("Unknown", 1))
    recorder.revision_changed("MODIFIED", revision("True", 1))
    recorder.revision_changed("MODIFIED", revision("True", 1))  # nothing new
    recorder.revision_changed("MODIFIED", revision("False", 0, "ExitCode3"))
    reasons = [(e["type"], e["reason"]) for e in recorder.events]
    assert reasons == [
        ("Normal", "Created"),
        ("Normal", "Scaled"),
        ("Normal", "RevisionReady"),
        ("Warning", "RevisionFailed"),
        ("Normal", "Scaled"),
    ]
    assert all(e["involvedObject"]["uid"] == "u-1" for e in recorder.events)
    assert "failed: ExitCode3: m" in recorder.events[3]["message"]
    assert len(published) == 5


def test_revisions_known_at_start_make_no_created_event():
    recorder = EventRecorder(lambda ns, name: SERVICE, lambda *e: None, [revision("True", 1)])
    recorder.revision_changed("MODIFIED", revision("True", 1))
    assert list(recorder.events) == []


def test_kubeconfig_with_and_without_token(tmp_path):
    path = write_kubeconfig(tmp_path, "http://127.0.0.1:8081", None)
    config = yaml.safe_load(path.read_text())
    assert config["users"] == [{"name": "tidal", "user": {}}]
    assert path.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load(write_kubeconfig(tmp_path, "http://x", "s3cret").read_text())
    assert config["users"][0]["user"] == {"token": "s3cret"}
    assert config["contexts"][0]["context"]["cluster"] == "tidal"


def test_merge_keeps_the_users_config_and_replaces_old_tidal_entries(tmp_path):
    source = write_kubeconfig(tmp_path / "data", "http://new", None)
    target = tmp_path / "config"
    target.write_text(
        yaml.safe_dump(
            {
                "clusters": [
                    {"name": "prod", "cluster": {"server": "https://prod"}},
                    {"name": "tidal", "cluster": {"server": "http://old"}},
                ],
                "users": [{"name": "prod", "user": {"token": "p"}}],
                "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}],
                "current-context": "prod",
            }
        )
    )
    merge_into(source, target)
    merged = yaml.safe_load(target.read_text())
    assert [c["name"] for c in merged["clusters"]] == ["prod", "tidal"]
    assert merged["clusters"][1]["cluster"]["server"] == "http://new"
    assert merged["users"][0] == {"name": "prod", "user": {"token": "p"}}
    assert merged["current-context"] == "prod"
    fresh = tmp_path / "fresh" / "config"
    merge_into(source, fresh)
    assert yaml.safe_load(fresh.read_text())["current-context"] == "tidal"
