"""The gateway as a process of its own: it mirrors the controller's routing state and reports its
request stats back, as Knative's activator does with the autoscaler (docs/autoscaling.md#metrics,
docs/autoscaling.md#activator-and-queue-proxy). `tidal up` runs its data plane this way, and
`tidal gateway` adds more such processes.

The controller versions its routing state (tidal.gateway.feed): the host table, and per revision
its containerConcurrency, timeout, queue depth, the activator's place (for the pending cap),
failure and ready endpoints. A gateway long-polls it for what changed since the version it holds
and applies that to its own `TrafficRouter`, so a poll costs what changed, not how many services
exist. Every second it posts each active revision's average and peak concurrency, request count,
in-flight requests per replica, answers per status code with their latency histogram, and cold
starts; it pokes the controller at once on the first request for a revision with no free
replica, and tells it of a replica that refused a connection. The controller adds these stats
to its own, so the autoscaler and /metrics see revision totals however many gateways there are.
While the controller does not answer, the gateway keeps routing with the last state it has.

containerConcurrency is enforced by each gateway on its own requests: exact with one gateway, up to
N x CC per replica with N gateways (Knative splits replicas between activators instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from typing import Any

import aiohttp

from tidal.api.config import GatewayLimits
from tidal.gateway.activator import Endpoint, RevisionThrottler
from tidal.gateway.feed import host_split, revision_state
from tidal.gateway.routing import HostRoute, TrafficRouter
from tidal.security.tls import client_context

log = logging.getLogger("tidal.gateway")
LONG_POLL_S = 10.0  # how long the controller holds a poll with nothing new
RETRY_S = 0.5  # between polls while the controller does not answer
STATS_PERIOD_S = 0.5


def routing_snapshot(router: TrafficRouter) -> dict[str, Any]:
    """The whole routing state of `router`, as a gateway gets it on its first poll."""
    return {
        "full": True,
        "hosts": {host: host_split(route) for host, route in router.hosts.items()},
        "revisions": {key: revision_state(t) for key, t in router.throttlers.items()},
    }


def apply_snapshot(
    router: TrafficRouter,
    snapshot: dict[str, Any],
    on_first_request: Any,
    cold_starts: dict[str, list[float]] | None = None,
) -> None:
    """Make `router` route as the controller's state says: the whole of it (`full`), or what
    changed (a revision or host given as null is gone). Throttlers keep their waiters and stats.
    A new endpoint that ends a cold start of this gateway adds its duration to `cold_starts`."""
    revisions = snapshot["revisions"]
    full = snapshot.get("full", True)
    if full:
        for key in set(router.throttlers) - set(revisions):
            router.throttlers.pop(key).fail("revision removed")
    for key, state in revisions.items():
        throttler = router.throttlers.get(key)
        if state is None:
            if throttler is not None:
                router.throttlers.pop(key).fail("revision removed")
            continue
        if throttler is None:
            throttler = RevisionThrottler(
                state["namespace"],
                state["service"],
                state["revision"],
                state["containerConcurrency"],
                state["timeoutSeconds"],
                state["queueDepth"],
                on_first_request=lambda _, key=key: on_first_request(key),
                response_start_s=state["responseStartTimeoutSeconds"],
                idle_s=state["idleTimeoutSeconds"],
                h2c=state["h2c"],
            )
            router.throttlers[key] = throttler
        throttler.activator_in_path = state["activatorInPath"]
        cold = _sync_endpoints(throttler, state["endpoints"])
        if cold is not None and cold_starts is not None:
            cold_starts.setdefault(key, []).append(cold)
        if state["failure"] is None:
            throttler.failure = None
        elif throttler.failure is None:
            throttler.fail(state["failure"])
    hosts = {} if full else dict(router.hosts)
    for host, split in snapshot["hosts"].items():
        route = None if split is None else HostRoute.from_split([(k, int(p)) for k, p in split])
        if route is not None and route.revisions:
            hosts[host] = route
        else:
            hosts.pop(host, None)
    router.hosts = hosts  # one assignment: the next request sees the whole change


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
    """One period of the stats of every revision that saw requests, in the shape the
    controller's endpoint takes: for the autoscaler, and the answers per status code (with
    their latency sum and histogram counts) and cold starts for its /metrics (taken, so each is
    reported once)."""
    answered: dict[str, dict[str, int]] = {}
    latency: dict[str, dict[str, list[float]]] = {}
    for (key, code), answers in (router.answered or {}).items():
        answered.setdefault(key, {})[str(code)] = int(answers[0])
        latency.setdefault(key, {})[str(code)] = answers[1:]
    if router.answered is not None:
        router.answered = {}
    colds = cold_starts or {}
    stats = {}
    for key, throttler in router.throttlers.items():
        window = throttler.stats
        busy = window.in_flight or window.requests or window.peak
        if not (busy or key in answered or key in colds):
            continue  # idle all period: nothing to say (and nothing to collect)
        concurrency, count, peak = window.collect(period_start, now)
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
                "latency": latency.get(key, {}),
                "coldStarts": cold,
                "latencies": latencies,
            }
    return stats


class Unauthorized(Exception):
    """The controller refused this gateway's token."""


class ControllerLink:
    """Follows the controller's routing state (long polls) and posts stats and pokes to it."""

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
        self.epoch = ""  # of the routing state held, and its version
        self.version = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._sends: set[asyncio.Task[None]] = set()
        self.cold_starts: dict[str, list[float]] = {}
        self._period_start = time.monotonic()  # of the stats not reported yet
        self._failing: set[str] = set()  # kinds of sends that failed last time
        router.answered = {}  # counted here, shown in the controller's /metrics
        router.on_unreachable = self.unreachable

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
                await self._poll_once(0.0)
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
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("waiting for the controller at %s: %s", self.base, exc)
                await asyncio.sleep(1.0)
        self._tasks = [asyncio.ensure_future(self._poll()), asyncio.ensure_future(self._report())]

    async def close(self) -> None:
        """Stop following; a last stats report tells the controller what this gateway
        answered since the previous one, and that it holds no request any more."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._report_once(), 2.0)
        for task in self._sends:
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def poke(self, key: str) -> None:
        """A first request found no free replica of `key`: the controller's autoscaler hears
        of it at once (its stats come a second later)."""
        self._send("poke", {"gateway": self.gateway_id, "revision": key})

    def unreachable(self, key: str, replica_id: str) -> None:
        """A replica refused a connection: the controller replaces it."""
        body = {"gateway": self.gateway_id, "revision": key, "unreachable": replica_id}
        self._send("poke", body)

    def _send(self, path: str, body: dict[str, Any]) -> None:
        task = asyncio.ensure_future(self._post(path, body))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _poll_once(self, wait_s: float) -> None:
        assert self.session is not None
        query = {
            "epoch": self.epoch,
            "since": str(self.version),
            "wait": str(wait_s),
            "gateway": self.gateway_id,
        }
        timeout = aiohttp.ClientTimeout(total=wait_s + 10)
        async with self.session.get(f"{self.base}/state", params=query, timeout=timeout) as answer:
            answer.raise_for_status()
            state = await answer.json()
        try:
            apply_snapshot(self.router, state, self.poke, self.cold_starts)
        except (KeyError, TypeError, AttributeError) as exc:
            # E.g. a controller of another tidal version, in a rolling upgrade: route with the
            # state held, and ask again.
            raise ValueError(f"routing state this gateway cannot read ({exc!r})") from None
        self.epoch, self.version = state.get("epoch", ""), int(state.get("version", 0))

    async def _poll(self) -> None:
        failing = False
        while True:
            try:
                await self._poll_once(LONG_POLL_S)
                if failing:
                    log.warning("routing state from the controller again")
                failing = False
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                if not failing:
                    log.warning(
                        "cannot read routing state from the controller (routing with the last "
                        "state it sent): %s",
                        _describe(exc),
                    )
                failing = True
                await asyncio.sleep(RETRY_S)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(STATS_PERIOD_S)
            await self._report_once()

    async def _report_once(self) -> None:
        now = time.monotonic()
        stats = collect_stats(self.router, self._period_start, now, self.cold_starts)
        self._period_start = now
        await self._post("stats", {"gateway": self.gateway_id, "revisions": stats})

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        """Send; a failure is logged once until a send of the same kind succeeds again."""
        assert self.session is not None
        try:
            async with self.session.post(f"{self.base}/{path}", json=body) as response:
                response.raise_for_status()
            self._failing.discard(path)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if path not in self._failing:
                self._failing.add(path)
                log.warning("cannot send %s to the controller: %s", path, _describe(exc))


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def run_gateway(
    controller: str,
    host: str,
    port: int,
    gateway_id: str,
    token: str | None = None,
    ca_cert: str | None = None,
    limits: GatewayLimits | None = None,
    sock: socket.socket | None = None,
    tls: ssl.SSLContext | None = None,
) -> None:
    """`tidal gateway` (and each gateway worker of `tidal up`): serve requests with the
    controller's routing until SIGINT/SIGTERM, then drain (in-flight requests finish, up to the
    drain timeout) while still following the controller, so held requests still find replicas.
    With `sock`, serve on that listening socket (one `tidal up` shares among its workers)."""
    from tidal.gateway.limits import ConnectionBudget
    from tidal.gateway.proxy import GatewayServer
    from tidal.gateway.shutdown import drain, wait_for_signal

    limits = limits or GatewayLimits()
    router = TrafficRouter()
    link = ControllerLink(router, controller, gateway_id, token, ca_cert)
    server = GatewayServer(router, limits, ConnectionBudget(limits.max_total_connections))
    await link.start()
    await server.start(host, port, tls, sock=sock)
    scheme = "https" if tls else "http"
    log.warning(
        "gateway %s on %s://%s:%d, routing from %s",
        gateway_id,
        scheme,
        host,
        server.port,
        controller,
    )
    try:
        cut_short = await wait_for_signal()
        await drain(server, limits.drain_timeout_s, cut_short)
    finally:
        await server.close()
        await link.close()
