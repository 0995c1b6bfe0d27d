from tidal.controller.kubeapi.events import EventRecorder

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
