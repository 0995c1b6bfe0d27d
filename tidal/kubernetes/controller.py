"""`tidal kubernetes controller`: the platform in a pod, acting only while it holds the Lease.

The same Platform as `tidal up` (controller, autoscaler, scheduler, gateway, admin API) with the
Kubernetes store and runtime. A candidate waits for the Lease before it builds anything or
listens on a port, so only the leader is Ready behind the Services. When the Lease is lost or
the pod is told to stop, it stops acting and leaves the pods running for the next leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from tidal.api.config import PlatformConfig
from tidal.controller.admin import AdminSecurity, build_app
from tidal.controller.leader import LeaderElector, LeaseLock
from tidal.controller.outside import OutsideChanges
from tidal.controller.platform import Platform
from tidal.gateway.proxy import GatewayServer
from tidal.kubernetes.addresses import ServiceAddresses
from tidal.kubernetes.manifests import (
    ADMIN_PORT,
    GATEWAY,
    GATEWAY_PORT,
    LEASE,
    WEBHOOK_PORT,
    own_user,
)
from tidal.kubernetes.spec_watch import SpecWatch
from tidal.kubernetes.webhook import AdmissionWebhook
from tidal.runtime.deployments import placements_from_pools
from tidal.runtime.kubernetes import KubernetesRuntime
from tidal.security.tls import server_context
from tidal.store.kubernetes import RESOURCES, KubernetesStore, Resources, custom_resources

log = logging.getLogger("tidal.kubernetes")


@dataclass(frozen=True)
class ControllerOptions:
    config: PlatformConfig
    data_dir: Path  # metric history (SQLite) on the state volume
    identity: str
    lease_namespace: str
    token: str = ""  # the admin API's bearer token (the Secret tidal-admin-token)
    host: str = "0.0.0.0"
    port: int = GATEWAY_PORT
    admin_port: int = ADMIN_PORT
    # The admission webhook's certificate and key (the Secret tidal-webhook-tls); none: no webhook
    webhook_tls: tuple[Path, Path] | None = None
    webhook_port: int = WEBHOOK_PORT
    api_groups: str = "tidal"  # where the install put the CRDs (tidal.store.kubernetes)


class KnativeInstalled(Exception):
    """tidal was installed in Knative's API groups on a cluster that runs Knative Serving."""


def cluster_platform(
    config: PlatformConfig,
    data_dir: Path,
    api: ApiClient,
    namespace: str = "tidal-system",
    resources: Resources = RESOURCES,
) -> Platform:
    """The Platform on the Kubernetes store and runtime, tidal itself in `namespace`, its kinds
    where `resources` says."""
    store = KubernetesStore(api, resources)
    runtime = KubernetesRuntime(
        api,
        lambda namespace, name: store.get("Revision", namespace, name),
        placements_from_pools(config.pools),
        termination_grace_s=config.termination_grace_s,
        revision_api_version=resources["Revision"].api_version,
    )
    addresses = ServiceAddresses(api, f"{GATEWAY}.{namespace}.svc.cluster.local")
    return Platform(config, data_dir, runtime, store=store, addresses=addresses)


async def lead(platform: Platform, api: ApiClient, resources: Resources = RESOURCES) -> SpecWatch:
    """Start acting: rebuild the platform from the custom resources, then follow what kubectl
    writes to them. Close the returned watch when the lead ends."""
    await platform.start()
    outside = OutsideChanges(platform)
    spec_watch = SpecWatch(api, outside.changed, outside.deleted, resources)
    spec_watch.start()
    return spec_watch


def check_api_groups(api: ApiClient, resources: Resources) -> None:
    """Refuse to act on Knative's own kinds where Knative Serving runs: both controllers would
    act on every Service. Its Configurations, which tidal never installs, give it away."""
    group, version = resources["Service"].group, resources["Service"].version
    if group != "serving.knative.dev":
        return
    try:
        answer = client.CustomObjectsApi(api).get_api_resources(
            group, version, _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    served = json.loads(answer.data).get("resources") or []
    if any(r.get("name") == "configurations" for r in served):
        raise KnativeInstalled(
            "this cluster runs Knative Serving (it serves configurations.serving.knative.dev), "
            "and tidal was installed in Knative's own API groups: install tidal with "
            "`tidal kubernetes manifests --api-groups tidal` beside Knative"
        )


async def run_controller(options: ControllerOptions, api: ApiClient) -> None:
    """Wait for the Lease, then serve until SIGTERM/SIGINT or until the Lease is lost."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    resources = custom_resources(options.api_groups)
    check_api_groups(api, resources)
    elector = LeaderElector(LeaseLock(api, options.lease_namespace, LEASE), options.identity)
    acquired = asyncio.ensure_future(elector.acquire())
    await asyncio.wait(
        [acquired, asyncio.ensure_future(stop.wait())], return_when="FIRST_COMPLETED"
    )
    if not acquired.done():
        acquired.cancel()
        return
    log.info("%s leads", options.identity)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    platform = cluster_platform(
        options.config, options.data_dir, api, options.lease_namespace, resources
    )
    gateway = GatewayServer(platform.router)
    runner: web.AppRunner | None = None
    spec_watch: SpecWatch | None = None
    webhook: AdmissionWebhook | None = None
    try:
        spec_watch = await lead(platform, api, resources)
        if options.webhook_tls is not None:
            context = server_context(*options.webhook_tls)
            webhook = AdmissionWebhook(
                platform,
                own_user(options.lease_namespace),
                context,
                options.host,
                options.webhook_port,
                resources,
            )
            webhook.start()
        await gateway.start(options.host, options.port)
        info = {"gateway": f"http://{options.host}:{options.port}", "mode": "kubernetes"}
        security = AdminSecurity(options.token)  # no browser origin is its own
        runner = web.AppRunner(build_app(platform, info, security), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, options.host, options.admin_port).start()
        lost = asyncio.ensure_future(elector.hold())
        await asyncio.wait(
            [lost, asyncio.ensure_future(stop.wait())], return_when="FIRST_COMPLETED"
        )
        if lost.done():
            log.warning("%s lost the Lease; stopping", options.identity)
    finally:
        if spec_watch is not None:
            spec_watch.close()
        if webhook is not None:
            webhook.close()
        await gateway.close()
        if runner is not None:
            await runner.cleanup()
        assert isinstance(platform.runtime, KubernetesRuntime)
        platform.runtime.detach()  # the pods stay for the next leader
        with contextlib.suppress(Exception):
            await platform.stop()
