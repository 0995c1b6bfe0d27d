"""Shutdown on SIGTERM/SIGINT for processes that serve the gateway: drain, then stop.

The first signal starts the drain (no new connections; in-flight requests finish, up to the drain
timeout); a second one cuts it short, as a second Ctrl-C does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from tidal.gateway.proxy import GatewayServer

log = logging.getLogger("tidal")


async def wait_for_signal() -> asyncio.Event:
    """Wait for SIGINT/SIGTERM; returns an event that a second one sets (cut the drain)."""
    loop = asyncio.get_running_loop()
    first, again = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (again if first.is_set() else first).set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    await first.wait()
    return again


async def drain(gateway: GatewayServer, timeout: float, cut_short: asyncio.Event) -> None:
    """Let in-flight requests finish (up to `timeout`, or until `cut_short` is set)."""
    started = time.monotonic()
    log.warning(
        "draining %d connection(s), up to %gs (signal again to stop now)",
        gateway.open_connections,
        timeout,
    )
    draining = asyncio.ensure_future(gateway.drain(timeout))
    interrupted = asyncio.ensure_future(cut_short.wait())
    await asyncio.wait((draining, interrupted), return_when=asyncio.FIRST_COMPLETED)
    interrupted.cancel()
    if not draining.done():
        await gateway.close()
        await draining
    log.warning(
        "drained in %.1fs, %d connection(s) cut", time.monotonic() - started, draining.result()
    )
