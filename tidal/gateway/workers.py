"""`tidal up`'s data plane: N gateway worker processes sharing one listening socket.

The parent binds the gateway's socket (so its port is known, and port 0 works) and hands it to
each worker (tidal.gateway.worker) as an inherited descriptor; the kernel spreads connections over
the workers that accept on it. Because the parent keeps the socket open, a worker that dies is
restarted without the port ever refusing a connection: connections wait in the backlog until a
worker accepts them. Workers run in a session of their own (a terminal's Ctrl-C reaches only
`tidal up`, which then drains them) and write their logs where `tidal up` writes its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tidal.api.config import GatewayLimits

log = logging.getLogger("tidal")
RESTART_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0)
STABLE_S = 10.0  # a worker that ran this long before dying is restarted at once


@dataclass(frozen=True)
class WorkerOptions:
    controller: str  # admin API URL
    token_file: Path
    limits: GatewayLimits
    ca_cert: Path | None = None  # of the admin API's TLS certificate
    tls_cert: Path | None = None  # the gateway's own TLS
    tls_key: Path | None = None


class GatewayWorkers:
    """Starts, watches (restarting any that die) and drains the gateway workers."""

    def __init__(
        self,
        count: int,
        sock: socket.socket,
        options: WorkerOptions,
        on_exit: Callable[[str], None] = lambda worker: None,
    ) -> None:
        """`on_exit(worker id)` hears of each worker that exited: what it reported in flight
        is no longer."""
        if count < 1:
            raise ValueError("--gateway-workers must be at least 1")
        self.count = count
        self.sock = sock
        self.options = options
        self.on_exit = on_exit
        self.processes: list[asyncio.subprocess.Process | None] = [None] * count
        self.restarts = 0
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for index in range(self.count):
            await self._spawn(index)
        self._watchers = [asyncio.ensure_future(self._watch(i)) for i in range(self.count)]

    @property
    def ids(self) -> set[str]:
        """The names the workers give the controller."""
        return {worker_id(i) for i in range(self.count)}

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p is not None and p.returncode is None]

    async def _spawn(self, index: int) -> None:
        o = self.options
        fd = self.sock.fileno()
        command = [
            sys.executable,
            "-m",
            "tidal.gateway.worker",
            "--fd",
            str(fd),
            "--controller",
            o.controller,
            "--id",
            worker_id(index),
            "--token-file",
            str(o.token_file),
            "--limits",
            o.limits.to_json(),
            "--parent",
            str(os.getpid()),
        ]
        if o.ca_cert is not None:
            command += ["--ca-cert", str(o.ca_cert)]
        if o.tls_cert is not None and o.tls_key is not None:
            command += ["--tls-cert", str(o.tls_cert), "--tls-key", str(o.tls_key)]
        self.processes[index] = await asyncio.create_subprocess_exec(
            *command, pass_fds=(fd,), start_new_session=True
        )

    async def _watch(self, index: int) -> None:
        """Restart worker `index` whenever it exits, unless we are stopping."""
        failures = 0
        while True:
            process = self.processes[index]
            assert process is not None
            started = time.monotonic()
            code = await process.wait()
            self.on_exit(worker_id(index))
            if self._stopping:
                return
            failures = 0 if time.monotonic() - started > STABLE_S else failures + 1
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S)) - 1] if failures else 0
            log.warning(
                "gateway worker %d (pid %d) exited with %s; restarting%s",
                index,
                process.pid,
                code,
                f" in {delay:g}s" if delay else "",
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            self.restarts += 1
            await self._spawn(index)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` to every live worker (SIGTERM: drain; a second one: cut the drain)."""
        self._stopping = True
        for process in self.processes:
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)

    async def wait(self, timeout: float) -> None:
        """Wait up to `timeout` for the workers to exit; kill those still running."""
        live = [p for p in self.processes if p is not None and p.returncode is None]
        if live:
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in live], timeout=timeout
            )
            for process in live:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)

    async def stop(self, timeout: float) -> None:
        self.signal(signal.SIGTERM)
        await self.wait(timeout)


def worker_id(index: int) -> str:
    return f"worker-{index}"
