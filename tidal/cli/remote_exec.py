"""`tidal exec SERVICE -- COMMAND`: a command in one of a service's replicas, through the admin
API's pod exec (the protocol `kubectl exec` speaks, docs/kubectl.md#exec), for whoever uses the
tidal CLI rather than kubectl. With `-t` the local terminal is put in raw mode and its size
follows it there, as kubectl does; the command's exit code is the CLI's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Any

import aiohttp
import click

from tidal.cli.client import ApiError, Client
from tidal.cli.pod_stream import pod_stream, ready_replica
from tidal.runtime.exec_session import (
    CLOSE,
    ERROR,
    PROTOCOL,
    READ_SIZE,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
)


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("service")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--replica", help="This replica (default: the service's first ready one).")
@click.option("-c", "--container", help="A container of the replica (default: the serving one).")
@click.option("-i", "--stdin", "interactive", is_flag=True, help="Pass stdin to the command.")
@click.option("-t", "--tty", is_flag=True, help="Give the command a terminal (with -i).")
@click.pass_obj
def exec_command(
    client: Client,
    service: str,
    command: tuple[str, ...],
    namespace: str,
    replica: str | None,
    container: str | None,
    interactive: bool,
    tty: bool,
) -> None:
    """Run COMMAND in a replica of SERVICE (`tidal exec hello -- ls`, `-it ... -- sh`)."""
    pod = ready_replica(client, namespace, service, replica)
    if container is None:  # kubectl's default: the serving container, named in the pod
        found = client.call("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}")
        container = found["spec"]["containers"][0]["name"]
    use_tty = tty and interactive and sys.stdin.isatty()
    params = [("command", part) for part in command]
    params += [("container", container), ("stdout", "true")]
    params += [("stdin", str(interactive).lower()), ("tty", str(use_tty).lower())]
    params += [("stderr", str(not use_tty).lower())]
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/exec"
    with _raw_terminal(use_tty):
        code = asyncio.run(_session(client, path, params, interactive, use_tty))
    sys.exit(code)


@contextlib.contextmanager
def _raw_terminal(active: bool) -> Iterator[None]:
    """The local terminal in raw mode while a remote terminal runs: keys go there as typed."""
    if not active:
        yield
        return
    saved = termios.tcgetattr(sys.stdin.fileno())
    try:
        tty.setraw(sys.stdin.fileno())
        yield
    finally:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)


async def _session(
    client: Client, path: str, params: list[tuple[str, str]], interactive: bool, use_tty: bool
) -> int:
    async with pod_stream(client, path, PROTOCOL, params) as ws:
        loop = asyncio.get_running_loop()
        if use_tty:
            await _send_size(ws)
            loop.add_signal_handler(signal.SIGWINCH, lambda: asyncio.ensure_future(_send_size(ws)))
        feeding = asyncio.ensure_future(_feed_stdin(ws)) if interactive else None
        try:
            return await _receive(ws)
        finally:
            if feeding is not None:
                feeding.cancel()
            if use_tty:
                loop.remove_signal_handler(signal.SIGWINCH)


async def _send_size(ws: aiohttp.ClientWebSocketResponse) -> None:
    size = os.get_terminal_size(sys.stdout.fileno())
    message = json.dumps({"Width": size.columns, "Height": size.lines}).encode()
    await ws.send_bytes(bytes([RESIZE]) + message)


async def _feed_stdin(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Local stdin to the command as it comes; its end closes the command's stdin. (Read when
    the loop says it is readable, never in a thread that a finished command would leave
    blocked on a terminal.)"""
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        data = os.read(fd, READ_SIZE)
        if not data:
            loop.remove_reader(fd)
        chunks.put_nowait(data)

    try:
        loop.add_reader(fd, readable)
    except PermissionError:  # a regular file, which never blocks: read it as it is
        while data := os.read(fd, READ_SIZE):
            await ws.send_bytes(bytes([STDIN]) + data)
        await ws.send_bytes(bytes([CLOSE, STDIN]))
        return
    try:
        while data := await chunks.get():
            await ws.send_bytes(bytes([STDIN]) + data)
        await ws.send_bytes(bytes([CLOSE, STDIN]))
    finally:
        loop.remove_reader(fd)


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> int:
    """The command's output to ours until the stream ends; its exit code from the Status."""
    status: dict[str, Any] = {}
    async for message in ws:
        if message.type != aiohttp.WSMsgType.BINARY or not message.data:
            continue
        channel, data = message.data[0], message.data[1:]
        if channel in (STDOUT, STDERR):
            out = sys.stdout.buffer if channel == STDOUT else sys.stderr.buffer
            out.write(data)
            out.flush()
        elif channel == ERROR:
            status = json.loads(data)
    if status.get("status") == "Success":
        return 0
    causes = status.get("details", {}).get("causes", [])
    codes = [c["message"] for c in causes if c.get("reason") == "ExitCode"]
    if codes and codes[0].isdigit():
        return int(codes[0])
    raise ApiError(status.get("message") or "the exec stream ended without a status")
