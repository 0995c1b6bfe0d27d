"""`tidal up`: one process with the gateway, the admin API and the controller."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tidal.api.config import PlatformConfig
from tidal.controller.admin import AdminSecurity, build_app, own_origins
from tidal.controller.platform import Platform
from tidal.gateway.proxy import GatewayServer
from tidal.runtime.local import LocalRuntime
from tidal.security.credentials import local_urls, record_server
from tidal.security.datadir import TOKEN_FILE, DataDirLock, ensure_token, prepare
from tidal.security.tls import server_context


@dataclass
class ServeOptions:
    config: PlatformConfig
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 8081
    manifests: list[dict[str, Any]] = field(default_factory=list)
    admin_host: str = "127.0.0.1"  # not --host: exposing the gateway must not expose the admin
    tls_cert: Path | None = None
    tls_key: Path | None = None
    metrics_need_token: bool = False


async def serve(
    options: ServeOptions, on_ready: Callable[[Platform, dict[str, Any]], None]
) -> None:
    """Run until SIGINT/SIGTERM. `on_ready` gets the platform and the addresses once serving.
    Raises DataDirInUse if another tidal holds the data dir, ValueError for a bad certificate."""
    os.umask(0o077)  # what the platform creates (state, logs) is its owner's alone
    prepare(options.data_dir)
    lock = DataDirLock(options.data_dir).acquire()
    token = ensure_token(options.data_dir)
    tls = server_context(options.tls_cert, options.tls_key) if options.tls_cert else None
    scheme = "https" if tls else "http"
    platform = Platform(options.config, options.data_dir, LocalRuntime())
    gateway = GatewayServer(platform.router)
    runner: web.AppRunner | None = None
    try:
        await gateway.start(options.host, options.port, tls)
        info = {
            "gateway": f"{scheme}://{options.host}:{gateway.port}",
            "admin": f"{scheme}://{options.admin_host}:{options.admin_port}",
            "domain": options.config.domain,
            "dataDir": str(options.data_dir),
        }
        open_paths = {"/healthz"} if options.metrics_need_token else {"/healthz", "/metrics"}
        security = AdminSecurity(
            token,
            own_origins(scheme, options.admin_host, options.admin_port),
            frozenset(open_paths),
        )
        runner = web.AppRunner(build_app(platform, info, security), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, options.admin_host, options.admin_port, ssl_context=tls).start()
        record_server(
            local_urls(scheme, options.admin_host, options.admin_port),
            options.data_dir / TOKEN_FILE,
            options.tls_cert,
        )
        await platform.start()
        if options.manifests:
            platform.apply(options.manifests)
        on_ready(platform, info)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await gateway.close()
        if runner is not None:
            await runner.cleanup()
        with contextlib.suppress(Exception):
            await platform.stop()
        lock.release()
