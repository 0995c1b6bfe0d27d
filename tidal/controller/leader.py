"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

One controller acts; the others wait. The leader renews the Lease every `renew_s`; a candidate
takes it over once the holder has not renewed for `leaseDurationSeconds`. Expiry is judged by
when this candidate *observed* the record change, not by the renewTime written in it, so clock
skew between nodes does not matter (client-go's rule). Writes carry the resourceVersion read, so
of two candidates racing for an expired Lease exactly one wins.

`decide` is the whole decision, pure; `LeaseLock` reads and writes the Lease; `LeaderElector`
runs the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    duration_s: int
    acquire_time: float
    renew_time: float
    transitions: int = 0


@dataclass(frozen=True)
class Observed:
    """A record as last read, and when this candidate saw it change (its own clock)."""

    record: LeaseRecord
    at: float


def decide(observed: Observed | None, me: str, now: float, duration_s: int) -> LeaseRecord | None:
    """The record to write to lead now, or None while another holder's lease is live."""
    if observed is None:
        return LeaseRecord(me, duration_s, now, now)
    record = observed.record
    if record.holder == me:
        return replace(record, renew_time=now, duration_s=duration_s)
    if record.holder and now < observed.at + record.duration_s:
        return None
    return LeaseRecord(me, duration_s, now, now, record.transitions + 1)


def to_lease(record: LeaseRecord) -> dict[str, Any]:
    return {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration_s,
        "acquireTime": _micro_time(record.acquire_time),
        "renewTime": _micro_time(record.renew_time),
        "leaseTransitions": record.transitions,
    }


def from_lease(spec: dict[str, Any]) -> LeaseRecord:
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        duration_s=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=_epoch(spec.get("acquireTime")),
        renew_time=_epoch(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def _micro_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(MICRO_TIME)


def _epoch(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class LeaseLock:
    """Reads and writes one Lease with optimistic concurrency (blocking calls)."""

    def __init__(self, api: ApiClient, namespace: str, name: str) -> None:
        self._api = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name

    def read(self) -> tuple[LeaseRecord, str] | None:
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=5)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        raw = self._api.api_client.sanitize_for_serialization(lease)
        return from_lease(raw.get("spec") or {}), raw["metadata"]["resourceVersion"]

    def write(self, record: LeaseRecord, version: str | None) -> bool:
        """Create (version None) or replace at `version`; False when another writer won."""
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": to_lease(record),
        }
        try:
            if version is None:
                self._api.create_namespaced_lease(self.namespace, body, _request_timeout=5)
            else:
                body["metadata"]["resourceVersion"] = version
                self._api.replace_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=5
                )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True


class LeaderElector:
    def __init__(
        self,
        lock: LeaseLock,
        identity: str,
        duration_s: int = 15,
        renew_s: float = 5.0,
        retry_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = lock
        self.identity = identity
        self.duration_s = duration_s
        self.renew_s = renew_s
        self.retry_s = retry_s
        self.clock = clock
        self.is_leader = False
        self._observed: Observed | None = None

    async def try_lead(self) -> bool:
        """One round: read the Lease, decide, write. True while this candidate leads."""
        try:
            read = await asyncio.to_thread(self.lock.read)
            now = self.clock()
            version = None
            if read is not None:
                record, version = read
                if self._observed is None or self._observed.record != record:
                    self._observed = Observed(record, now)
            wanted = decide(self._observed if read else None, self.identity, now, self.duration_s)
            self.is_leader = wanted is not None and await asyncio.to_thread(
                self.lock.write, wanted, version
            )
        except (ApiException, OSError):
            self.is_leader = False
        return self.is_leader

    async def acquire(self) -> None:
        """Return once this candidate leads."""
        while not await self.try_lead():
            await asyncio.sleep(self.retry_s)

    async def hold(self) -> None:
        """Renew until a renewal fails for longer than the lease lasts; then return (lost)."""
        last_renewed = self.clock()
        while True:
            await asyncio.sleep(self.renew_s)
            if await self.try_lead():
                last_renewed = self.clock()
            elif self._observed is not None and self._observed.record.holder != self.identity:
                return  # someone else holds it
            elif self.clock() - last_renewed > self.duration_s:
                return
