"""The Kubernetes API for tidal's resources, on the admin listener (docs/kubectl.md).

Reads come from the store (revisions with their live replica counts); every write goes through
`Platform.apply` or `Platform.delete_*`, the door `tidal apply` uses: same validation, same
revisions, same state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tidal.api.claims import ClaimInUse
from tidal.api.config_objects import KINDS as CONFIG_KINDS
from tidal.api.errors import InvalidSpec
from tidal.api.namespaces import CLUSTER_SCOPE, NamespaceForbidden, namespace_view
from tidal.controller.kubeapi import access, openapi, protobuf
from tidal.controller.kubeapi.deployments import deployments, gone_deployment
from tidal.controller.kubeapi.events import EventRecorder
from tidal.controller.kubeapi.feed import ChangeFeed
from tidal.controller.kubeapi.live_watch import watch_views
from tidal.controller.kubeapi.metrics_api import add_metrics_routes
from tidal.controller.kubeapi.metrics_api import group as metrics_group
from tidal.controller.kubeapi.nodes import gone_node, nodes
from tidal.controller.kubeapi.patch import APPLY, apply_patch, json_body
from tidal.controller.kubeapi.pod_api import delete_pod, pod_log
from tidal.controller.kubeapi.pod_exec import pod_exec
from tidal.controller.kubeapi.pod_portforward import pod_portforward
from tidal.controller.kubeapi.pods import gone_pod, pods
from tidal.controller.kubeapi.resources import (
    CORE,
    DEPLOYMENTS,
    EVENTS,
    GROUP_VERSIONS,
    LOCAL_CORE,
    LOCAL_GROUP_VERSIONS,
    NODES,
    PODS,
    Resource,
    claim_with_status,
    condition,
    configuration_of,
    service_with_traffic,
    with_server_fields,
)
from tidal.controller.kubeapi.selection import Match, matcher
from tidal.controller.kubeapi.status import (
    ApiError,
    conflict,
    invalid,
    not_found,
    qualified,
)
from tidal.controller.kubeapi.tables import table, wants_table
from tidal.controller.kubeapi.warnings import written
from tidal.controller.kubeapi.watch_stream import WatchStream
from tidal.controller.platform import Platform
from tidal.store.sqlite import Conflict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KUBERNETES_VERSION = ("1", "32")
# Set by the API server or by other controllers; tidal's ObjectMeta does not take them.
DROPPED_METADATA = (
    "managedFields",
    "selfLink",
    "generateName",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
)
LIVENESS_CHECK_S = 1.0  # how often an idle watch looks whether its client is still there


def _handle(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()

    return wrapped


# Kinds that are views of live state, never stored, and what a watch says of one that went.
VIEWS: dict[Resource, Callable[[str, str], dict[str, Any]]] = {
    PODS: gone_pod,
    DEPLOYMENTS: gone_deployment,
    NODES: gone_node,
}


def _version(obj: dict[str, Any]) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion", 0))
    except ValueError:
        return 0


class KubeApi:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.store = platform.store
        self.feed = ChangeFeed()
        self.recorder = EventRecorder(
            lambda ns, name: self.store.get("Service", ns, name),
            self.feed.publish,
            self.store.list("Revision"),
        )
        self.feed.listeners.append(self.recorder.revision_changed)
        platform.event_listeners.append(self.recorder.service_event)
        platform.replica_event_listeners.append(self.recorder.pod_event)
        listeners = getattr(self.store, "listeners", None)
        self.watchable = listeners is not None
        self.closing = asyncio.Event()
        # The pools' Nodes were created when the platform started.
        self.started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if listeners is not None:
            listeners.append(self.feed.publish)

    # -- objects as kubectl sees them ---------------------------------------------------------

    def view(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        kind = resource.kind
        if kind == "Service":
            meta = obj["metadata"]
            return service_with_traffic(
                obj, self.store.get("Route", meta["namespace"], meta["name"])
            )
        if kind == "Configuration":
            return configuration_of(obj)
        if kind == "Revision":
            return with_server_fields(self.platform.live_revision(obj))
        if kind == "Route":
            return with_server_fields(self._route_ready(obj))
        if kind == "DomainMapping":
            return with_server_fields(self.platform.live_domain_mapping(obj))
        if kind == "PersistentVolumeClaim":
            return claim_with_status(obj)
        if kind == "Namespace":
            return namespace_view(obj)
        return obj if kind == "Event" else with_server_fields(obj)

    def _created(self, namespace: str, revision: str) -> str | None:
        stored = self.store.get("Revision", namespace, revision)
        return None if stored is None else stored["metadata"].get("creationTimestamp")

    def _route_ready(self, route: dict[str, Any]) -> dict[str, Any]:
        """Knative's Route is Ready when every revision it sends traffic to is."""
        status = route.setdefault("status", {})
        namespace = route["metadata"]["namespace"]
        targets = [t["revisionName"] for t in status.get("traffic", []) if t.get("percent")]
        revisions = [self.store.get("Revision", namespace, name) for name in targets]
        states = [condition(r, "status") if r else "False" for r in revisions]
        ready = "True" if states and all(s == "True" for s in states) else "Unknown"
        cond: dict[str, Any] = {"type": "Ready", "status": ready}
        if ready != "True":
            cond["reason"] = "RevisionMissing" if states else "NoTraffic"
        status["conditions"] = [cond]
        return route

    def list(self, resource: Resource, namespace: str | None, match: Match) -> list[dict[str, Any]]:
        if resource is EVENTS:
            found = [
                e
                for e in self.recorder.events
                if namespace is None or e["metadata"]["namespace"] == namespace
            ]
        elif resource is PODS:
            found = pods(self.platform.workloads.values(), namespace)
        elif resource is DEPLOYMENTS:
            found = deployments(self.platform.workloads.values(), namespace, self._created)
        elif resource is NODES:
            major, minor = KUBERNETES_VERSION
            kubelet = f"v{major}.{minor}.0+tidal"
            found = nodes(self.platform.pool_usage(), self.started, kubelet)
        else:
            found = [
                self.view(resource, o) for o in self.store.list(resource.store_kind, namespace)
            ]
        return [o for o in found if match(o)]

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        if resource is EVENTS:
            for event in self.recorder.events:
                if (event["metadata"]["namespace"], event["metadata"]["name"]) == (namespace, name):
                    return event
            raise not_found(resource.plural, name)
        if resource in VIEWS:
            for view in self.list(resource, namespace, lambda _: True):
                if view["metadata"]["name"] == name:
                    return view
            raise not_found(resource.plural, name)
        obj = self.store.get(resource.store_kind, namespace, name)
        if obj is None:
            raise not_found(resource.plural, name)
        return self.view(resource, obj)

    # -- reading handlers ---------------------------------------------------------------------

    def reader(self, resource: Resource, item: bool) -> Handler:
        @_handle
        async def read(request: web.Request) -> web.StreamResponse:
            namespace = request.match_info.get("ns")
            query = request.query
            as_table = wants_table(request.headers.get("Accept", ""))
            if item:
                obj = self.get(resource, namespace or "", request.match_info["name"])
                if as_table:
                    return web.json_response(
                        table(resource, [obj], query.get("includeObject", "Metadata"))
                    )
                return web.json_response(obj)
            match = matcher(query)
            if query.get("watch") in ("true", "1"):
                return await self.watch(request, resource, namespace, match, as_table)
            objects = self.list(resource, namespace, match)
            version = str(max((_version(o) for o in objects), default=0))
            if as_table:
                return web.json_response(
                    table(resource, objects, query.get("includeObject", "Metadata"), version)
                )
            return web.json_response(
                {
                    "apiVersion": resource.group_version,
                    "kind": f"{resource.kind}List",
                    "metadata": {"resourceVersion": version},
                    "items": objects,
                }
            )

        return read

    async def watch(
        self,
        request: web.Request,
        resource: Resource,
        namespace: str | None,
        match: Match,
        as_table: bool,
    ) -> web.StreamResponse:
        """Streamed watch events, one JSON object a line, until the timeout or the client goes."""
        if resource in VIEWS:
            gone = VIEWS[resource]
            return await watch_views(
                request,
                resource,
                lambda: self.list(resource, namespace, match),
                lambda name: gone(name, namespace or ""),
                as_table,
                self.closing,
            )
        if not self.watchable:
            raise ApiError(405, "this store does not support watch")
        kinds = {resource.store_kind} | ({"Route"} if resource.kind == "Service" else set())
        subscriptions = [self.feed.subscribe(kind) for kind in kinds]
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        pumps = [asyncio.ensure_future(self._pump(s.queue, queue)) for s in subscriptions]
        stream = await WatchStream(request, resource, as_table).open(request)

        try:
            since = request.query.get("resourceVersion", "")
            initial = self.list(resource, namespace, match)
            if since in ("", "0"):
                for obj in initial:
                    await stream.send("ADDED", obj)
            else:
                start = int(since) if since.isdigit() else 0
                for obj in initial:
                    if _version(obj) > start:
                        await stream.send("MODIFIED", obj)
            while (remaining := stream.remaining()) > 0 and not self._gone(request):
                try:
                    event, stored = await asyncio.wait_for(
                        queue.get(), min(remaining, LIVENESS_CHECK_S)
                    )
                except TimeoutError:
                    continue
                obj = self._watched(resource, event, stored)
                if obj is None or (namespace and obj["metadata"]["namespace"] != namespace):
                    continue
                if match(obj):
                    await stream.send(event, obj)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            for pump in pumps:
                pump.cancel()
            for subscription in subscriptions:
                self.feed.unsubscribe(subscription)
        with contextlib.suppress(ConnectionResetError):
            await stream.response.write_eof()
        return stream.response

    def _gone(self, request: web.Request) -> bool:
        """The client hung up, or the platform is stopping."""
        transport = request.transport
        return self.closing.is_set() or transport is None or transport.is_closing()

    @staticmethod
    async def _pump(source: asyncio.Queue[Any], sink: asyncio.Queue[Any]) -> None:
        while True:
            sink.put_nowait(await source.get())

    def _watched(
        self, resource: Resource, event: str, stored: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The object a watch of `resource` reports for a change of `stored`."""
        if resource.kind == "Service" and stored["kind"] == "Route":
            meta = stored["metadata"]
            service = self.store.get("Service", meta["namespace"], meta["name"])
            return None if service is None else self.view(resource, service)
        if event == "DELETED":
            if resource.kind == "Configuration":
                return configuration_of(stored)
            if resource.kind == "Namespace":
                return namespace_view(stored)
            return with_server_fields(stored) if resource is not EVENTS else stored
        return self.view(resource, stored)

    # -- writing handlers ---------------------------------------------------------------------

    def _apply(self, resource: Resource, doc: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        """Through the platform's one door; returns the object as stored (or as planned)."""
        meta = doc["metadata"]
        for key in DROPPED_METADATA:
            meta.pop(key, None)
        name = meta.get("name", "")
        try:
            applied = self.platform.apply([doc], dry_run=dry_run)
        except InvalidSpec as exc:
            raise invalid(resource.kind, resource.group, name, exc) from None
        if dry_run:
            return self._as_if_stored(resource, applied[0])
        return self.get(resource, meta["namespace"], name)

    def _as_if_stored(self, resource: Resource, planned: dict[str, Any]) -> dict[str, Any]:
        """A dry run's answer: the planned object (its status names the revision the write
        would create) with the stored one's uid, creation time and resourceVersion, and seen as
        `view` shows it, so that `kubectl diff` of an unchanged manifest shows nothing."""
        meta = planned["metadata"]
        current = self.store.get(resource.store_kind, meta["namespace"], meta["name"])
        if current is None:
            return with_server_fields(planned)
        for key in ("uid", "creationTimestamp", "resourceVersion"):
            meta[key] = current["metadata"][key]
        return self.view(resource, planned)

    async def _body(self, request: web.Request, resource: Resource) -> dict[str, Any]:
        doc = protobuf.request_object(await request.read(), request.content_type)
        self._check_identity(request, resource, doc)
        return doc

    @staticmethod
    def _check_identity(request: web.Request, resource: Resource, doc: dict[str, Any]) -> None:
        if doc.get("kind") != resource.kind or doc.get("apiVersion") != resource.group_version:
            raise ApiError(
                400,
                f"expected apiVersion {resource.group_version} and kind {resource.kind}, got "
                f"{doc.get('apiVersion')!r} {doc.get('kind')!r}",
            )
        meta = doc.get("metadata")
        if not isinstance(meta, dict):
            meta = doc["metadata"] = {}
        namespace = _namespace(request)
        if not resource.namespaced:  # cleared, as the API server does for cluster-scoped kinds
            meta["namespace"] = CLUSTER_SCOPE
        elif meta.setdefault("namespace", namespace) != namespace:
            raise ApiError(
                400,
                "the namespace of the provided object does not match the namespace sent on the "
                "request",
            )
        name = request.match_info.get("name")
        if name is not None and meta.setdefault("name", name) != name:
            raise ApiError(
                400, "the name of the object does not match the name on the URL", "BadRequest"
            )

    def _writable(self, resource: Resource) -> None:
        if not resource.writable:
            raise ApiError(
                405,
                f"{resource.plural} are written by tidal (from {resource.written_from}); they "
                f"cannot be changed directly{resource.instead}",
            )

    def creator(self, resource: Resource) -> Handler:
        @_handle
        async def create(request: web.Request) -> web.StreamResponse:
            self._writable(resource)
            doc = await self._body(request, resource)
            meta = doc["metadata"]
            if not meta.get("name"):
                raise invalid(
                    resource.kind,
                    resource.group,
                    "",
                    InvalidSpec(
                        "metadata.name", "name is required (generateName is not supported)"
                    ),
                )
            if self.store.get(resource.store_kind, meta["namespace"], meta["name"]) is not None:
                raise ApiError(
                    409,
                    f'{qualified(resource.plural, resource.group)} "{meta["name"]}" already exists',
                    "AlreadyExists",
                    {"name": meta["name"], "group": resource.group, "kind": resource.plural},
                )
            meta.pop("resourceVersion", None)
            created = self._apply(resource, doc, _dry_run(request))
            return written(created, status=201)

        return create

    def replacer(self, resource: Resource) -> Handler:
        @_handle
        async def replace(request: web.Request) -> web.StreamResponse:
            self._writable(resource)
            doc = await self._body(request, resource)
            name = request.match_info["name"]
            if self.store.get(resource.store_kind, _namespace(request), name) is None:
                raise not_found(resource.plural, name)
            try:
                return written(self._apply(resource, doc, _dry_run(request)))
            except Conflict:
                raise conflict(resource.plural, resource.group, name) from None

        return replace

    def patcher(self, resource: Resource) -> Handler:
        @_handle
        async def patch(request: web.Request) -> web.StreamResponse:
            self._writable(resource)
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            raw = await request.read()
            namespace, name = _namespace(request), request.match_info["name"]
            for attempt in range(5):
                stored = self.store.get(resource.store_kind, namespace, name)
                if stored is None and content_type != APPLY:
                    raise not_found(resource.plural, name)
                current = self.view(resource, stored) if stored else None
                base = current or {
                    "apiVersion": resource.group_version,
                    "kind": resource.kind,
                    "metadata": {"name": name, "namespace": namespace},
                }
                doc = apply_patch(base, content_type, raw)
                self._check_identity(request, resource, doc)
                pinned = current is not None and doc["metadata"].get("resourceVersion") != current[
                    "metadata"
                ].get("resourceVersion")
                if current is not None and not doc["metadata"].get("resourceVersion"):
                    doc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                try:
                    result = self._apply(resource, doc, _dry_run(request))
                except Conflict:
                    if pinned or attempt == 4:
                        raise conflict(resource.plural, resource.group, name) from None
                    continue
                return written(result, status=201 if current is None else 200)
            raise conflict(resource.plural, resource.group, name)

        return patch

    def _delete_claim(self, namespace: str, name: str) -> bool:
        try:
            return self.platform.delete_claim(namespace, name)
        except ClaimInUse as exc:
            raise ApiError(409, str(exc)) from None

    def _delete_namespace(self, _: str, name: str) -> bool:
        try:
            return self.platform.delete_namespace(name)
        except NamespaceForbidden as exc:
            raise ApiError(403, str(exc)) from None

    def deleter(self, resource: Resource) -> Handler:
        deleters = {
            "Service": self.platform.delete_service,
            "ResourcePolicy": self.platform.delete_policy,
            "DomainMapping": self.platform.delete_domain_mapping,
            "Pod": functools.partial(delete_pod, self.platform),
            "PersistentVolumeClaim": self._delete_claim,
            "Namespace": self._delete_namespace,
            "ServiceAccount": functools.partial(
                self.platform.delete_config_object, "ServiceAccount"
            ),
            **{
                kind: functools.partial(self.platform.delete_config_object, kind)
                for kind in CONFIG_KINDS
            },
        }

        @_handle
        async def delete(request: web.Request) -> web.StreamResponse:
            if resource is not PODS:  # a pod's delete replaces the replica
                self._writable(resource)
            namespace, name = _namespace(request), request.match_info["name"]
            obj = self.get(resource, namespace, name)
            dry_run = _dry_run(request) or await _delete_options_dry_run(request)
            if not dry_run and not deleters[resource.kind](namespace, name):
                raise not_found(resource.plural, name)
            return web.json_response(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": name,
                        "group": resource.group,
                        "kind": resource.plural,
                        "uid": obj["metadata"].get("uid"),
                    },
                }
            )

        return delete


def _namespace(request: web.Request) -> str:
    """The namespace on a request's path; none for a cluster-scoped kind."""
    return request.match_info.get("ns", CLUSTER_SCOPE)


def _dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    if any(v != "All" for v in values):
        raise ApiError(400, f"dryRun must be All, got {values!r}")
    return bool(values)


async def _delete_options_dry_run(request: web.Request) -> bool:
    """kubectl sends DELETE's options, dryRun among them, as a DeleteOptions body."""
    raw = await request.read()
    if not raw:
        return False
    options = json_body(raw, "the DeleteOptions body")
    dry_run = options.get("dryRun") if isinstance(options, dict) else None
    if dry_run and dry_run != ["All"]:
        raise ApiError(400, f"dryRun must be All, got {dry_run!r}")
    return bool(dry_run)


# -- discovery ----------------------------------------------------------------------------------


def _resource_list(group_version: str, resources: list[Resource]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [r.discovery() for r in resources],
    }


def _group(group: str, group_versions: Iterable[str]) -> dict[str, Any]:
    """An APIGroup: its versions in the order `group_versions` lists them, the first preferred."""
    versions = [
        {"groupVersion": gv, "version": gv.split("/")[1]}
        for gv in group_versions
        if gv.split("/")[0] == group
    ]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def add_routes(app: web.Application, platform: Platform) -> KubeApi:
    """Serve the Kubernetes API for tidal's kinds on `app` (register before other routes under
    /apis, so that these answer the Kubernetes paths)."""
    api = KubeApi(platform)
    router = app.router

    async def end_watches(_: web.Application) -> None:
        api.closing.set()

    app.on_shutdown.append(end_watches)

    def static(body: Callable[[], Any]) -> Handler:
        async def handler(_: web.Request) -> web.StreamResponse:
            return web.json_response(body())

        return handler

    major, minor = KUBERNETES_VERSION
    router.add_get(
        "/version",
        static(
            lambda: {
                "major": major,
                "minor": minor,
                "gitVersion": f"v{major}.{minor}.0+tidal",
                "platform": "linux/amd64",
            }
        ),
    )
    router.add_get(
        "/api",
        static(
            lambda: {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [],
            }
        ),
    )
    core = LOCAL_CORE if platform.on_this_machine else CORE
    local = LOCAL_GROUP_VERSIONS if platform.on_this_machine else {}
    group_versions = {**GROUP_VERSIONS, **local}
    groups = list(dict.fromkeys(gv.split("/")[0] for gv in group_versions))
    router.add_get("/api/v1", static(lambda: _resource_list("v1", core)))
    router.add_get(
        "/apis",
        static(
            lambda: {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [_group(group, group_versions) for group in groups]
                + ([metrics_group()] if platform.on_this_machine else [])
                + access.groups(),
            }
        ),
    )
    router.add_get("/openapi/v3", static(openapi.root))

    async def openapi_v2(request: web.Request) -> web.StreamResponse:
        if openapi.V2_PROTOBUF in request.headers.get("Accept", ""):
            # Not V2_PROTOBUF itself: Go's mime parser rejects its "@".
            return web.Response(body=openapi.v2_protobuf(), content_type="application/octet-stream")
        return web.json_response(openapi.V2_JSON)

    router.add_get("/openapi/v2", openapi_v2)
    for group in groups:
        document = {"kind": "APIGroup", "apiVersion": "v1", **_group(group, group_versions)}
        router.add_get(f"/apis/{group}", static(lambda d=document: d))
    for gv, resources in group_versions.items():
        router.add_get(f"/apis/{gv}", static(lambda gv=gv, rs=resources: _resource_list(gv, rs)))
        if gv in GROUP_VERSIONS:  # tidal's own kinds have schemas; Deployments are views
            router.add_get(
                f"/openapi/v3/apis/{gv}", static(lambda gv=gv: openapi.group_version_document(gv))
            )
        for resource in resources:
            _add_resource(router, api, f"/apis/{gv}", resource)
    for resource in core:
        _add_resource(router, api, "/api/v1", resource)
    served = [
        access.Served(r.group, r.plural, r.verbs, r.subresources)
        for r in [*(r for rs in group_versions.values() for r in rs), *core]
    ]
    if platform.on_this_machine:
        for plural in ("pods", "nodes"):
            served.append(access.Served(metrics_group()["name"], plural, ("get", "list")))
    access.add_review_routes(router, served)
    for path, document in access.discovery().items():
        router.add_get(path, static(lambda d=document: d))
    if platform.on_this_machine:

        @_handle
        async def log(request: web.Request) -> web.StreamResponse:
            return await pod_log(platform, request, api.closing)

        router.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", log)

        @_handle
        async def exec_(request: web.Request) -> web.StreamResponse:
            return await pod_exec(platform, request, api.closing)

        router.add_get("/api/v1/namespaces/{ns}/pods/{name}/exec", exec_)
        router.add_post("/api/v1/namespaces/{ns}/pods/{name}/exec", exec_)

        @_handle
        async def portforward(request: web.Request) -> web.StreamResponse:
            return await pod_portforward(platform, request, api.closing)

        router.add_get("/api/v1/namespaces/{ns}/pods/{name}/portforward", portforward)
        router.add_post("/api/v1/namespaces/{ns}/pods/{name}/portforward", portforward)

        @_handle
        async def scale(request: web.Request) -> web.StreamResponse:
            raise ApiError(
                405,
                "the autoscaler sets a revision's replicas: bound them with the "
                "autoscaling.knative.dev/min-scale and max-scale annotations of its Service",
            )

        router.add_route("*", "/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale", scale)
        add_metrics_routes(router, platform)
    return api


def _add_resource(router: web.UrlDispatcher, api: KubeApi, base: str, resource: Resource) -> None:
    if resource.namespaced:
        collection = f"{base}/namespaces/{{ns}}/{resource.plural}"
        router.add_get(f"{base}/{resource.plural}", api.reader(resource, item=False))
    else:
        collection = f"{base}/{resource.plural}"
    item = f"{collection}/{{name}}"
    router.add_get(collection, api.reader(resource, item=False))
    router.add_get(item, api.reader(resource, item=True))
    if resource is not EVENTS:  # read-only kinds answer writes with a Status saying why
        router.add_post(collection, api.creator(resource))
        router.add_put(item, api.replacer(resource))
        router.add_patch(item, api.patcher(resource))
        router.add_delete(item, api.deleter(resource))
