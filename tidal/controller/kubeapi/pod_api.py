"""The pod endpoints kubectl uses on one machine (docs/kubectl.md#pods): a container's log
(`kubectl logs [-f] [-c NAME] POD`, `kubectl logs -l SELECTOR`) and a delete, which replaces
the replica as a Deployment replaces a deleted pod. Pods are views of the live replicas
(tidal.controller.kubeapi.pods), watched as tidal.controller.kubeapi.live_watch says.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from aiohttp import web

from tidal.controller.kubeapi.live_watch import POLL_S, client_gone
from tidal.controller.kubeapi.pods import (
    container_log,
    container_names,
    init_container_names,
)
from tidal.controller.kubeapi.status import ApiError, not_found
from tidal.controller.platform import Platform
from tidal.controller.workload import RevisionWorkload
from tidal.runtime.base import Replica, ReplicaState
from tidal.runtime.logs import LogFollower, tail_lines


def workload_of(platform: Platform, namespace: str, name: str) -> RevisionWorkload | None:
    """The workload that has the replica (running or still provisioning) named `name`."""
    for workload in platform.workloads.values():
        if workload.spec.namespace == namespace and (
            name in workload.replicas or name in workload.provisioning
        ):
            return workload
    return None


def delete_pod(platform: Platform, namespace: str, name: str) -> bool:
    """Stop the replica (drained first, as any scale-in); the autoscaler starts another where
    the revision still wants it."""
    workload = workload_of(platform, namespace, name)
    if workload is not None:
        workload.stop(name)
    return workload is not None


def pod_container(
    platform: Platform, request: web.Request, init_containers: bool
) -> tuple[RevisionWorkload, str]:
    """The workload of the pod a request names, and the container it names, or the only one;
    ApiError in the API server's words for a pod that does not exist, a request that names no
    container of several, or one the pod does not have."""
    pod = request.match_info["name"]
    workload = workload_of(platform, request.match_info["ns"], pod)
    if workload is None:
        raise not_found("pods", pod)
    names = container_names(workload)
    container = request.query.get("container") or (names[0] if len(names) == 1 else "")
    if not container:
        raise ApiError(
            400,
            f"a container name must be specified for pod {pod}, choose one of: [{' '.join(names)}]",
        )
    valid = [*names, *(init_container_names(workload) if init_containers else ())]
    if container not in valid:
        raise ApiError(400, f"container {container} is not valid for pod {pod}")
    return workload, container


def started(workload: RevisionWorkload, pod: str, container: str) -> Replica:
    """The pod's replica, once its runtime has started it (ApiError before)."""
    replica = workload.replicas.get(pod)
    if replica is None:
        raise ApiError(
            400, f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating'
        )
    return replica


def refuse_spdy(request: web.Request, verb: str, kubectl: str) -> None:
    """ApiError for a stream request that is no WebSocket upgrade: a kubectl older than
    `kubectl` speaks `verb` over SPDY only, which tidal does not serve."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise ApiError(
            400,
            f"tidal serves {verb} over WebSocket only (kubectl {kubectl} or newer); this client "
            "asked for SPDY",
        )


async def accept_websocket(
    request: web.Request, protocol: str, verb: str, kubectl: str
) -> web.WebSocketResponse:
    """The WebSocket of a stream into a pod (exec, port-forward), speaking `protocol`."""
    ws = web.WebSocketResponse(protocols=(protocol,), max_msg_size=0)
    if ws.can_prepare(request).protocol != protocol:
        raise ApiError(
            400, f"{verb} needs the {protocol} WebSocket subprotocol (kubectl {kubectl}+)"
        )
    await ws.prepare(request)
    return ws


async def replica_ended(replica: Replica, closing: asyncio.Event) -> None:
    """Returns once the replica has stopped or failed, or the platform is stopping: a stream
    into a pod (exec, port-forward) ends with it."""
    while replica.state not in (ReplicaState.STOPPED, ReplicaState.FAILED):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), POLL_S)
        if closing.is_set():
            return


async def pod_log(
    platform: Platform, request: web.Request, closing: asyncio.Event
) -> web.StreamResponse:
    """GET .../pods/NAME/log: the container's log, its last `tailLines` lines, at most
    `limitBytes`; with `follow`, what it writes from then on until the replica ends."""
    name, query = request.match_info["name"], request.query
    workload, container = pod_container(platform, request, init_containers=True)
    replica = started(workload, name, container)
    previous = query.get("previous") in ("true", "1")
    path = container_log(workload, replica, container, previous)
    if previous and (path is None or not path.exists()):
        raise ApiError(
            400,
            f'previous terminated container "{container}" in pod "{name}" not found (a sidecar '
            "is restarted in place; a replica whose server ends is replaced, and its log stays "
            "in `tidal logs`)",
        )
    assert path is not None
    # The tail and the follower's starting point in one step of the loop, before any await:
    # the log is written by this loop's pumps, so no line is lost or sent twice in between.
    text = _read(path, _number(query, "tailLines"), _number(query, "limitBytes"))
    follower = LogFollower(lambda: [path.parent]) if query.get("follow") in ("true", "1") else None
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    try:
        await response.write(text)
        if follower is not None:
            await _follow(response, follower, workload, replica, path, request, closing)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went
    return response


def _number(query: Any, key: str) -> int | None:
    value = query.get(key)
    if value is None:
        return None
    if not value.isdigit():
        raise ApiError(400, f"{key}: {value!r} is not a non-negative whole number")
    return int(value)


def _read(path: Path, tail: int | None, limit: int | None) -> bytes:
    if tail is not None:
        lines = tail_lines(path, tail)
        data = "".join(line + "\n" for line in lines).encode()
    else:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            data = b""
    return data if limit is None else data[:limit]


async def _follow(
    response: web.StreamResponse,
    follower: LogFollower,
    workload: RevisionWorkload,
    replica: Replica,
    path: Path,
    request: web.Request,
    closing: asyncio.Event,
) -> None:
    """Whole lines the container writes to `path` (rotation included) until its replica is
    gone, the client hangs up or the platform stops."""
    while not closing.is_set() and not client_gone(request):
        for written, data in follower.poll():
            if written == path:
                await response.write(data)
        if replica.replica_id not in workload.replicas:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), POLL_S)
