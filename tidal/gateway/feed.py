"""The controller's routing state, versioned for gateway processes (tidal.gateway.mirror).

Every change to a revision's throttler (endpoints, drain, failure, activator's place, added,
removed) or to a host's route bumps one counter and moves that entry to the end of a change log. A
gateway asks for what changed since the version it holds and gets only those entries, so a poll
costs what changed, not how many services exist; a gateway that holds another epoch (new, or
the controller restarted) gets the whole state. A gateway that is up to date waits (long poll)
until something changes, so a replica that becomes ready is routed to at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import OrderedDict
from typing import Any

from tidal.gateway.activator import RevisionThrottler
from tidal.gateway.routing import HostRoute, TrafficRouter

REVISION, HOST = "revision", "host"


class RoutingFeed:
    def __init__(self, router: TrafficRouter) -> None:
        self.router = router
        self.epoch = secrets.token_hex(8)
        self.version = 0
        self._log: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._changed = asyncio.Event()
        self.gateways: set[str] = set()  # ids of the gateways that asked
        router.throttlers.listen(self.changed)

    def changed(self, kind: str, key: str) -> None:
        self.version += 1
        entry = (kind, key)
        self._log[entry] = self.version
        self._log.move_to_end(entry)
        self._changed.set()

    def release(self) -> None:
        """Answer every waiting long poll now (shutdown: the admin API closes without waiting
        them out)."""
        self._changed.set()

    async def delta(
        self, epoch: str = "", since: int = 0, wait_s: float = 0.0, gateway: str = ""
    ) -> dict[str, Any]:
        """What changed after version `since` of `epoch`; everything if `epoch` is not this
        feed's. With nothing new, waits up to `wait_s` for a change first."""
        if gateway:
            self.gateways.add(gateway)
        if epoch == self.epoch and since >= self.version and wait_s > 0:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait_s)
        if epoch != self.epoch or since > self.version:
            return self.snapshot()
        revisions: dict[str, Any] = {}
        hosts: dict[str, Any] = {}
        for (kind, key), version in reversed(self._log.items()):
            if version <= since:
                break
            if kind == REVISION:
                throttler = self.router.throttlers.get(key)
                revisions[key] = None if throttler is None else revision_state(throttler)
            else:
                route = self.router.hosts.get(key)
                hosts[key] = None if route is None else host_split(route)
        return self._message(False, hosts, revisions)

    def snapshot(self) -> dict[str, Any]:
        """The whole routing state."""
        router = self.router
        return self._message(
            True,
            {host: host_split(route) for host, route in router.hosts.items()},
            {key: revision_state(t) for key, t in router.throttlers.items()},
        )

    def _message(
        self, full: bool, hosts: dict[str, Any], revisions: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "version": self.version,
            "full": full,
            "hosts": hosts,
            "revisions": revisions,
        }


def revision_state(t: RevisionThrottler) -> dict[str, Any]:
    return {
        "namespace": t.namespace,
        "service": t.service,
        "revision": t.revision,
        "containerConcurrency": t.cc,
        "timeoutSeconds": t.timeout_s,
        "responseStartTimeoutSeconds": t.response_start_s,
        "idleTimeoutSeconds": t.idle_s,
        "h2c": t.h2c,
        "queueDepth": t.queue_depth,
        "activatorInPath": t.activator_in_path,
        "pendingCap": t.pending_cap,  # what gateways before `activatorInPath` read
        "failure": t.failure,
        "endpoints": [[e.replica_id, e.host, e.port, e.draining] for e in t.endpoints],
    }


def host_split(route: HostRoute) -> list[list[Any]]:
    percents = [b - a for a, b in zip((0, *route.cumulative), route.cumulative, strict=False)]
    return [[key, pct] for key, pct in zip(route.revisions, percents, strict=True)]


def feed_of(router: TrafficRouter) -> RoutingFeed:
    """The router's feed, made on first use (it tracks changes from then on)."""
    if not isinstance(router.feed, RoutingFeed):
        router.feed = RoutingFeed(router)
    return router.feed
