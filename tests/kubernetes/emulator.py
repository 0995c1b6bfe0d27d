"""kmock's KubernetesEmulator, completed where tidal relies on the real API server, and run in a
thread of its own so that synchronous client calls from the test's event loop cannot deadlock.

kmock 0.8 keeps objects as plain JSON and merges every write; the real server also does what is
added here (its docstring invites subclassing for exactly this): resourceVersion, uid,
creationTimestamp and generation (bumped by a PUT or PATCH that changes the spec); 201 Created;
PUT (replace) with optimistic concurrency (409 on a stale resourceVersion); the status
subresource; equality label selectors on list and watch.

`FakeCluster` stands in for the ReplicaSet controller and the kubelet, which no emulator has:
it keeps each Deployment's pods at spec.replicas (removing the lowest pod-deletion-cost first,
as the ReplicaSet controller does) and lets a test mark pods Running and Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import k8s_dicts, rendering
from kubernetes import client
from kubernetes.client import ApiClient, Configuration

from tidal.controller.kubeapi.patch import merge_patch

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
POD_LOG = "test.tidal.dev/log"  # what a pod's log subresource answers, kept on the pod


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    _versions: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), init=False)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.subresource == "log" and request.method == "GET":  # the kubelet's, stood in
            async with self._lock:
                pod = self._object(request).raw
            if (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                raise kmock.KubernetesError(
                    400,
                    "BadRequest",
                    f'container in pod "{request.name}" is waiting to start: ContainerCreating',
                )
            text = await self._log(request)
            tail = request.params.get("tailLines")
            if tail is not None:
                text = "".join(text.splitlines(keepends=True)[-int(tail) :] if int(tail) else [])
            if request.params.get("follow") == "true":
                return await self._follow_log(request, text)
            return aiohttp.web.Response(text=text)
        if request.resource is not None and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.method == "POST" and request.name is None:
                meta.setdefault("namespace", request.namespace)
                meta.update(
                    uid=str(uuid.uuid4()),
                    generation=1,
                    creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
                meta["resourceVersion"] = str(next(self._versions))
                request.data.pop("status", None)  # status is a subresource
            elif request.method == "PATCH" and request.name is not None:
                await self._check_version(request)
                meta["resourceVersion"] = str(next(self._versions))
                if "spec" in request.data and request.subresource is None:
                    async with self._lock:
                        current = self._object(request).raw
                    spec = current.get("spec")
                    if merge_patch(spec, request.data["spec"]) != spec:
                        meta["generation"] = current["metadata"].get("generation", 1) + 1
            elif request.method == "PUT" and request.name is not None:
                return await self._replace(request)
        response = await super()._handle(request)
        if request.method == "POST" and response.status == 200 and not response.prepared:
            response.set_status(201)  # Created, as the real server answers
        return response

    async def _log(self, request: rendering.Request) -> str:
        async with self._lock:
            pod = self._object(request).raw
        return str(pod["metadata"].get("annotations", {}).get(POD_LOG, ""))

    async def _follow_log(
        self, request: rendering.Request, text: str
    ) -> aiohttp.web.StreamResponse:
        """`follow=true`: what was written, then what `FakeCluster.write_log` adds, as chunks,
        until the pod is gone or the client goes."""
        raw = request._raw_request
        assert raw is not None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(raw)
        sent = await self._log(request)
        with contextlib.suppress(ConnectionError, kmock.KubernetesObjectNotFoundError):
            if text:
                await response.write(text.encode())
            while raw.transport is not None and not raw.transport.is_closing():
                await asyncio.sleep(0.02)
                now = await self._log(request)
                if now != sent:
                    await response.write(now[len(sent) :].encode())
                    sent = now
        return response

    def _object(self, request: rendering.Request) -> k8s_dicts.Object:
        key = (request.resource, request.namespace, request.name)
        if key not in self._objects or self._objects[key].deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return self._objects[key]

    async def _check_version(self, request: rendering.Request) -> None:
        expected = request.data["metadata"].get("resourceVersion")
        async with self._lock:
            current = self._object(request).raw["metadata"].get("resourceVersion")
        if expected is not None and expected != current:
            raise kmock.KubernetesError(409, "Conflict", "the object has been modified")

    async def _replace(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        await self._check_version(request)
        async with self._lock:
            obj = self._object(request)
            current = obj.raw
            if request.subresource == "status":
                new = {**current, "status": request.data.get("status")}
            else:
                new = {**request.data, "status": current.get("status")}
                meta = new["metadata"]
                for key in ("uid", "creationTimestamp", "namespace"):
                    meta[key] = current["metadata"].get(key)
                generation = current["metadata"].get("generation", 1)
                changed = new.get("spec") != current.get("spec")
                meta["generation"] = generation + 1 if changed else generation
            new["metadata"] = {**new["metadata"], "resourceVersion": str(next(self._versions))}
            obj.create(new)
            await self._buses[request.resource].put({"type": "MODIFIED", "object": new})
        return aiohttp.web.json_response(new)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        listed = await super()._serve_list(request)
        assert isinstance(listed, dict)
        listed["items"] = [o for o in listed["items"] if _selected(request, o)]
        return listed

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        async for event in super()._serve_watch(request):
            if not isinstance(event, dict) or _selected(request, event["object"]):
                yield event


def _selected(request: rendering.Request, obj: dict[str, Any]) -> bool:
    selector = request.params.get("labelSelector", "")
    labels = obj.get("metadata", {}).get("labels") or {}
    pairs = [term.split("=", 1) for term in selector.split(",") if term]
    return all(labels.get(key) == value for key, value in pairs)


RESOURCES = (
    "apps/v1/deployments",
    "v1/pods",
    "v1/services",
    "coordination.k8s.io/v1/leases",
    "serving.tidal.dev/v1/services",
    "serving.tidal.dev/v1/revisions",
    "serving.tidal.dev/v1/routes",
    "scheduling.tidal.dev/v1alpha1/resourcepolicies",
    "serving.tidal.dev/v1/domainmappings",
    # the same kinds where an install puts them in Knative's and ACK's groups
    "serving.knative.dev/v1/services",
    "serving.knative.dev/v1/revisions",
    "serving.knative.dev/v1/routes",
    "scheduling.alibabacloud.com/v1alpha1/resourcepolicies",
    "serving.knative.dev/v1beta1/domainmappings",
    "metrics.k8s.io/v1beta1/pods",  # PodMetrics, as metrics-server serves them
)


class ThreadedEmulator:
    """The emulator on 127.0.0.1 in a background thread with its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),))

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        async with Emulator() as emulator, kmock.Server(emulator) as server:
            for resource in RESOURCES:
                emulator.resources[resource] = {}
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadedEmulator:
        self._thread.start()
        self._ready.wait(10)
        return self

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for this emulator (no credentials: it asks for none), as a controller
        pod's or a user's would name a cluster."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "admin", "user": {}}],
            "contexts": [{"name": "test", "context": {"cluster": "emulator", "user": "admin"}}],
            "current-context": "test",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(10)

    def _shutdown(self) -> None:
        # Open watch streams never end by themselves: cancel them, then leave.
        main = asyncio.current_task(self.loop)
        for task in asyncio.all_tasks(self.loop):
            if task is not main and task.get_coro().__name__ != "_run":
                task.cancel()
        assert self._stop is not None
        self._stop.set()

    def api_client(self) -> ApiClient:
        config = Configuration()
        config.host = self.url
        return ApiClient(config)


class FakeCluster:
    """The ReplicaSet controller and the kubelet, reduced to what tidal's runtime observes."""

    def __init__(self, api: ApiClient, period_s: float = 0.05) -> None:
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.period_s = period_s
        self._serial = itertools.count(1)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> FakeCluster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._closed.wait(self.period_s):
            self.sync()

    def deployments(self) -> dict[str, dict[str, Any]]:
        items = self.apps.api_client.sanitize_for_serialization(
            self.apps.list_deployment_for_all_namespaces()
        )["items"]
        return {d["metadata"]["name"]: d for d in items}

    def pods(self, deployment: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        items = self.core.api_client.sanitize_for_serialization(
            self.core.list_pod_for_all_namespaces()
        )["items"]
        if deployment is None:
            return items
        selector = deployment["spec"]["selector"]["matchLabels"]
        return [p for p in items if _matches(p, selector)]

    def sync(self) -> None:
        for deployment in self.deployments().values():
            pods = self.pods(deployment)
            wanted = deployment["spec"].get("replicas") or 0
            for _ in range(wanted - len(pods)):
                self._create_pod(deployment)
            for pod in sorted(pods, key=_deletion_rank)[: max(0, len(pods) - wanted)]:
                self.core.delete_namespaced_pod(
                    pod["metadata"]["name"], pod["metadata"]["namespace"]
                )

    def _create_pod(self, deployment: dict[str, Any]) -> None:
        template = deployment["spec"]["template"]
        namespace = deployment["metadata"]["namespace"]
        name = f"{deployment['metadata']['name']}-{next(self._serial):05d}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**template["metadata"], "name": name, "namespace": namespace},
            "spec": template["spec"],
        }
        self.core.create_namespaced_pod(namespace, pod)

    def set_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})

    def write_log(self, pod: dict[str, Any], text: str) -> None:
        """What the pod's container wrote, as its log subresource will answer it (write more
        by writing what was there and more after it)."""
        meta = pod["metadata"]
        patch = {"metadata": {"annotations": {POD_LOG: text}}}
        self.core.patch_namespaced_pod(meta["name"], meta["namespace"], patch)

    def report_usage(self, pod: dict[str, Any], cpu: str, memory: str) -> None:
        """What metrics-server would publish for the pod: one container's CPU and memory."""
        meta = pod["metadata"]
        client.CustomObjectsApi(self.core.api_client).create_namespaced_custom_object(
            "metrics.k8s.io",
            "v1beta1",
            meta["namespace"],
            "pods",
            {
                "apiVersion": "metrics.k8s.io/v1beta1",
                "kind": "PodMetrics",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "window": "15s",
                "containers": [{"name": "user-container", "usage": {"cpu": cpu, "memory": memory}}],
            },
        )

    def ready(self, pod: dict[str, Any], ip: str = "10.0.0.1") -> None:
        self.set_status(
            pod,
            {
                "phase": "Running",
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        )


def _matches(obj: dict[str, Any], selector: dict[str, str]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _deletion_rank(pod: dict[str, Any]) -> tuple[bool, int]:
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )
    cost = int((pod["metadata"].get("annotations") or {}).get(DELETION_COST, "0"))
    return ready, cost


async def eventually(check: Callable[[], Any], timeout: float = 5.0, message: str = "") -> Any:
    """Poll a check from an async test without blocking its event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message or check}")
        await asyncio.sleep(0.02)
