"""A watch of objects that are views of live state and never stored (pods are the replicas,
deployments the revisions' replica sets): the views are looked at every POLL_S and what changed
is sent (ADDED, MODIFIED, DELETED), as kubectl's watchers expect."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tidal.controller.kubeapi.resources import Resource
from tidal.controller.kubeapi.selection import pinned_name
from tidal.controller.kubeapi.watch_stream import WatchStream

POLL_S = 0.5  # how often a watch (or a log follow) looks for changes
View = dict[str, Any]


async def watch_views(
    request: web.Request,
    resource: Resource,
    current: Callable[[], list[View]],
    gone: Callable[[str], View],
    as_table: bool,
    closing: asyncio.Event,
) -> web.StreamResponse:
    """From resourceVersion 0 (or none) every object of `current()` is ADDED first; from
    another version the client has listed them already, so only changes follow. `gone(name)`
    is what is said of an object known by name only that went before the watch began."""
    stream = await WatchStream(request, resource, as_table).open(request)

    def named() -> dict[str, View]:
        return {view["metadata"]["name"]: view for view in current()}

    seen = named()
    try:
        if request.query.get("resourceVersion", "") in ("", "0"):
            for view in seen.values():
                await stream.send("ADDED", view)
        elif (name := pinned_name(request.query.get("fieldSelector", ""))) and name not in seen:
            # The client listed it and it went before this watch began (`kubectl delete`
            # waits so): views keep no history to replay, so say it went.
            await stream.send("DELETED", gone(name))
        while (remaining := stream.remaining()) > 0 and not client_gone(request):
            if closing.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), min(remaining, POLL_S))
            now = named()
            for name, view in now.items():
                before = seen.get(name)
                if before is None:
                    await stream.send("ADDED", view)
                elif _changed(before, view):
                    await stream.send("MODIFIED", view)
            for name in seen.keys() - now.keys():
                await stream.send("DELETED", seen[name])
            seen = now
    except ConnectionResetError:
        pass
    with contextlib.suppress(ConnectionResetError):
        await stream.response.write_eof()
    return stream.response


def _changed(before: View, after: View) -> bool:
    """A change a watcher cares about: the spec, the status, or the start of a deletion."""
    terminating = [v["metadata"].get("deletionTimestamp") is not None for v in (before, after)]
    return (
        before.get("spec") != after.get("spec")
        or before["status"] != after["status"]
        or terminating[0] != terminating[1]
    )


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
