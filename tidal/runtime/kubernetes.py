"""Replicas as pods of per-(revision, pool) Deployments, with the official `kubernetes` client.

`start` makes sure the Deployment exists (built from the stored Revision: image, resources,
probe, labels; see `tidal.runtime.deployments`) and raises its spec.replicas by one; the next
pod of that Deployment the watch sees becomes the replica. Readiness comes from the pod's Ready
condition through the same watch: READY with host = pod IP and port = the container port, which
the workload hands to the gateway. A pod that is Pending (unschedulable, pulling, waiting for
elastic capacity) stays STARTING: only the controller's progress deadline gives up on it.

`stop` sets controller.kubernetes.io/pod-deletion-cost of that pod to the lowest value and then
lowers spec.replicas by one, so the ReplicaSet removes exactly the replica the scheduler chose
(its own ranking puts unscheduled, pending and not-ready pods first, as the scheduler does).

The client is synchronous: API calls run in worker threads (`asyncio.to_thread`) and the pod
watch in a thread of its own that hands events to the event loop, which never blocks. It is the
official client, generated from the API's OpenAPI spec; kubernetes_asyncio is a community port.

After a controller restart, pods already running are adopted by the replicas the restored
workloads start; those nobody adopts within `adopt_grace_s` are scaled away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from tidal.kubernetes.list_watch import list_then_watch
from tidal.runtime.base import (
    ExecCommand,
    ExecUnavailable,
    FollowedLog,
    PortUnavailable,
    Replica,
    ReplicaListener,
    ReplicaSpec,
    ReplicaState,
    VolumeSpec,
    notify,
)
from tidal.runtime.deployments import (
    DELETION_COST,
    DEPLOYMENT_LABEL,
    LOWEST_DELETION_COST,
    MANAGED_BY,
    PodPlacement,
    container_port,
    deployment_manifest,
    deployment_name,
    pod_state,
    revision_labels,
    serving_container,
)
from tidal.store.kubernetes import RESOURCES

log = logging.getLogger(__name__)

SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
STOP_MARGIN_S = 5.0
RevisionLookup = Callable[[str, str], dict[str, Any] | None]


PodKey = tuple[str, str]


@dataclass(eq=False)
class _Child:
    replica: Replica
    on_change: ReplicaListener
    deployment: _Deployment
    pod: str | None = None
    stopping: bool = False
    failed: bool = False
    gone: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class _Deployment:
    namespace: str
    name: str
    port: int
    container: str  # the serving container's name, whose log `log_tail` reads
    wanted: int = 0  # replicas tidal holds in it: spec.replicas as last written
    ready: bool = False  # created or read from the cluster
    waiting: deque[_Child] = field(default_factory=deque)  # started, no pod yet
    orphans: dict[str, dict[str, Any]] = field(default_factory=dict)  # pods of an earlier run
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class KubernetesRuntime:
    """Runs replicas as pods. `revisions(namespace, name)` returns the stored Revision."""

    requires_command = False  # a pod without `command` runs the image's entrypoint
    keeps_log_files = False  # the pods keep their logs

    def __init__(
        self,
        api: ApiClient,
        revisions: RevisionLookup,
        placements: Mapping[str, PodPlacement],
        termination_grace_s: float = 30.0,
        adopt_grace_s: float = 60.0,
        watch_timeout_s: int = 300,
        revision_api_version: str = RESOURCES["Revision"].api_version,
    ) -> None:
        self._api = api
        self._revision_api_version = revision_api_version  # the owner of each Deployment
        self._apps = client.AppsV1Api(api)
        self._core = client.CoreV1Api(api)
        self._revisions = revisions
        self._placements = placements
        self._grace_s = termination_grace_s
        self._adopt_grace_s = adopt_grace_s
        self._watch_timeout_s = watch_timeout_s
        self._revision_cache: dict[PodKey, dict[str, Any]] = {}
        self._deployments: dict[PodKey, _Deployment] = {}
        self._children: dict[str, _Child] = {}
        self._by_pod: dict[PodKey, _Child] = {}
        self._pods: dict[PodKey, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = threading.Event()
        self._detached = False
        self._watcher: threading.Thread | None = None

    # -- Runtime protocol ---------------------------------------------------------------------

    async def start(self, spec: ReplicaSpec, on_change: ReplicaListener) -> Replica:
        self._watch()
        replica = Replica(spec=spec, host="", pid=None, started_at=time.monotonic())
        try:
            deployment = await self._deployment(spec)
        except (ApiException, KeyError, ValueError) as exc:
            replica.state = ReplicaState.FAILED
            replica.reason = f"cannot create the Deployment: {_message(exc)}"
            notify(on_change, replica)
            return replica
        replica.port = deployment.port
        child = _Child(replica, on_change, deployment)
        self._children[spec.replica_id] = child
        async with deployment.lock:
            if deployment.orphans:
                self._adopt(child)
            else:
                deployment.waiting.append(child)
                deployment.wanted += 1
                await self._scale(deployment)
        notify(on_change, replica)
        return replica

    async def stop(self, replica: Replica, grace_s: float) -> None:
        child = self._children.get(replica.replica_id)
        if child is None:
            return
        if child.stopping or self._detached:
            child.stopping = True
            await self._wait_gone(child, grace_s)
            return
        child.stopping = True
        await self._remove(child)
        await self._wait_gone(child, grace_s)

    def refresh_volumes(self, replica: Replica, volumes: tuple[VolumeSpec, ...]) -> None:
        """The kubelet updates a pod's Secret and ConfigMap volumes itself."""

    def exec_command(
        self, replica: Replica, container: str, command: tuple[str, ...], tty: bool = False
    ) -> ExecCommand:
        raise ExecUnavailable("the pods are the cluster's: use kubectl exec against the cluster")

    async def connect_inside(self, replica: Replica, port: int) -> socket.socket:
        raise PortUnavailable(
            "the pods are the cluster's: use kubectl port-forward against the cluster"
        )

    def log_tail(self, replica_spec: ReplicaSpec, lines: int) -> list[str]:
        """The pod's last lines (of the previous container when it crashed); blocks up to 2 s,
        and is only called when a replica fails."""
        child = self._children.get(replica_spec.replica_id)
        if child is None or child.pod is None or lines <= 0:
            return []
        try:
            text = self._read_pod_log(
                child,
                tail_lines=lines,
                previous=child.replica.exit_code is not None,
                _request_timeout=2,
            )
        except (ApiException, OSError) as exc:
            return [f"(logs unavailable: {_message(exc)})"]
        return str(text).splitlines()[-lines:]

    def open_log(self, replica_spec: ReplicaSpec, tail: int | None) -> FollowedLog | None:
        """The pod's log followed as it is written: its last `tail` lines (all when None), then
        each chunk the container writes, until it ends. Blocks: call from a thread; `close`
        ends it from another. None while no pod backs the replica, or its container has not
        started."""
        child = self._children.get(replica_spec.replica_id)
        if child is None or child.pod is None:
            return None
        try:
            response = self._read_pod_log(
                child,
                follow=True,
                tail_lines=tail,
                _preload_content=False,  # no timeout: a quiet container may write for hours
            )
        except ApiException as exc:
            if exc.status == 400:  # "container ... is waiting to start": no log yet
                return None
            raise
        # Closing the response from another thread would wait for the reader's lock: shutting
        # its socket down wakes the reader instead, which then closes the response itself.
        connection = response.connection
        sock = connection.sock if connection is not None else None

        def interrupt() -> None:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.stream(None)
            finally:
                response.close()

        return FollowedLog(chunks(), interrupt)

    def _read_pod_log(self, child: _Child, **options: Any) -> Any:
        """The log subresource of the child's pod, its serving container's."""
        return self._core.read_namespaced_pod_log(
            child.pod, child.deployment.namespace, container=child.deployment.container, **options
        )

    def pod_of(self, replica: Replica) -> tuple[str, str] | None:
        """(namespace, pod name) of a replica once a pod backs it (for its metrics)."""
        child = self._children.get(replica.replica_id)
        if child is None or child.pod is None:
            return None
        return child.deployment.namespace, child.pod

    def pod_metrics(self, namespace: str, pod: str) -> dict[str, Any] | None:
        """The pod's PodMetrics from the metrics API (`kubectl top`'s source); None without."""
        try:
            return client.CustomObjectsApi(self._api).get_namespaced_custom_object(
                "metrics.k8s.io", "v1beta1", namespace, "pods", pod, _request_timeout=2
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def detach(self) -> None:
        """Stop acting on the cluster: pods keep running for the next controller to adopt."""
        self._detached = True
        for child in self._children.values():
            child.gone.set()

    async def close(self) -> None:
        """Leave the pods running (a restarted controller adopts them) and stop watching."""
        self.detach()
        self._closed.set()
        for task in list(self._tasks):
            task.cancel()

    # -- Deployments --------------------------------------------------------------------------

    async def _revision(self, namespace: str, name: str) -> dict[str, Any]:
        key = (namespace, name)
        if key not in self._revision_cache:  # revisions are immutable: read once
            revision = await asyncio.to_thread(self._revisions, namespace, name)
            if revision is None:
                raise KeyError(f"revision {namespace}/{name} not found")
            self._revision_cache[key] = revision
        return self._revision_cache[key]

    async def _deployment(self, spec: ReplicaSpec) -> _Deployment:
        revision = await self._revision(spec.namespace, spec.revision)
        pod = revision["spec"]
        if not all(c.get("image") for c in (*pod["containers"], *pod.get("initContainers", []))):
            raise ValueError("a container has no image (cluster mode runs images)")
        serving, container = serving_container(revision["spec"])
        own = revision_labels(revision)
        extra = {k: v for k, v in spec.labels.items() if own.get(k) != v}
        name = deployment_name(spec.revision, spec.pool, extra)
        key = (spec.namespace, name)
        deployment = self._deployments.get(key)
        if deployment is None:
            deployment = _Deployment(spec.namespace, name, container_port(container), serving)
            self._deployments[key] = deployment
        async with deployment.lock:
            if not deployment.ready:
                placement = self._placements.get(spec.pool, PodPlacement())
                body = deployment_manifest(
                    revision,
                    name,
                    spec.pool,
                    placement,
                    extra,
                    self._grace_s,
                    self._revision_api_version,
                )
                await self._ensure(deployment, body)
        return deployment

    async def _ensure(self, deployment: _Deployment, body: dict[str, Any]) -> None:
        """Create the Deployment, or take over an existing one with the pods it has."""
        try:
            await asyncio.to_thread(
                self._apps.create_namespaced_deployment, deployment.namespace, body
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            existing = await asyncio.to_thread(
                self._apps.read_namespaced_deployment, deployment.name, deployment.namespace
            )
            deployment.wanted = existing.spec.replicas or 0
            for (namespace, pod_name), pod in self._pods.items():
                labels = pod["metadata"].get("labels") or {}
                if (
                    namespace == deployment.namespace
                    and labels.get(DEPLOYMENT_LABEL) == deployment.name
                    and (namespace, pod_name) not in self._by_pod
                ):
                    deployment.orphans[pod_name] = pod
            self._spawn(self._sweep_orphans(deployment))
        deployment.ready = True

    async def _scale(self, deployment: _Deployment) -> None:
        """Write the wanted count (call with the deployment's lock held)."""
        await asyncio.to_thread(
            self._apps.patch_namespaced_deployment_scale,
            deployment.name,
            deployment.namespace,
            {"spec": {"replicas": deployment.wanted}},
        )

    async def _remove(self, child: _Child) -> None:
        """Take the child's pod (or the pod it waits for) out of its Deployment."""
        deployment = child.deployment
        async with deployment.lock:
            if child.pod is None:
                with contextlib.suppress(ValueError):
                    deployment.waiting.remove(child)
            else:
                await self._mark_for_deletion(deployment.namespace, child.pod)
            deployment.wanted = max(0, deployment.wanted - 1)
            await self._scale(deployment)
        if child.pod is None:
            self._gone(child)

    async def _mark_for_deletion(self, namespace: str, pod: str) -> None:
        patch = {"metadata": {"annotations": {DELETION_COST: LOWEST_DELETION_COST}}}
        with contextlib.suppress(ApiException):  # already gone
            await asyncio.to_thread(self._core.patch_namespaced_pod, pod, namespace, patch)

    async def _sweep_orphans(self, deployment: _Deployment) -> None:
        """Pods of an earlier controller that no restored replica adopted are removed."""
        await asyncio.sleep(self._adopt_grace_s)
        if self._detached or not deployment.orphans:
            return
        async with deployment.lock:
            orphans = list(deployment.orphans)
            for pod in orphans:
                await self._mark_for_deletion(deployment.namespace, pod)
            deployment.wanted = max(0, deployment.wanted - len(orphans))
            await self._scale(deployment)

    async def _wait_gone(self, child: _Child, grace_s: float) -> None:
        try:
            await asyncio.wait_for(child.gone.wait(), grace_s + STOP_MARGIN_S)
        except TimeoutError:
            log.warning("pod %s did not go within %gs", child.pod, grace_s + STOP_MARGIN_S)
            self._gone(child)

    # -- pods ---------------------------------------------------------------------------------

    def _adopt(self, child: _Child) -> None:
        """Give the child a pod left by an earlier controller, ready ones first."""
        deployment = child.deployment
        name = max(deployment.orphans, key=lambda n: pod_state(deployment.orphans[n]).ready)
        pod = deployment.orphans.pop(name)
        self._assign(child, name)
        self._post(self._update, child, pod)

    def _assign(self, child: _Child, pod_name: str) -> None:
        child.pod = pod_name
        self._by_pod[(child.deployment.namespace, pod_name)] = child

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        if kind == "DELETED":
            self._pod_deleted(key)
            return
        self._pods[key] = pod
        child = self._by_pod.get(key)
        if child is None:
            labels = meta.get("labels") or {}
            deployment = self._deployments.get((key[0], labels.get(DEPLOYMENT_LABEL, "")))
            if deployment is None or not deployment.ready or pod_state(pod).terminating:
                return
            if not deployment.waiting:
                deployment.orphans[key[1]] = pod
                return
            child = deployment.waiting.popleft()
            self._assign(child, key[1])
        self._update(child, pod)

    def _pod_deleted(self, key: PodKey) -> None:
        self._pods.pop(key, None)
        for deployment in self._deployments.values():
            if deployment.namespace == key[0]:
                deployment.orphans.pop(key[1], None)
        child = self._by_pod.pop(key, None)
        if child is None:
            return
        if child.stopping or child.failed:
            self._gone(child)
            return
        # Deleted by someone else (eviction, a drained node): its ReplicaSet makes a new pod,
        # which this replica waits for.
        child.pod = None
        child.deployment.waiting.appendleft(child)
        if child.replica.state is ReplicaState.READY:
            child.replica.state = ReplicaState.NOT_READY
            notify(child.on_change, child.replica)

    def _update(self, child: _Child, pod: dict[str, Any]) -> None:
        if child.stopping or child.failed or self._detached:
            return
        replica, state = child.replica, pod_state(pod)
        replica.reason = state.reason
        if state.failed or (state.exit_code is not None and not replica.ever_ready):
            child.failed = True
            replica.state = ReplicaState.FAILED
            replica.exit_code = state.exit_code
            notify(child.on_change, replica)
            self._spawn(self._remove(child))
        elif state.ready and state.ip:
            if replica.state is not ReplicaState.READY:
                replica.host = state.ip
                replica.state = ReplicaState.READY
                if replica.ready_at is None:
                    replica.ready_at = time.monotonic()
                replica.ever_ready = True
                notify(child.on_change, replica)
        elif replica.state is ReplicaState.READY:
            replica.state = ReplicaState.NOT_READY
            notify(child.on_change, replica)

    def _gone(self, child: _Child) -> None:
        replica = child.replica
        self._children.pop(replica.replica_id, None)
        if child.pod is not None:
            self._by_pod.pop((child.deployment.namespace, child.pod), None)
        child.gone.set()
        if not child.failed and replica.state is not ReplicaState.STOPPED:
            replica.state = ReplicaState.STOPPED
            notify(child.on_change, replica)

    def _resync(self, pods: list[dict[str, Any]]) -> None:
        """A fresh list: pods missing from it were deleted while the watch was down."""
        listed = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in pods}
        for key in [k for k in self._pods if k not in listed]:
            self._pod_deleted(key)
        for pod in pods:
            self._on_pod("MODIFIED", pod)

    # -- the watch thread ---------------------------------------------------------------------

    def _watch(self) -> None:
        if self._watcher is None:
            self._loop = asyncio.get_running_loop()
            self._watcher = threading.Thread(target=self._watch_pods, daemon=True)
            self._watcher.start()

    def _watch_pods(self) -> None:
        list_then_watch(
            self._core.list_pod_for_all_namespaces,
            (),
            lambda pods: self._post(self._resync, pods),
            lambda kind, pod: self._post(self._on_pod, kind, pod),
            self._closed,
            _watch_restarts,
            self._watch_timeout_s,
            label_selector=SELECTOR,
        )

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback` on the event loop (from the watch thread or from the loop itself)."""
        if self._loop is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(callback, *args)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _watch_restarts(exc: Exception) -> float:
    log.debug("pod watch restarts: %s", exc)
    return 0.5


def _message(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        try:
            return str(json.loads(exc.body or "{}").get("message") or exc.reason)
        except ValueError:
            return str(exc.reason)
    return str(exc)
