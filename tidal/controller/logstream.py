"""`tidal logs -f`: the tail of a service's replica logs, then what they write from then on,
streamed over the admin API until the client goes, the service is deleted or the platform stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from pathlib import Path

from aiohttp import web

from tidal.controller.platform import Platform
from tidal.controller.views import log_header
from tidal.runtime.logs import LogFollower

POLL_S = 0.5


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


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
