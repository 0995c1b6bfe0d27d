"""The contract between the HTTP proxy (`tidal.gateway.proxy`) and request routing/activation.

The proxy parses a request head, asks the router for a `Lease` on one replica, streams the request
to it and the response back, then releases the lease with the status it sent. The router decides
which revision and which replica (and may hold the request while replicas start); the proxy knows
nothing about revisions beyond the name it puts in the response header.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from tidal.gateway.hosts import is_cluster_local


class RouteError(Exception):
    """A request that cannot be routed; the proxy answers `status` with `reason` as the body."""

    def __init__(self, status: int, reason: str, revision: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.revision = revision


@dataclass
class Lease:
    """One reserved slot on one replica, held for the life of one request."""

    host: str
    port: int
    revision: str
    namespace: str
    deadline: float  # time.monotonic() by which the whole response must be complete
    replica_id: str = ""
    started: float = field(default_factory=time.monotonic)
    _on_release: object = None  # callable(lease, status) set by the router
    _released: bool = False
    response_start_s: float = 0.0  # the response must start this long after `started` (0: any)
    idle_s: float = 0.0  # the replica must send a byte at least this often (0: no limit)
    h2c: bool = False  # the replica speaks HTTP/2 without TLS, not HTTP/1.1

    def next_timeout(self, responded: bool, last_byte: float) -> tuple[float, str]:
        """When the request times out next, and why: its revision's timeoutSeconds, or sooner
        its responseStartTimeoutSeconds (until the response starts) or idleTimeoutSeconds
        (counted from the replica's last bytes, `last_byte`), each from the request's arrival
        as in Knative (docs/architecture.md#timeouts)."""
        at, reason = self.deadline, "upstream request timeout"
        if self.response_start_s and not responded:
            start_by = self.started + self.response_start_s
            if start_by < at:
                at = start_by
                reason = (
                    f"no response within responseStartTimeoutSeconds ({self.response_start_s:g}s)"
                )
        if self.idle_s and last_byte + self.idle_s < at:
            at = last_byte + self.idle_s
            reason = f"nothing from the replica within idleTimeoutSeconds ({self.idle_s:g}s)"
        return at, reason

    def release(self, status: int) -> None:
        """Give the slot back. Safe to call more than once; only the first call counts."""
        if self._released:
            return
        self._released = True
        if self._on_release is not None:
            self._on_release(self, status)  # type: ignore[operator]


async def lease_for(router: Router, host: str, path: str, cluster_client: bool) -> Lease:
    """The router's lease for a request to `host`; a cluster-local host answers only clients
    in the cluster networks (tidal.gateway.hosts), others get the 404 of an unknown host."""
    if not cluster_client and is_cluster_local(host):
        raise RouteError(404, f"no service answers host {host!r}")
    return await router.acquire(host, path)


class Router(Protocol):
    async def acquire(self, host: str, path: str) -> Lease:
        """Pick a revision for `host` and wait for a replica slot on it.

        Raises RouteError: 404 for an unknown host, 503 when the revision failed or its pending
        queue is full, 504 when its timeout passes before a slot frees.
        """
        ...

    def retry(self, lease: Lease) -> None:
        """The replica behind `lease` refused the connection: mark it suspect and release the
        lease without counting a response. The proxy then calls `acquire` again."""
        ...
