"""Follow what people write to tidal's custom resources with kubectl
(docs/kubernetes.md#kubectl-on-tidals-resources).

On Kubernetes tidal's Services, ResourcePolicies and DomainMappings are custom resources, so
`kubectl apply`, `edit`, `patch` and `delete` change them without passing through tidal's apply.
This module lists and then watches those kinds, one thread per kind (the client is synchronous;
the pod watch in tidal.runtime.kubernetes is built the same way), and hands the event loop each
object whose spec, labels or annotations changed, and each one deleted. tidal's own writes come
back too: a status write changes none of those, and a spec tidal wrote is applied again as
unchanged. What to do with a change is the caller's (tidal.controller.outside).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from tidal.kubernetes.list_watch import list_then_watch
from tidal.store.kubernetes import RESOURCES, CustomResource, Resources, to_tidal

log = logging.getLogger("tidal.kubernetes")

WATCHED_KINDS = ("Service", "ResourcePolicy", "DomainMapping")  # what users write; tidal the rest

ObjectKey = tuple[str, str, str]  # kind, namespace, name
# A changed object, and whether it came from a list that a (re)started watch began with.
OnChange = Callable[[dict[str, Any], bool], None]
OnDelete = Callable[[str, str, str], None]


class SpecWatch:
    def __init__(
        self,
        api: ApiClient,
        on_change: OnChange,
        on_delete: OnDelete,
        resources: Resources = RESOURCES,
        watch_timeout_s: int = 300,
    ) -> None:
        self._api = client.CustomObjectsApi(api)
        self._resources = resources
        self._on_change = on_change
        self._on_delete = on_delete
        self._watch_timeout_s = watch_timeout_s
        self._seen: dict[ObjectKey, str] = {}  # what of each object matters, as last handed on
        self._listed: set[str] = set()  # kinds listed once already
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = threading.Event()

    def start(self) -> None:
        """Follow every watched kind; call from the event loop that should get the changes."""
        self._loop = asyncio.get_running_loop()
        for kind in WATCHED_KINDS:
            threading.Thread(
                target=self._follow, args=(self._resources[kind],), daemon=True
            ).start()

    def close(self) -> None:
        """Stop handing on changes; the threads end with their current request."""
        self._closed.set()

    # -- on the event loop --------------------------------------------------------------------

    def _resync(self, kind: str, objects: list[dict[str, Any]]) -> None:
        """A fresh list: objects missing from it were deleted while no watch ran."""
        first = kind not in self._listed
        self._listed.add(kind)
        listed = {_key(obj) for obj in objects}
        for key in [k for k in self._seen if k[0] == kind and k not in listed]:
            self._gone(key)
        for obj in objects:
            self._changed(obj, first)

    def _event(self, event_type: str, obj: dict[str, Any]) -> None:
        if event_type == "DELETED":
            self._gone(_key(obj))
        elif event_type in ("ADDED", "MODIFIED"):
            self._changed(obj, False)

    def _changed(self, obj: dict[str, Any], listed: bool) -> None:
        if self._closed.is_set():
            return
        key, content = _key(obj), _content(obj)
        if self._seen.get(key) == content:
            return  # a status write, or a relist of what was seen
        self._seen[key] = content
        try:
            self._on_change(obj, listed)
        except Exception:
            log.exception("could not follow the change of %s %s/%s", *key)

    def _gone(self, key: ObjectKey) -> None:
        if self._closed.is_set() or self._seen.pop(key, None) is None:
            return
        try:
            self._on_delete(*key)
        except Exception:
            log.exception("could not follow the deletion of %s %s/%s", *key)

    # -- the watch threads --------------------------------------------------------------------

    def _follow(self, resource: CustomResource) -> None:
        def listed(objects: list[dict[str, Any]]) -> None:
            self._post(self._resync, resource.kind, [to_tidal(resource, o) for o in objects])

        def changed(event_type: str, obj: dict[str, Any]) -> None:
            self._post(self._event, event_type, to_tidal(resource, obj))

        def retry_after(exc: Exception) -> float:
            if isinstance(exc, ApiException) and exc.status in (403, 404):
                log.warning(
                    "cannot watch %s.%s (%s): apply `tidal kubernetes manifests` again",
                    resource.plural,
                    resource.group,
                    exc.reason,
                )
                return 30.0
            log.debug("%s watch restarts: %s", resource.plural, exc)
            return 1.0

        where = (resource.group, resource.version, resource.plural)
        list_then_watch(
            self._api.list_cluster_custom_object,
            where,
            listed,
            changed,
            self._closed,
            retry_after,
            self._watch_timeout_s,
        )

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(callback, *args)


def _key(obj: dict[str, Any]) -> ObjectKey:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def _content(obj: dict[str, Any]) -> str:
    """What a user's write changes: everything but status and the server's bookkeeping."""
    meta = obj["metadata"]
    return json.dumps(
        {
            "spec": obj.get("spec"),
            "labels": meta.get("labels") or {},
            "annotations": meta.get("annotations") or {},
        },
        sort_keys=True,
    )
