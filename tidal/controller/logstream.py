"""`tidal logs -f`: the tail of a service's replica logs, then what they write from then on,
streamed over the admin API until the client goes, the service is deleted or the platform stops.

On this machine the replicas write log files, which are read as they grow (`follow_logs`). On
Kubernetes the pods keep their logs: each replica's pod log is followed through the API server,
one thread each (the client is synchronous), a replica that starts later from its first line
(`follow_pod_logs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from functools import partial
from pathlib import Path

from aiohttp import web

from tidal.controller.platform import Platform
from tidal.controller.views import log_header
from tidal.runtime.base import FollowedLog, FollowsLogs, ReplicaSpec
from tidal.runtime.logs import LogFollower

POLL_S = 0.5
# Pods followed at once by one `tidal logs -f` on Kubernetes: a stream from the API server and a
# thread each (kubectl follows at most 5 by default, --max-log-requests).
MAX_FOLLOWED_PODS = 20


async def follow_logs(
    request: web.Request,
    platform: Platform,
    service: tuple[str, str],
    revision: str | None,
    tail: int,
    closing: asyncio.Event,
) -> web.StreamResponse:
    namespace, name = service
    # Both in one step of the loop, before any await: no line is lost or sent twice between the
    # tail and the follower's starting point (the logs are written by this loop's pumps).
    files, text = platform.log_tail(namespace, name, revision, tail)
    follower = LogFollower(partial(platform.log_dirs, namespace, name, revision))
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    last: Path | None = files[-1] if files else None  # whose lines were sent last
    try:
        if text:
            await response.write(text.encode() + b"\n")
        while not closing.is_set() and not _gone(request):
            if platform.store.get("Service", namespace, name) is None:
                break
            for path, data in follower.poll():
                if path != last:
                    await response.write(log_header(path).encode() + b"\n")
                    last = path
                await response.write(data)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), POLL_S)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went
    return response


async def follow_pod_logs(
    request: web.Request,
    platform: Platform,
    service: tuple[str, str],
    revision: str | None,
    tail: int,
    closing: asyncio.Event,
) -> web.StreamResponse:
    namespace, name = service
    runtime = platform.runtime
    assert isinstance(runtime, FollowsLogs)  # the admin API asks only of such a runtime
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    followers: dict[str, _PodFollower] = {}
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    last: str | None = None  # whose chunk was sent last
    first, capped = True, False
    try:
        while not closing.is_set() and not _gone(request):
            if platform.store.get("Service", namespace, name) is None:
                break
            reading = sum(f.reading for f in followers.values())
            for revision_name, replica in platform.running_replicas(namespace, name, revision):
                label = f"{revision_name}/{replica.replica_id}"
                follower = followers.get(label)
                if follower is not None and not follower.no_log_yet:
                    continue
                if reading >= MAX_FOLLOWED_PODS:
                    if not capped:  # the others wait for a followed pod to end
                        await response.write(_cap_notice(revision is None))
                        capped, last = True, None
                    continue
                # Those running now from their tail, those that come later (or that had no
                # log to read yet) whole.
                whole = follower is not None or not first
                followers[label] = _PodFollower(label, loop, chunks)
                followers[label].start(runtime, replica.spec, None if whole else tail)
                reading += 1
            first = False
            deadline = loop.time() + POLL_S
            while (left := deadline - loop.time()) > 0:
                try:
                    label, data = await asyncio.wait_for(chunks.get(), left)
                except TimeoutError:
                    break
                if label != last:
                    await response.write(f"==> {label} <==\n".encode())
                    last = label
                await response.write(data)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went
    finally:
        for follower in followers.values():
            follower.stop()
    return response


class _PodFollower:
    """One pod log, read in a thread of its own and handed to the event loop chunk by chunk."""

    def __init__(
        self, label: str, loop: asyncio.AbstractEventLoop, chunks: asyncio.Queue[tuple[str, bytes]]
    ) -> None:
        self.label = label
        self._loop = loop
        self._chunks = chunks
        self._stopped = threading.Event()
        self._log: FollowedLog | None = None
        self._lock = threading.Lock()
        self.no_log_yet = False  # no pod, or its container had not started, when asked
        self.reading = True  # its thread runs

    def start(self, runtime: FollowsLogs, spec: ReplicaSpec, tail: int | None) -> None:
        threading.Thread(target=self._follow, args=(runtime, spec, tail), daemon=True).start()

    def stop(self) -> None:
        """End the read from the event loop: ending the stream wakes the thread."""
        with self._lock:
            self._stopped.set()
            log = self._log
        if log is not None:
            with contextlib.suppress(Exception):
                log.close()

    def _follow(self, runtime: FollowsLogs, spec: ReplicaSpec, tail: int | None) -> None:
        try:
            self._read(runtime, spec, tail)
        finally:
            self.reading = False

    def _read(self, runtime: FollowsLogs, spec: ReplicaSpec, tail: int | None) -> None:
        try:
            log = runtime.open_log(spec, tail)
        except Exception as exc:  # the API server's refusal
            self._hand(f"(logs unavailable: {exc})\n".encode())
            return
        if log is None:
            self.no_log_yet = True
            return
        with self._lock:
            self._log = log
            stopped = self._stopped.is_set()
        if stopped:  # `stop` came while it opened: end it, and let the loop below clean up
            log.close()
        with contextlib.suppress(Exception):  # ended by `stop`, or the pod went
            for chunk in log.chunks:
                if self._stopped.is_set():
                    break
                if chunk:
                    self._hand(chunk)

    def _hand(self, data: bytes) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody reads any more
            self._loop.call_soon_threadsafe(self._chunks.put_nowait, (self.label, data))


def _cap_notice(whole_service: bool) -> bytes:
    hint = ": name one revision (--revision) to see fewer" if whole_service else ""
    return (
        f"(following at most {MAX_FOLLOWED_PODS} pods at once; the others from when one "
        f"ends{hint})\n"
    ).encode()


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
