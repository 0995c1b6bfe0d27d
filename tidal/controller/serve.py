"""`tidal up`: one process with the gateway, the admin API and the controller."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tidal.api.config import PlatformConfig
from tidal.controller.admin import build_app
from tidal.controller.platform import Platform
from tidal.gateway.proxy import GatewayServer
from tidal.runtime.container import ContainerRuntime, HostRuntime
from tidal.runtime.local import LocalRuntime


@dataclass
class ServeOptions:
    config: PlatformConfig
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    admin_port: int = 8081
    manifests: list[dict[str, Any]] = field(default_factory=list)
    container_engine: str = "auto"  # podman, docker, or auto (podman first)


async def serve(
    options: ServeOptions, on_ready: Callable[[Platform, dict[str, Any]], None]
) -> None:
    """Run until SIGINT/SIGTERM. `on_ready` gets the platform and the addresses once serving."""
    containers = ContainerRuntime(options.data_dir, options.container_engine)
    platform = Platform(
        options.config, options.data_dir, HostRuntime(LocalRuntime(), containers)
    )
    gateway = GatewayServer(platform.router)
    runner: web.AppRunner | None = None
    try:
        engine = await containers.prepare()  # leftovers go before restore starts containers
        await gateway.start(options.host, options.port)
        info = {
            "gateway": f"http://{options.host}:{gateway.port}",
            "admin": f"http://{options.host}:{options.admin_port}",
            "domain": options.config.domain,
            "dataDir": str(options.data_dir),
            "containers": engine,
        }
        runner = web.AppRunner(build_app(platform, info), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, options.host, options.admin_port).start()
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
