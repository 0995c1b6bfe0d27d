"""`tidal up`: one process with the gateway, the admin API and the controller.

Shutdown (SIGTERM/SIGINT) drains: the gateway stops accepting and in-flight requests get up to
the drain timeout to finish; then the admin API closes and the controller stops every replica
(SIGTERM, then SIGKILL after the termination grace period). A second signal cuts the drain short.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tidal.api.config import GatewayLimits, PlatformConfig
from tidal.cli.kubeconfig import write_kubeconfig
from tidal.controller.admin import AdminSecurity, build_app, own_origins
from tidal.controller.platform import Platform
from tidal.gateway.limits import ConnectionBudget, capped
from tidal.gateway.proxy import GatewayServer
from tidal.gateway.shutdown import drain, wait_for_signal
from tidal.runtime.container import ContainerRuntime, HostRuntime
from tidal.runtime.hygiene import ReplicaRecords, make_non_dumpable, raise_open_files_limit
from tidal.runtime.local import LocalRuntime
from tidal.security.credentials import local_urls, record_server
from tidal.security.datadir import TOKEN_FILE, DataDirLock, ensure_token, prepare
from tidal.security.localca import ensure_local_tls
from tidal.security.tls import server_context

log = logging.getLogger("tidal")


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
    container_engine: str = "auto"  # podman, docker, or auto (podman first)
    kube_port: int = 6443  # TLS for kubectl when the admin API has none; 0: any free port


class CappedAppRunner(web.AppRunner):
    """An aiohttp runner whose listener refuses connections over its cap and the process's."""

    def __init__(
        self, app: web.Application, limit: int, budget: ConnectionBudget, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._limit = limit
        self._budget = budget

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()

        def open_count() -> int:
            return len(server.connections)

        self._budget.register(open_count)
        guard = capped(server, open_count, self._limit, self._budget)
        return _GuardedServer(server, guard)  # type: ignore[return-value]


class _GuardedServer:
    """The aiohttp Server, called through the cap (everything else passes through)."""

    def __init__(self, server: web.Server, guard: Callable[[], Any]) -> None:
        self._server = server
        self._guard = guard

    def __call__(self) -> Any:
        return self._guard()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), bound before the app is built so
    that its real port is known."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


def dial_host(host: str) -> str:
    """Where a local client reaches a listener on `host` (a wildcard means loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def harden(limits: GatewayLimits) -> None:
    """Process-wide settings for a platform or gateway process (tidal.runtime.hygiene)."""
    if not make_non_dumpable():
        log.warning("could not mark the process non-dumpable")
    # Every proxied connection takes two descriptors (client and replica), plus some spare.
    raise_open_files_limit(2 * limits.max_total_connections + 1024)


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
    limits = options.config.limits
    harden(limits)
    processes = LocalRuntime(
        close_grace_s=options.config.termination_grace_s,
        records=ReplicaRecords(options.data_dir / "run" / "replicas"),
        log_limits=options.config.logs,
    )
    processes.reap_leftovers()  # only once the lock is ours: never another platform's replicas
    containers = ContainerRuntime(options.data_dir, options.container_engine)
    platform = Platform(options.config, options.data_dir, HostRuntime(processes, containers))
    budget = ConnectionBudget(limits.max_total_connections)
    gateway = GatewayServer(platform.router, limits, budget)
    runner: web.AppRunner | None = None
    kube_sock: socket.socket | None = None
    try:
        engine = await containers.prepare()  # leftovers go before restore starts containers
        await gateway.start(options.host, options.port, tls)
        info = {
            "gateway": f"{scheme}://{options.host}:{gateway.port}",
            "admin": f"{scheme}://{options.admin_host}:{options.admin_port}",
            "domain": options.config.domain,
            "dataDir": str(options.data_dir),
            "containers": engine,
        }
        origins = own_origins(scheme, options.admin_host, options.admin_port)
        # kubectl sends its token over https only: without TLS of the user's, the same app
        # answers on a second listener with a certificate of the platform's own CA.
        kube_tls, kube_ca = None, options.tls_cert
        info["kube"] = info["admin"]
        if tls is None or kube_ca is None:
            local = ensure_local_tls(options.data_dir, (options.admin_host,))
            kube_tls, kube_ca = server_context(local.cert, local.key), local.ca_cert
            kube_sock = listen(options.admin_host, options.kube_port)
            kube_port = kube_sock.getsockname()[1]
            info["kube"] = f"https://{dial_host(options.admin_host)}:{kube_port}"
            origins |= own_origins("https", options.admin_host, kube_port)
        open_paths = {"/healthz"} if options.metrics_need_token else {"/healthz", "/metrics"}
        security = AdminSecurity(token, origins, frozenset(open_paths))
        # aiohttp's keep-alive timeout runs from the connection's opening or its last response
        # until a whole request head is in: the header read timeout, for the admin API.
        runner = CappedAppRunner(
            build_app(platform, info, security),
            limits.admin_max_connections,
            budget,
            access_log=None,
            keepalive_timeout=limits.header_read_timeout_s,
        )
        await runner.setup()
        if kube_sock is not None:
            await web.SockSite(runner, kube_sock, ssl_context=kube_tls).start()
        # Written before the admin API answers, so whoever saw /healthz finds it current.
        info["kubeconfig"] = str(
            write_kubeconfig(options.data_dir, info["kube"], token, kube_ca.read_bytes())
        )
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
        cut_short = await wait_for_signal()
        await drain(gateway, limits.drain_timeout_s, cut_short)
    finally:
        await gateway.close()
        if runner is not None:
            await runner.cleanup()
        if kube_sock is not None:
            kube_sock.close()
        with contextlib.suppress(Exception):
            await platform.stop()
        lock.release()
