"""`kubectl exec` (and `kubectl cp`, which runs tar through it) into a replica on one machine
(docs/kubectl.md#exec): Kubernetes' remote command protocol, version 5, over a WebSocket.

Every binary message starts with its channel: 0 the command's stdin (from the client), 1 its
stdout, 2 its stderr, 3 the outcome (a Status, written once at the end), 4 the terminal's size
(JSON, from the client); a message on channel 255 closes the stream its byte names (the
client's end of stdin). kubectl 1.30 and newer speak it by default; older ones speak only SPDY,
which tidal does not, and are told so. The command runs as the runtime says a command in that
container runs (tidal.runtime.base.ExecCommand): `podman exec` in a container, or a process
with the replica's environment, folder and user. As in a pod, the command ends when its
replica does (and when the platform stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
from typing import Any

from aiohttp import WSMsgType, web

from tidal.controller.kubeapi.pod_api import (
    accept_websocket,
    pod_container,
    refuse_spdy,
    replica_ended,
    started,
)
from tidal.controller.kubeapi.status import ApiError
from tidal.controller.platform import Platform
from tidal.runtime.base import ExecUnavailable, Replica
from tidal.runtime.exec_session import (
    CLOSE,
    ERROR,
    PROTOCOL,
    RESIZE,
    STDIN,
    ExecSession,
)

log = logging.getLogger("tidal.kubeapi")
KUBECTL = "1.30"  # the first kubectl to speak exec over WebSocket
DRAIN_S = 1.0  # output still arriving after the command exited (a child kept the terminal)


def _flag(query: Any, key: str) -> bool:
    return query.get(key) in ("true", "1")


def _target(platform: Platform, request: web.Request) -> tuple[Replica, str, tuple[str, ...]]:
    """The running replica, container and command an exec request names; ApiError else."""
    workload, container = pod_container(platform, request, init_containers=False)
    command = tuple(request.query.getall("command", []))
    if not command:
        raise ApiError(400, "you must specify at least one command for the container")
    replica = started(workload, request.match_info["name"], container)
    refuse_spdy(request, "exec", KUBECTL)
    return replica, container, command


async def pod_exec(
    platform: Platform, request: web.Request, closing: asyncio.Event
) -> web.StreamResponse:
    """GET (WebSocket) or POST (SPDY, refused) .../pods/NAME/exec?command=...&container=..."""
    replica, container, command = _target(platform, request)
    query = request.query
    tty, stdin = _flag(query, "tty"), _flag(query, "stdin")
    try:
        how = platform.runtime.exec_command(replica, container, command, tty)
    except (ExecUnavailable, ValueError) as exc:
        raise ApiError(400, f"cannot exec in pod {replica.replica_id}: {exc}") from None
    ws = await accept_websocket(request, PROTOCOL, "exec", KUBECTL)
    try:
        session = await ExecSession.start(how, stdin, tty)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        # Past the upgrade an error can only be told on the error channel.
        await _finish(ws, ApiError(500, f"cannot run {command[0]!r}: {exc}").status())
        return ws
    try:
        await _relay(ws, session, replica, closing)
    except Exception:
        log.exception("kubectl exec in %s failed", replica.replica_id)
        await _finish(ws, ApiError(500, "exec failed: see tidal's log").status())
    finally:
        session.kill()
        session.close()
    return ws


async def _relay(
    ws: web.WebSocketResponse, session: ExecSession, replica: Replica, closing: asyncio.Event
) -> None:
    """Client input to the command, its output to the client, until it exits (or the client
    goes; or its replica ends, which ends it); then its outcome on the error channel."""

    async def forward_output() -> None:
        while (chunk := await session.next_output()) is not None:
            stream, data = chunk
            await ws.send_bytes(bytes([stream]) + data)

    async def forward_input() -> None:
        async for message in ws:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            channel, data = message.data[0], message.data[1:]
            if channel == STDIN:
                await session.write(data)
            elif channel == RESIZE:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    size = json.loads(data)
                    session.resize(int(size["Width"]), int(size["Height"]))
            elif channel == CLOSE and data[:1] == bytes([STDIN]):
                await session.close_stdin()

    output = asyncio.ensure_future(forward_output())
    client = asyncio.ensure_future(forward_input())
    exited = asyncio.ensure_future(session.wait())
    ended = asyncio.ensure_future(replica_ended(replica, closing))
    try:
        await asyncio.wait((exited, client, ended), return_when=asyncio.FIRST_COMPLETED)
        if ended.done() and not exited.done():
            session.kill()
            await exited
        if not exited.done():  # the client went: nobody is left to tell
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(output), DRAIN_S)
        code = exited.result()
        outcome = (
            {"metadata": {}, "status": "Success"}
            if code == 0
            else ApiError(
                500,
                f"command terminated with non-zero exit code: exit status {code}",
                "NonZeroExitCode",
                {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            ).status()
        )
        await _finish(ws, outcome)
    except ConnectionResetError:
        pass
    finally:
        for task in (output, client, exited, ended):
            task.cancel()


async def _finish(ws: web.WebSocketResponse, outcome: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionResetError):
        await ws.send_bytes(bytes([ERROR]) + json.dumps(outcome).encode())
        await ws.close()
