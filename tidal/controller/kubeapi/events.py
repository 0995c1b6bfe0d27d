"""A small event recorder: what happened to a Service's revisions, as core/v1 Events on the
Service (created, ready, failed, scaled, a replica exited), and to its replicas, on their pods
(placed on a pool, started, exited), for `kubectl describe`, `kubectl get events` and `tidal
describe`.

It derives most events from the stored revisions' changes, so the controller needs no calls of
its own; what the store does not show (a replica that crashed and was replaced) the platform
tells `service_event`. Events live in memory, the newest MAX_EVENTS of them, as Kubernetes keeps
them for an hour.
"""

from __future__ import annotations

import itertools
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from tidal.controller.kubeapi.pods import pod_uid
from tidal.controller.kubeapi.resources import SERVICE_LABEL, condition
from tidal.store.sqlite import now_rfc3339

MAX_EVENTS = 1000
COMPONENT = "tidal-controller"


class EventRecorder:
    def __init__(
        self,
        get_service: Callable[[str, str], dict[str, Any] | None],
        publish: Callable[[str, dict[str, Any]], None],
        revisions: list[dict[str, Any]],
    ) -> None:
        self._get_service = get_service
        self._publish = publish
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._versions = itertools.count(1)
        self._seen: dict[tuple[str, str], tuple[str, int]] = {_key(r): _state(r) for r in revisions}

    def revision_changed(self, event: str, revision: dict[str, Any]) -> None:
        if revision.get("kind") != "Revision":
            return
        key = _key(revision)
        name = revision["metadata"]["name"]
        if event == "DELETED":
            self._seen.pop(key, None)
            return
        ready, desired = _state(revision)
        before = self._seen.get(key)
        self._seen[key] = (ready, desired)
        if before is None:
            self.record(revision, "Normal", "Created", f'Created Revision "{name}"')
            before = ("Unknown", 0)
        if ready != before[0] and ready == "True":
            self.record(revision, "Normal", "RevisionReady", f'Revision "{name}" is ready')
        elif ready != before[0] and ready == "False":
            why = f"{condition(revision, 'reason')}: {condition(revision, 'message')}"
            self.record(revision, "Warning", "RevisionFailed", f'Revision "{name}" failed: {why}')
        if desired != before[1]:
            self.record(
                revision,
                "Normal",
                "Scaled",
                f'Revision "{name}" scaled from {before[1]} to {desired} replicas',
            )

    def record(self, revision: dict[str, Any], kind: str, reason: str, message: str) -> None:
        meta = revision["metadata"]
        service_name = meta.get("labels", {}).get(SERVICE_LABEL)
        if service_name:
            self.service_event(meta["namespace"], service_name, kind, reason, message)

    def service_event(
        self, namespace: str, service_name: str, kind: str, reason: str, message: str
    ) -> None:
        service = self._get_service(namespace, service_name)
        if service is None:
            return
        smeta = service["metadata"]
        about = {"apiVersion": service["apiVersion"], "kind": "Service", "uid": smeta["uid"]}
        self._add(namespace, smeta["name"], about, kind, reason, message)

    def pod_event(self, namespace: str, pod: str, kind: str, reason: str, message: str) -> None:
        """What happened to a replica, on its pod (`kubectl describe pod` lists them)."""
        about = {"apiVersion": "v1", "kind": "Pod", "uid": pod_uid(namespace, pod)}
        self._add(namespace, pod, about, kind, reason, message)

    def _add(
        self,
        namespace: str,
        name: str,
        about: dict[str, str],
        kind: str,
        reason: str,
        message: str,
    ) -> None:
        now = now_rfc3339()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{name}.{uuid.uuid4().hex[:16]}",
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "resourceVersion": str(next(self._versions)),
                "creationTimestamp": now,
            },
            "involvedObject": {**about, "name": name, "namespace": namespace},
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.events.append(event)
        self._publish("ADDED", event)


def _key(revision: dict[str, Any]) -> tuple[str, str]:
    return revision["metadata"]["namespace"], revision["metadata"]["name"]


def _state(revision: dict[str, Any]) -> tuple[str, int]:
    return condition(revision, "status") or "Unknown", int(
        revision.get("status", {}).get("desiredReplicas", 0)
    )
