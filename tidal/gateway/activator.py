"""The activator: per-revision admission of requests to replicas.

It plays Knative's activator and queue-proxy breaker together
(docs/autoscaling.md#activator-and-queue-proxy, docs/autoscaling.md#readiness-probe):
- `containerConcurrency` (CC) > 0 is a hard per-replica limit; CC = 0 means unlimited;
- a request that finds no free slot (no replica yet, or all full) waits, bounded by the revision's
  `timeoutSeconds` (504) and a pending cap (immediate 503 past it): the activator's queue depth
  while Knative's activator would be in the path, each replica's queue-proxy's out of it;
- replicas are picked by least in-flight requests;
- a revision that failed answers at once with 503 and the reason, instead of holding requests.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tidal.gateway.router import RouteError
from tidal.gateway.stats import RevisionStats

# Knative's queue-proxy holds this many waiting requests per containerConcurrency slot of its
# pod (its breaker's queue depth is 10 x CC).
QUEUE_PER_SLOT = 10


def pending_cap(
    container_concurrency: int, ready: int, activator_in_path: bool, queue_depth: int
) -> int:
    """How many requests a revision may hold waiting (503 past it), as in Knative: while its
    activator is in the path (SKS Proxy mode, or no replica ready; at zero, say) the activator
    holds up to its queue depth (`gateway.pending-cap-default`, Knative's 10,000), so a burst
    at a revision scaled to zero waits for its replicas; out of the path each ready replica's
    queue-proxy holds 10 x CC (with CC 0 it has no limit: the queue depth again)."""
    if container_concurrency and ready and not activator_in_path:
        return QUEUE_PER_SLOT * container_concurrency * ready
    return queue_depth


@dataclass(eq=False)
class Endpoint:
    replica_id: str
    host: str
    port: int
    in_flight: int = 0
    draining: bool = False


class RevisionThrottler:
    def __init__(
        self,
        namespace: str,
        service: str,
        revision: str,
        container_concurrency: int,
        timeout_s: float,
        queue_depth: int,
        on_first_request: Callable[[RevisionThrottler], None] = lambda _: None,
        response_start_s: float = 0.0,
        idle_s: float = 0.0,
        h2c: bool = False,
    ) -> None:
        self.namespace = namespace
        self.service = service
        self.revision = revision
        self.cc = container_concurrency
        # The revision's timeouts (0: none), each counted from a request's arrival
        # (docs/architecture.md#timeouts).
        self.timeout_s = timeout_s
        self.response_start_s = response_start_s
        self.idle_s = idle_s
        self.h2c = h2c  # its replicas speak HTTP/2 without TLS (port name h2c)
        # The longest a request may wait for a slot: any of the three ends the wait.
        self.wait_s = min(t for t in (timeout_s, response_start_s, idle_s) if t > 0)
        self.queue_depth = queue_depth  # gateway.pending-cap-default
        # Whether Knative's activator would be in the path: the autoscaler's SKS mode is Proxy.
        self._activator_in_path = True
        self.on_first_request = on_first_request
        # Called after each change gateway processes must see (tidal.gateway.feed).
        self.on_change: Callable[[], None] | None = None
        self.endpoints: list[Endpoint] = []
        self.stats = RevisionStats()
        self.failure: str | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.cold_start_began: float | None = None
        # Requests in flight per replica in other gateway processes (tidal.gateway.mirror),
        # and when one last reported.
        self.remote_in_flight: dict[str, dict[str, int]] = {}
        self.remote_seen = -1e9

    @property
    def pending_cap(self) -> int:
        return pending_cap(self.cc, self.ready_count(), self._activator_in_path, self.queue_depth)

    @property
    def activator_in_path(self) -> bool:
        return self._activator_in_path

    @activator_in_path.setter
    def activator_in_path(self, value: bool) -> None:
        if value != self._activator_in_path:
            self._activator_in_path = value
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    @property
    def pending(self) -> int:
        return len(self._waiters)

    def ready_count(self) -> int:
        return sum(1 for e in self.endpoints if not e.draining)

    def in_flight_total(self) -> int:
        """Requests in flight here and, as last reported, in other gateway processes."""
        remote = sum(sum(counts.values()) for counts in self.remote_in_flight.values())
        return self.stats.in_flight + remote

    def in_flight_of(self, replica_id: str) -> int:
        """Requests on this replica, in this gateway and the others."""
        remote = sum(counts.get(replica_id, 0) for counts in self.remote_in_flight.values())
        for endpoint in self.endpoints:
            if endpoint.replica_id == replica_id:
                return endpoint.in_flight + remote
        return remote

    # -- request path -------------------------------------------------------------------------

    async def acquire(self, deadline: float) -> Endpoint:
        """A slot on the least-loaded replica; waits while none is free (see module doc)."""
        if self.failure is not None:
            raise RouteError(503, self.failure, self.revision)
        first = self.stats.in_flight == 0
        self.stats.arrive()
        try:
            # Requests already waiting go first; a newcomer queues behind them.
            endpoint = None if self._waiters else self._pick()
            if endpoint is None:
                if first:
                    self.on_first_request(self)
                endpoint = await self._wait_for_slot(deadline)
        except BaseException:
            self.stats.depart()
            raise
        endpoint.in_flight += 1
        return endpoint

    def release(self, endpoint: Endpoint) -> None:
        endpoint.in_flight -= 1
        self.stats.depart()
        self._wake(1)

    def _pick(self) -> Endpoint | None:
        best: Endpoint | None = None
        for endpoint in self.endpoints:
            if endpoint.draining or (self.cc and endpoint.in_flight >= self.cc):
                continue
            if best is None or endpoint.in_flight < best.in_flight:
                best = endpoint
        return best

    async def _wait_for_slot(self, deadline: float) -> Endpoint:
        cap = self.pending_cap
        if len(self._waiters) >= cap:
            why = (
                ""
                if cap == self.queue_depth
                else f": {QUEUE_PER_SLOT} x CC {self.cc} per ready replica"
            )
            raise RouteError(503, f"pending request queue full ({cap} waiting{why})", self.revision)
        if self.ready_count() == 0 and self.cold_start_began is None:
            self.cold_start_began = time.monotonic()
        loop = asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise RouteError(
                    504,
                    f"activator request timeout: no replica of {self.revision} had a free slot "
                    f"within {self.wait_s:g}s",
                    self.revision,
                ) from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if self.failure is not None:
                raise RouteError(503, self.failure, self.revision)
            endpoint = self._pick()
            if endpoint is not None:
                return endpoint

    def _wake(self, count: int) -> None:
        while count > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    # -- control path -------------------------------------------------------------------------

    def add_endpoint(self, endpoint: Endpoint) -> float | None:
        """A replica became ready. Returns the cold-start duration if this ended one."""
        self.endpoints.append(endpoint)
        self.failure = None
        cold_start = None
        if self.cold_start_began is not None:
            cold_start = time.monotonic() - self.cold_start_began
            self.cold_start_began = None
        self._wake(len(self._waiters))
        self._changed()
        return cold_start

    def remove_endpoint(self, replica_id: str) -> None:
        self.endpoints = [e for e in self.endpoints if e.replica_id != replica_id]
        self._changed()

    def drain(self, replica_id: str) -> None:
        """Stop sending new requests to a replica; in-flight ones go on."""
        for endpoint in self.endpoints:
            if endpoint.replica_id == replica_id and not endpoint.draining:
                endpoint.draining = True
                self._changed()

    def fail(self, reason: str) -> None:
        """Answer waiting and new requests with 503 `reason` until a replica becomes ready."""
        self.failure = reason
        self._wake(len(self._waiters))
        self._changed()
