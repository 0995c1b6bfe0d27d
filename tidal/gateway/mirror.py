"""The gateway as a process of its own: it mirrors the controller's routing state and reports its
request stats back, as Knative's activator does with the autoscaler (docs/autoscaling.md#metrics,
docs/autoscaling.md#activator-and-queue-proxy).

The controller publishes one snapshot (`routing_snapshot`): the host table, and per revision its
containerConcurrency, timeout, pending cap, failure and ready endpoints. A gateway polls it and
applies it to its own `TrafficRouter`; every second it posts each revision's average and peak
concurrency, request count and in-flight requests per replica, and it pokes the controller at once
on the first request for a revision with no free replica. The controller adds these stats to its
own, so the autoscaler sees revision totals however many gateways there are.

containerConcurrency is enforced by each gateway on its own requests: exact with one gateway, up to
N x CC per replica with N gateways (Knative splits replicas between activators instead).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from tidal.api.config import GatewayLimits
from tidal.gateway.activator import Endpoint, RevisionThrottler
from tidal.gateway.routing import TrafficRouter
from tidal.security.tls import client_context

log = logging.getLogger("tidal.gateway")
POLL_PERIOD_S = 0.2
STATS_PERIOD_S = 1.0


def routing_snapshot(router: TrafficRouter) -> dict[str, Any]:
    """What a remote gateway needs to route exactly like the controller's own gateway."""
    return {
        "hosts": {
            host: [
                [key, pct]
                for key, pct in zip(route.revisions, _percents(route.cumulative), strict=True)
            ]
            for host, route in router.hosts.items()
        },
        "revisions": {
            key: {
                "namespace": t.namespace,
                "service": t.service,
                "revision": t.revision,
                "containerConcurrency": t.cc,
                "timeoutSeconds": t.timeout_s,
                "pendingCap": t.pending_cap,
                "failure": t.failure,
                "endpoints": [[e.replica_id, e.host, e.port, e.draining] for e in t.endpoints],
            }
            for key, t in router.throttlers.items()
        },
    }


def _percents(cumulative: tuple[int, ...]) -> list[int]:
    return [b - a for a, b in zip((0, *cumulative), cumulative, strict=False)]


def apply_snapshot(
    router: TrafficRouter,
    snapshot: dict[str, Any],
    on_first_request: Any,
    cold_starts: dict[str, list[float]] | None = None,
) -> None:
    """Make `router` route as the snapshot says; throttlers keep their waiters and stats. A new
    endpoint that ends a cold start of this gateway adds its duration to `cold_starts`."""
    revisions = snapshot["revisions"]
    for key in set(router.throttlers) - set(revisions):
        router.throttlers.pop(key).fail("revision removed")
    for key, state in revisions.items():
        throttler = router.throttlers.get(key)
        if throttler is None:
            throttler = RevisionThrottler(
                state["namespace"],
                state["service"],
                state["revision"],
                state["containerConcurrency"],
                state["timeoutSeconds"],
                state["pendingCap"],
                on_first_request=lambda _, key=key: on_first_request(key),
            )
            router.throttlers[key] = throttler
        throttler.pending_cap = state["pendingCap"]
        cold = _sync_endpoints(throttler, state["endpoints"])
        if cold is not None and cold_starts is not None:
            cold_starts.setdefault(key, []).append(cold)
        if state["failure"] is None:
            throttler.failure = None
        elif throttler.failure is None:
            throttler.fail(state["failure"])
    router.set_hosts(
        set(router.hosts),
        {
            host: [(key, int(pct)) for key, pct in split]
            for host, split in snapshot["hosts"].items()
        },
    )


def _sync_endpoints(throttler: RevisionThrottler, wanted: list[list[Any]]) -> float | None:
    """Returns the duration of the cold start a new endpoint ended, if any."""
    by_id = {e.replica_id: e for e in throttler.endpoints}
    cold = None
    for replica_id, host, port, draining in wanted:
        endpoint = by_id.pop(replica_id, None)
        if endpoint is None:
            ended = throttler.add_endpoint(Endpoint(replica_id, host, port, draining=draining))
            cold = ended if ended is not None else cold
        elif draining:
            throttler.drain(replica_id)
    for replica_id in by_id:  # gone from the controller: no new requests, in-flight finish
        throttler.remove_endpoint(replica_id)
    return cold


def collect_stats(
    router: TrafficRouter,
    period_start: float,
    now: float,
    cold_starts: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """One period of every revision's stats, in the shape the controller's endpoint takes:
    for the autoscaler, and the answers per status code and cold starts for its /metrics
    (both taken, so each is reported once)."""
    answered: dict[str, dict[str, int]] = {}
    for (key, code), count in (router.answered or {}).items():
        answered.setdefault(key, {})[str(code)] = count
    if router.answered is not None:
        router.answered = {}
    colds = cold_starts or {}
    stats = {}
    for key, throttler in router.throttlers.items():
        concurrency, count, peak = throttler.stats.collect(period_start, now)
        in_flight = {e.replica_id: e.in_flight for e in throttler.endpoints if e.in_flight}
        codes, cold = answered.get(key, {}), colds.pop(key, [])
        latencies = throttler.stats.take_latencies()
        if concurrency or count or in_flight or codes or cold or latencies:
            stats[key] = {
                "concurrency": concurrency,
                "requests": count,
                "peak": peak,
                "inFlight": in_flight,
                "codes": codes,
                "coldStarts": cold,
                "latencies": latencies,
            }
    return stats


class Unauthorized(Exception):
    """The controller refused this gateway's token."""


class ControllerLink:
    """Polls the controller's routing state and posts stats and pokes to it."""

    def __init__(
        self,
        router: TrafficRouter,
        controller: str,
        gateway_id: str,
        token: str | None = None,
        ca_cert: str | None = None,
    ) -> None:
        self.router = router
        self.base = controller.rstrip("/") + "/apis/tidal.dev/v1/gateway"
        self.gateway_id = gateway_id
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.tls = client_context(ca_cert) if self.base.startswith("https:") else None
        self.session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pokes: set[asyncio.Task[None]] = set()
        self.cold_starts: dict[str, list[float]] = {}
        router.answered = {}  # counted here, shown in the controller's /metrics

    async def start(self) -> None:
        """Returns once the first routing state has arrived (retrying while the controller is
        not up yet), so that the gateway routes from its first request on."""
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=5),
            headers=self.headers,
            connector=aiohttp.TCPConnector(ssl=self.tls) if self.tls else None,
        )
        while True:
            try:
                await self._poll_once()
                break
            except aiohttp.ClientResponseError as exc:
                if exc.status in (401, 403):
                    await self.session.close()
                    raise Unauthorized(
                        f"the controller at {self.base} refused this gateway ({exc.status}): "
                        "pass its admin token with --token, TIDAL_TOKEN or --token-file"
                    ) from None
                log.warning("waiting for the controller at %s: %s", self.base, exc)
                await asyncio.sleep(1.0)
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("waiting for the controller at %s: %s", self.base, exc)
                await asyncio.sleep(1.0)
        self._tasks = [asyncio.ensure_future(self._poll()), asyncio.ensure_future(self._report())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def poke(self, key: str) -> None:
        task = asyncio.ensure_future(
            self._post("poke", {"gateway": self.gateway_id, "revision": key})
        )
        self._pokes.add(task)
        task.add_done_callback(self._pokes.discard)

    async def _poll_once(self) -> None:
        assert self.session is not None
        async with self.session.get(f"{self.base}/state") as response:
            response.raise_for_status()
            apply_snapshot(self.router, await response.json(), self.poke, self.cold_starts)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_PERIOD_S)
            try:
                await self._poll_once()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("cannot read routing state from the controller: %s", exc)

    async def _report(self) -> None:
        period_start = time.monotonic()
        while True:
            await asyncio.sleep(STATS_PERIOD_S)
            now = time.monotonic()
            stats = collect_stats(self.router, period_start, now, self.cold_starts)
            period_start = now
            await self._post("stats", {"gateway": self.gateway_id, "revisions": stats})

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        assert self.session is not None
        try:
            async with self.session.post(f"{self.base}/{path}", json=body) as response:
                response.raise_for_status()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("cannot send %s to the controller: %s", path, exc)


async def run_gateway(
    controller: str,
    host: str,
    port: int,
    gateway_id: str,
    token: str | None = None,
    ca_cert: str | None = None,
    limits: GatewayLimits | None = None,
) -> None:
    """`tidal gateway`: serve requests with the controller's routing until SIGINT/SIGTERM, then
    drain (in-flight requests finish, up to the drain timeout) while still following the
    controller, so held requests still find replicas."""
    from tidal.gateway.limits import ConnectionBudget
    from tidal.gateway.proxy import GatewayServer
    from tidal.gateway.shutdown import drain, wait_for_signal

    limits = limits or GatewayLimits()
    router = TrafficRouter()
    link = ControllerLink(router, controller, gateway_id, token, ca_cert)
    server = GatewayServer(router, limits, ConnectionBudget(limits.max_total_connections))
    await link.start()
    await server.start(host, port)
    log.warning(
        "gateway %s on http://%s:%d, routing from %s", gateway_id, host, server.port, controller
    )
    try:
        cut_short = await wait_for_signal()
        await drain(server, limits.drain_timeout_s, cut_short)
    finally:
        await server.close()
        await link.close()
