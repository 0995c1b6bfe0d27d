"""Runs the scheduler over every revision and carries out its decisions; keeps the cost ledger.

The scheduler (`tidal.scheduler.placement`) is pure: this module feeds it the pools, the
ResourcePolicies, every replica that holds resources, and each revision's desired count, then
hands each decision to the revision's workload.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from tidal.api.pools import Pool
from tidal.api.resource_policy import ResourcePolicy, selects
from tidal.controller.workload import RevisionWorkload
from tidal.scheduler.cost import CostLedger
from tidal.scheduler.placement import place_all, tally


class Placer:
    def __init__(self, pools: tuple[Pool, ...]) -> None:
        self.pools = pools
        self.pools_by_name = {pool.name: pool for pool in pools}
        self.policies: dict[str, ResourcePolicy] = {}  # "namespace/name" -> policy
        self.ledger = CostLedger(pools)

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
        now = time.monotonic()
        workloads = list(workloads)
        placed = {id(w): w.placed() for w in workloads}
        usage = tally(self.pools, (item for items in placed.values() for item in items))
        requests = []
        for workload in workloads:
            policy = self.policy_for(workload)
            others = []
            if policy is not None:
                others = [
                    p
                    for other in workloads
                    if other is not workload and self.policy_for(other) is policy
                    for p, _ in placed[id(other)]
                ]
            requests.append(workload.request(now, policy, others))
        for workload, decision in zip(
            workloads, place_all(requests, self.pools, usage, now), strict=True
        ):
            workload.apply(decision, self.pools_by_name)
