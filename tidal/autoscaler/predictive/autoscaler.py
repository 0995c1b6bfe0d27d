"""tidal's predictive autoscaler with the KPA's interface (record / poke / tick → Decision):
the reactive KPA plus a plan, combined by `PredictivePolicy` (predictive.md §1.4 step 8).

Pure. Who builds the plan, and when, is the caller's business: the live controller builds it off
the event loop from the stored history; the simulator from its replayed history. Both hand it in
with `set_plan`. The KPA's clock may be monotonic; plans and cron bounds are calendar-aware, so
`epoch_offset` turns the KPA's `now` into epoch seconds.
"""

from __future__ import annotations

from tidal.autoscaler.kpa import Decision, RevisionAutoscaler
from tidal.autoscaler.predictive.plan import Plan
from tidal.autoscaler.predictive.policy import PolicyDecision, PredictivePolicy


class PredictiveAutoscaler:
    def __init__(
        self, reactive: RevisionAutoscaler, policy: PredictivePolicy, epoch_offset: float = 0.0
    ) -> None:
        self.reactive = reactive
        self.policy = policy
        self.epoch_offset = epoch_offset
        self.replicas: int | None = None  # what this autoscaler last asked for
        self.last: PolicyDecision | None = None
        self._reactive_replicas = -1

    def set_plan(self, plan: Plan | None) -> None:
        self.policy.set_plan(plan)

    def record(self, now: float, concurrency: float, rps: float) -> None:
        self.reactive.record(now, concurrency, rps)

    def poke(self, now: float, concurrency: float) -> bool:
        return self.reactive.poke(now, concurrency)

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        decision = self.reactive.tick(now, ready, reachable)
        if decision.replicas is not None:
            self._reactive_replicas = decision.replicas
        current = self._reactive_replicas if self.replicas is None else self.replicas
        chosen = self.policy.decide(
            now + self.epoch_offset, self._reactive_replicas, max(current, 0)
        )
        self.last = chosen
        want = chosen.replicas if self._reactive_replicas >= 0 else decision.replicas
        replicas = None if want is None or want == self.replicas else want
        if replicas is not None:
            self.replicas = replicas
        return Decision(
            replicas=replicas,
            desired_raw=decision.desired_raw,
            ebc=decision.ebc,
            in_panic=decision.in_panic,
            active=decision.active,
            reason=chosen.reason,
            stable_value=decision.stable_value,
            panic_value=decision.panic_value,
            mode=decision.mode,
        )
