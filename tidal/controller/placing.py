"""Runs the scheduler over every revision and carries out its decisions; keeps the cost ledger.

The scheduler (`tidal.scheduler.placement`) is pure: this module feeds it the pools, the
ResourcePolicies, every replica that holds resources, and each revision's desired count, then
hands each decision to the revision's workload.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from tidal.api.pools import Pool
from tidal.api.resource_policy import ResourcePolicy, selects
from tidal.controller.clock import Clock, MonotonicClock
from tidal.controller.workload import RevisionWorkload
from tidal.scheduler.cost import CostLedger
from tidal.scheduler.placement import PoolUsage, Request, place, place_all, tally
from tidal.store.history import ReplicaSpan

COST_LABELS = ["service", "revision", "pool"]


class Placer:
    def __init__(self, pools: tuple[Pool, ...], clock: Clock | None = None) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.pools = pools
        self.pools_by_name = {pool.name: pool for pool in pools}
        self.policies: dict[str, ResourcePolicy] = {}  # "namespace/name" -> policy
        self.ledger = CostLedger(pools)

    def load_spans(self, spans: Iterable[ReplicaSpan]) -> None:
        """Cost of earlier runs (tidal.store.history), for pools that still exist."""
        for span in spans:
            if span.pool in self.pools_by_name:
                self.ledger.start(
                    span.replica_id, span.service, span.revision, span.pool, span.gpus, span.started
                )
                if span.stopped is not None:
                    self.ledger.stop(span.replica_id, span.stopped)

    def policy_for(self, workload: RevisionWorkload) -> ResourcePolicy | None:
        """The policy in the revision's namespace whose selector matches its labels; the first
        by name if several do."""
        for key in sorted(self.policies):
            policy = self.policies[key]
            namespace = policy.metadata.namespace or "default"
            if namespace == workload.spec.namespace and selects(policy, dict(workload.spec.labels)):
                return policy
        return None

    def place(self, workloads: Iterable[RevisionWorkload]) -> None:
        now = self.clock.now()
        workloads = [w for w in workloads if _has_work(w)]
        placed = {id(w): w.placed() for w in workloads}
        usage = tally(self.pools, (item for items in placed.values() for item in items))
        policies = {id(w): self.policy_for(w) for w in workloads}  # once, not once per pair
        requests = []
        for workload in workloads:
            policy = policies[id(workload)]
            others = []
            if policy is not None:
                others = [
                    p
                    for other in workloads
                    if other is not workload and policies[id(other)] is policy
                    for p, _ in placed[id(other)]
                ]
            requests.append(workload.request(now, policy, others))
        for workload, decision in zip(
            workloads, place_all(requests, self.pools, usage, now), strict=True
        ):
            workload.apply(decision, self.pools_by_name)
        for workload in workloads:
            if workload.spec.standby_pool is not None:
                self._keep_standby(workload, usage, now)

    def _keep_standby(
        self, workload: RevisionWorkload, usage: dict[str, PoolUsage], now: float
    ) -> None:
        """ACK's reserve instance: one replica on a cheap pool while the revision is at zero,
        which serves the first requests and goes once a regular replica is ready."""
        standby = workload.standby_ids()
        if workload.wants_standby():
            if not standby:
                pool = self.pools_by_name[workload.spec.standby_pool or ""]
                request = Request(f"{workload.spec.revision}-standby", 1, workload.demand)
                for start in place(request, [pool], usage, now).start:
                    workload.start_standby(pool, start.devices)
        elif standby and (workload.desired == 0 or workload.serving_ready_count() > 0):
            for replica_id in standby:
                workload.stop(replica_id)

    def pool_usage(self, workloads: Iterable[RevisionWorkload]) -> list[dict[str, Any]]:
        """Capacity and use of each pool, for `tidal get pools`."""
        placed = [item for w in workloads for item in w.placed()]
        usage = tally(self.pools, placed)
        items = []
        for pool in self.pools:
            used = usage[pool.name]
            items.append(
                {
                    "name": pool.name,
                    "kind": pool.kind,
                    "labels": pool.labels,
                    "capacity": {
                        "cpu": pool.cpu,
                        "memory": pool.memory,
                        "gpus": list(pool.gpus),
                        "replicas": pool.max_replicas,
                    },
                    "used": {
                        "cpu": used.cpu,
                        "memory": used.memory,
                        "gpus": sorted(used.devices),
                        "replicas": used.replicas,
                    },
                    "replicas": sorted(p.replica_id for p, _ in placed if p.pool == pool.name),
                    "startupDelaySeconds": pool.startup_delay_s,
                    "price": {
                        "replicaSecond": pool.price.replica_second,
                        "gpuSecond": pool.price.gpu_second,
                    },
                }
            )
        return items

    def cost(self, start: float, end: float, now: float) -> list[dict[str, Any]]:
        """Replica-seconds, GPU-seconds and cost per service, revision and pool in [start, end)."""
        return [
            {
                "service": key.service,
                "revision": key.revision,
                "pool": key.pool,
                "replicaSeconds": use.replica_seconds,
                "gpuSeconds": use.gpu_seconds,
                "cost": use.cost,
            }
            for key, use in sorted(self.ledger.usage(start, end, now).items())
        ]


class CostCollector(Collector):
    """The ledger's totals as Prometheus counters, computed when scraped."""

    def __init__(self, ledger: CostLedger) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[CounterMetricFamily]:
        families = {
            "replica_seconds": CounterMetricFamily(
                "tidal_replica_seconds", "Replica-seconds used", labels=COST_LABELS
            ),
            "gpu_seconds": CounterMetricFamily(
                "tidal_gpu_seconds", "GPU-seconds used", labels=COST_LABELS
            ),
            "cost": CounterMetricFamily(
                "tidal_cost", "Cost by the pools' prices", labels=COST_LABELS
            ),
        }
        now = time.time()
        for key, use in sorted(self.ledger.usage(0.0, now, now).items()):
            labels = [key.service, key.revision, key.pool]
            for name, family in families.items():
                family.add_metric(labels, getattr(use, name))
        yield from families.values()


def _has_work(workload: RevisionWorkload) -> bool:
    """Whether the scheduler has anything to do for it: an idle revision at zero has nothing
    placed, nothing wanted and nothing pending (and placing it would change nothing)."""
    return bool(
        workload.desired
        or workload.replicas
        or workload.provisioning
        or workload.pending
        or workload.spec.standby_pool is not None
    )
