"""`tidal up`: the control plane (admin API, controller) in this process, the data plane in
gateway worker processes of its own (tidal.gateway.workers) sharing the gateway's port.

The workers follow the controller's routing state and report their stats back, as `tidal gateway`
does (tidal.gateway.mirror), so nothing the controller does (apply, GC, planning, restore) can
delay a request that has a ready replica, and a worker keeps serving from its last routing state
while the controller is busy. This process binds the gateway's socket and passes it to the
workers; a worker that dies is restarted.

Shutdown (SIGTERM/SIGINT) drains: the workers stop accepting and in-flight requests get up to the
drain timeout to finish (the controller keeps running meanwhile, so held requests still get
replicas); then the admin API closes and the controller stops every replica (SIGTERM, then
SIGKILL after the termination grace period). A second signal cuts the drain short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tidal.api.config import GatewayLimits, PlatformConfig
from tidal.cli.kubeconfig import write_kubeconfig
from tidal.controller.admin import AdminSecurity, build_app, own_origins
from tidal.controller.platform import Platform
from tidal.controller.up_manifests import load_record, object_key, save_record, to_apply
from tidal.gateway.feed import feed_of
from tidal.gateway.limits import ConnectionBudget, capped
from tidal.gateway.shutdown import wait_for_signal
from tidal.gateway.workers import GatewayWorkers, WorkerOptions
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
    gateway_workers: int = 1  # gateway processes sharing the gateway's port


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


def listen(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), bound before the app is built so
    that its real port is known."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)


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
    containers = ContainerRuntime(
        options.data_dir,
        options.container_engine,
        close_grace_s=options.config.termination_grace_s,
        log_limits=options.config.logs,
    )
    platform = Platform(options.config, options.data_dir, HostRuntime(processes, containers))
    budget = ConnectionBudget(limits.max_total_connections)
    runner: web.AppRunner | None = None
    kube_sock: socket.socket | None = None
    admin_sock: socket.socket | None = None
    gateway_sock: socket.socket | None = None
    workers: GatewayWorkers | None = None
    try:
        engine = await containers.prepare()  # leftovers go before restore starts containers
        # Bound here, so that the printed addresses carry the real ports (also for port 0).
        gateway_sock = listen(options.host, options.port, backlog=1024)
        admin_sock = listen(options.admin_host, options.admin_port)
        admin_port = admin_sock.getsockname()[1]
        info = {
            "gateway": f"{scheme}://{options.host}:{gateway_sock.getsockname()[1]}",
            "admin": f"{scheme}://{options.admin_host}:{admin_port}",
            "domain": options.config.domain,
            "dataDir": str(options.data_dir),
            "containers": engine,
            "gatewayWorkers": options.gateway_workers,
        }
        origins = own_origins(scheme, options.admin_host, admin_port)
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
        await web.SockSite(runner, admin_sock, ssl_context=tls).start()
        record_server(
            local_urls(scheme, options.admin_host, admin_port),
            options.data_dir / TOKEN_FILE,
            options.tls_cert,
        )
        workers = GatewayWorkers(
            options.gateway_workers,
            gateway_sock,
            WorkerOptions(
                controller=f"{scheme}://{dial_host(options.admin_host)}:{admin_port}",
                token_file=options.data_dir / TOKEN_FILE,
                limits=limits,
                ca_cert=options.tls_cert if tls else None,
                tls_cert=options.tls_cert,
                tls_key=options.tls_key,
            ),
            on_exit=lambda worker: platform.gateway_stats(worker, {}),
        )
        feed = feed_of(platform.router)  # tracks routing changes from before the first worker
        await workers.start()  # their start-up overlaps the restore below
        await platform.start()
        info["kept"] = _apply_manifests(platform, options)
        await _workers_routing(feed.gateways, workers.ids, limits.drain_timeout_s)
        on_ready(platform, info)
        cut_short = await wait_for_signal()
        await _drain(workers, gateway_sock, limits.drain_timeout_s, cut_short)
    finally:
        if workers is not None:
            await workers.stop(5.0)
        if gateway_sock is not None:
            gateway_sock.close()
        if runner is not None:
            await runner.cleanup()
        for sock in (admin_sock, kube_sock):
            if sock is not None:
                sock.close()
        with contextlib.suppress(Exception):
            await platform.stop()
        lock.release()


async def _workers_routing(seen: set[str], ids: set[str], timeout: float) -> None:
    """Wait (up to `timeout`) until every worker has the routing state, so that the gateway
    routes from the moment `tidal up` says it is up."""
    deadline = time.monotonic() + timeout
    while not ids <= seen:
        if time.monotonic() > deadline:
            log.warning("gateway workers %s have no routing state yet", sorted(ids - seen))
            return
        await asyncio.sleep(0.02)


async def _drain(
    workers: GatewayWorkers, sock: socket.socket, timeout: float, cut_short: asyncio.Event
) -> None:
    """Stop accepting (close our copy of the gateway socket, the workers close theirs) and let
    the workers finish their in-flight requests, up to `timeout`; a second signal cuts it."""
    sock.close()
    workers.signal(signal.SIGTERM)
    waiting = asyncio.ensure_future(workers.wait(timeout + 5.0))
    interrupted = asyncio.ensure_future(cut_short.wait())
    await asyncio.wait((waiting, interrupted), return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        workers.signal(signal.SIGTERM)  # the worker's second signal: cut the drain
        await waiting
    interrupted.cancel()


def _apply_manifests(platform: Platform, options: ServeOptions) -> list[str]:
    """Apply the `-f` manifests that are new or changed since an earlier start
    (tidal.controller.up_manifests); returns the keys of those kept as stored."""
    if not options.manifests:
        return []
    record = load_record(options.data_dir)
    todo = to_apply(
        options.manifests,
        record,
        lambda key: platform.store.get(*key.split("/", 2)) is not None,
    )
    if todo:
        platform.apply(todo)
    save_record(options.data_dir, record, options.manifests)
    return [object_key(doc) for doc in options.manifests if doc not in todo]
