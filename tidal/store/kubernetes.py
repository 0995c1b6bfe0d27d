"""The resource store on the Kubernetes API: tidal's kinds as custom resources.

Which API groups hold them is chosen at install (`tidal kubernetes manifests --api-groups`,
docs/kubernetes.md#api-groups):

- `tidal` (the default), groups of tidal's own, which can sit beside a real Knative or ACK
  install:
  - Service, Revision, Route (serving.knative.dev/v1) → services, revisions, routes
    .serving.tidal.dev/v1;
  - DomainMapping (serving.knative.dev/v1beta1) → domainmappings.serving.tidal.dev/v1;
  - ResourcePolicy (scheduling.alibabacloud.com/v1alpha1) → resourcepolicies
    .scheduling.tidal.dev/v1alpha1.
- `knative`, Knative's and ACK's groups and versions themselves, so that kubectl takes their
  YAML unchanged; only on a cluster where neither is installed.

Specs and statuses keep their Knative/ACK shape; only `apiVersion` is translated on the way in and
out, so the rest of tidal sees the documents the user applied. resourceVersion, uid,
creationTimestamp and generation are the API server's.

Every call is one synchronous request to the API server (the `Store` interface is synchronous);
the controller issues a few per event, each a millisecond or so in-cluster.

The CRDs have a status subresource, so `put` writes the object and then its status: two requests,
the second guarded by the resourceVersion the first returned.

Kubernetes has no multi-object transactions. `transaction()` is best effort: the controller
validates every document before it writes any (`Platform.apply`), writes in a fixed order (the
Service before its Revision), and if a write inside the block fails, the writes made so far are
undone in reverse order (created objects deleted, replaced ones put back, deleted ones
re-created with a new uid). A crash in the middle of a block can still leave part of it written.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from tidal.store.sqlite import Conflict

log = logging.getLogger(__name__)

SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation")


@dataclass(frozen=True)
class CustomResource:
    """Where a tidal kind lives in the Kubernetes API."""

    kind: str
    group: str
    version: str
    plural: str
    user_api_version: str  # the apiVersion the rest of tidal (and the user) uses

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


KNATIVE = "serving.knative.dev/v1"
KNATIVE_BETA = "serving.knative.dev/v1beta1"
ACK = "scheduling.alibabacloud.com/v1alpha1"
SERVING_GROUP = "serving.tidal.dev"
SCHEDULING_GROUP = "scheduling.tidal.dev"
API_GROUPS = ("tidal", "knative")
Resources = dict[str, CustomResource]  # by kind


def custom_resources(api_groups: str = "tidal") -> Resources:
    """Where each kind lives on the cluster, for an install with `api_groups` (one of
    API_GROUPS)."""
    if api_groups not in API_GROUPS:
        raise ValueError(f"unknown API groups {api_groups!r} (known: {', '.join(API_GROUPS)})")

    def resource(
        kind: str, plural: str, user_api_version: str, own: tuple[str, str]
    ) -> CustomResource:
        group, version = own if api_groups == "tidal" else user_api_version.split("/")
        return CustomResource(kind, group, version, plural, user_api_version)

    return {
        r.kind: r
        for r in (
            resource("Service", "services", KNATIVE, (SERVING_GROUP, "v1")),
            resource("Revision", "revisions", KNATIVE, (SERVING_GROUP, "v1")),
            resource("Route", "routes", KNATIVE, (SERVING_GROUP, "v1")),
            resource("ResourcePolicy", "resourcepolicies", ACK, (SCHEDULING_GROUP, "v1alpha1")),
            resource("DomainMapping", "domainmappings", KNATIVE_BETA, (SERVING_GROUP, "v1")),
        )
    }


RESOURCES = custom_resources()  # the default install's


@dataclass
class _Undo:
    resource: CustomResource
    namespace: str
    name: str
    before: dict[str, Any] | None  # None: the object did not exist


class KubernetesStore:
    def __init__(
        self, api: ApiClient, resources: Resources = RESOURCES, request_timeout_s: float = 10.0
    ) -> None:
        self._api = client.CustomObjectsApi(api)
        self.resources = resources
        self._timeout = request_timeout_s
        self._journal: list[_Undo] | None = None

    def close(self) -> None:
        """Nothing to release: the ApiClient belongs to the caller."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Best effort (see the module docstring): undo this block's writes if one fails."""
        if self._journal is not None:
            yield
            return
        self._journal = []
        try:
            yield
        except BaseException:
            journal, self._journal = self._journal, None
            for undo in reversed(journal):
                self._undo(undo)
            raise
        finally:
            self._journal = None

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        resource = self.resources[kind]
        try:
            obj = self._api.get_namespaced_custom_object(
                resource.group,
                resource.version,
                namespace,
                resource.plural,
                name,
                _request_timeout=self._timeout,
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return to_tidal(resource, obj)

    def list(
        self, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        resource = self.resources[kind]
        selector = ",".join(f"{k}={v}" for k, v in (labels or {}).items())
        where = (resource.group, resource.version)
        if namespace is None:
            call, args = self._api.list_cluster_custom_object, (*where, resource.plural)
        else:
            call, args = (
                self._api.list_namespaced_custom_object,
                (*where, namespace, resource.plural),
            )
        try:
            listed = call(*args, label_selector=selector, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise
            # A kind added since the CRDs were installed: none stored yet, so the controller
            # still starts; applying one fails until the manifests are applied again.
            log.warning(
                "the cluster has no %s.%s CRD: apply `tidal kubernetes manifests` again",
                resource.plural,
                resource.group,
            )
            return []
        objects = [to_tidal(resource, obj) for obj in listed["items"]]
        return sorted(objects, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))

    def put(self, obj: dict[str, Any], expected_version: str | None = None) -> dict[str, Any]:
        """Create or replace `obj`; fill in server-set metadata; return the stored object.

        With `expected_version`, the write fails with Conflict unless the stored object still has
        that resourceVersion; without, the last writer wins (retrying on concurrent changes)."""
        resource = self.resources[obj["kind"]]
        meta = obj["metadata"]
        meta.setdefault("namespace", "default")
        namespace, name = meta["namespace"], meta["name"]
        for _ in range(5):
            current = self.get(obj["kind"], namespace, name)
            version = expected_version or (current and current["metadata"]["resourceVersion"])
            if expected_version is not None and (
                current is None or current["metadata"]["resourceVersion"] != expected_version
            ):
                raise _conflict(obj["kind"], namespace, name, expected_version)
            try:
                stored = self._write(resource, obj, current, version)
            except ApiException as exc:
                if exc.status not in (404, 409):
                    raise
                if expected_version is not None:
                    raise _conflict(obj["kind"], namespace, name, expected_version) from None
                continue  # someone else wrote in between: read again
            self._record(resource, namespace, name, current)
            for key in SERVER_FIELDS:
                if key in stored["metadata"]:
                    meta[key] = stored["metadata"][key]
            return obj
        raise _conflict(obj["kind"], namespace, name, expected_version)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        resource = self.resources[kind]
        current = self.get(kind, namespace, name) if self._journal is not None else None
        try:
            self._api.delete_namespaced_custom_object(
                resource.group,
                resource.version,
                namespace,
                resource.plural,
                name,
                _request_timeout=self._timeout,
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        if current is not None:
            self._record(resource, namespace, name, current)
        return True

    # -- internals ----------------------------------------------------------------------------

    def _write(
        self,
        resource: CustomResource,
        obj: dict[str, Any],
        current: dict[str, Any] | None,
        version: str | None,
    ) -> dict[str, Any]:
        body = _to_cluster(resource, obj)
        status = body.pop("status", None)
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        args = (resource.group, resource.version, namespace, resource.plural)
        if current is None:
            stored = self._api.create_namespaced_custom_object(
                *args, body, _request_timeout=self._timeout
            )
        else:
            body["metadata"]["resourceVersion"] = version
            stored = self._api.replace_namespaced_custom_object(
                *args, name, body, _request_timeout=self._timeout
            )
        if status is not None:
            stored = self._api.replace_namespaced_custom_object_status(
                *args, name, {**stored, "status": status}, _request_timeout=self._timeout
            )
        return stored

    def _record(
        self, resource: CustomResource, namespace: str, name: str, before: dict[str, Any] | None
    ) -> None:
        if self._journal is not None:
            self._journal.append(_Undo(resource, namespace, name, copy.deepcopy(before)))

    def _undo(self, undo: _Undo) -> None:
        try:
            if undo.before is None:
                self.delete(undo.resource.kind, undo.namespace, undo.name)
            else:
                restored = copy.deepcopy(undo.before)
                for key in SERVER_FIELDS:
                    restored["metadata"].pop(key, None)
                self.put(restored)
        except ApiException:
            pass  # best effort: the API server is what failed the block in the first place


def _to_cluster(resource: CustomResource, obj: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(obj)
    body["apiVersion"] = resource.api_version
    for key in SERVER_FIELDS:
        body["metadata"].pop(key, None)
    return body


def to_tidal(resource: CustomResource, obj: dict[str, Any]) -> dict[str, Any]:
    """A custom resource as the rest of tidal sees it: its user's apiVersion, no managedFields."""
    obj["apiVersion"] = resource.user_api_version
    obj["metadata"] = {
        k: v for k, v in obj["metadata"].items() if k not in ("managedFields", "selfLink")
    }
    return obj


def _conflict(kind: str, namespace: str, name: str, expected: str | None) -> Conflict:
    return Conflict(
        f"{kind} {namespace}/{name} was modified (expected resourceVersion {expected}); "
        "read it again and retry"
    )
