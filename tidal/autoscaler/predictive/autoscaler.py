"""tidal's predictive autoscaler with the KPA's interface (record / poke / tick → Decision):
the reactive KPA, the priced warm decision and the plan, combined by `PredictivePolicy`
(docs/predictive.md).

Pure. Who builds the plan and fits the warm model, and when, is the caller's business: the live
controller does it off the event loop from the stored history; the simulator from its replayed
history. Both hand them in with `set_plan` (a plan carries its warm model). This object watches
requests come and go (`record`) and keeps the idle gaps it saw, exactly, for the next fit. The
KPA's clock may be monotonic; plans, gaps and cron bounds are calendar-aware, so `epoch_offset`
turns the KPA's `now` into epoch seconds.
"""

from __future__ import annotations

import math
from collections import deque

from tidal.autoscaler.kpa import Decision, RevisionAutoscaler
from tidal.autoscaler.predictive.kpa_cost import idle_tail
from tidal.autoscaler.predictive.ledger import Ledger
from tidal.autoscaler.predictive.plan import Plan
from tidal.autoscaler.predictive.policy import PolicyDecision, PredictivePolicy
from tidal.autoscaler.predictive.warm import MAX_GAPS, MIN_GAP_S, Gap

IDLE_AFTER_S = 2.5  # no concurrency for this long (a stat period and a bit): idle
PEAK_WINDOW_S = 3600.0  # idle replicas beyond what the last hour's peak needed are not held


class PredictiveAutoscaler:
    def __init__(
        self, reactive: RevisionAutoscaler, policy: PredictivePolicy, epoch_offset: float = 0.0
    ) -> None:
        self.reactive = reactive
        self.policy = policy
        self.epoch_offset = epoch_offset
        self.replicas: int | None = None  # what this autoscaler last asked for
        # Of those, how many the KPA alone and the bounds would not run: held ahead of demand.
        self.ahead = 0
        self.last: PolicyDecision | None = None
        self._reactive_replicas = -1
        self.gaps: list[Gap] = []  # idle gaps seen, epoch seconds
        self.observing_since: float | None = None  # epoch second of the first record
        self._last_busy: float | None = None  # epoch second of the last stat with requests
        self._peaks: deque[tuple[float, float]] = deque()  # (epoch, concurrency), decreasing
        self.ledger = Ledger()  # spent against the KPA underneath (the auto price's guard)
        self._ready = 0  # ready replicas at the last tick
        # Prediction held another count than the KPA underneath since the last request
        # ended: the KPA underneath no longer sees what the KPA alone would (`_kpa_alone`).
        self._diverged = False
        self._kpa_read = -1  # the KPA alone's count as the last tick read it (`_kpa_alone`)
        # (idle since, the KPA's count, what prediction would hold) at the idle period's first
        # tick: the replicas each side holds through the KPA's tail (`Gap.kpa_replicas`).
        self._idle_counts: tuple[float, int, int] | None = None
        self._tail_spec: object = None  # the spec `_tail` was measured for
        self._tail = 0.0

    def set_plan(self, plan: Plan | None) -> None:
        """A fresh plan, with the warm model fitted alongside it (`Plan.warm`)."""
        self.policy.set_plan(plan)
        if plan is not None:
            self.policy.set_warm(plan.warm, plan.gaps_seen)

    @property
    def mode(self) -> str:
        """The SKS mode: the KPA underneath's."""
        return self.reactive.mode

    def record(self, now: float, concurrency: float, rps: float) -> None:
        self.reactive.record(now, concurrency, rps)
        epoch = now + self.epoch_offset
        if self.observing_since is None:
            self.observing_since = epoch
        if concurrency > 0 or rps > 0:
            if self._last_busy is not None and epoch - self._last_busy >= MIN_GAP_S:
                counts = (1, 1)
                if self._idle_counts is not None and self._idle_counts[0] == self._last_busy:
                    counts = self._idle_counts[1:]
                self.gaps.append(Gap(self._last_busy, epoch - self._last_busy, *counts))
                warm = self.policy.warm
                if warm is not None and warm.useful:  # prediction decided this gap
                    kpa_cold = epoch - self._last_busy > warm.kpa_tail_s
                    self.ledger.gap_ended(epoch, kpa_cold, self._ready > 0)
                if len(self.gaps) > 2 * MAX_GAPS:
                    del self.gaps[:MAX_GAPS]
            self._last_busy = epoch
            while self._peaks and self._peaks[-1][1] <= concurrency:
                self._peaks.pop()
            self._peaks.append((epoch, concurrency))

    def idle_need(self, now: float) -> int:
        """Replicas the busiest moment of the last PEAK_WINDOW_S needed at full capacity per
        replica (at least one): what an idle service may still hold."""
        epoch = now + self.epoch_offset
        while self._peaks and self._peaks[0][0] < epoch - PEAK_WINDOW_S:
            self._peaks.popleft()
        peak = self._peaks[0][1] if self._peaks else 0.0
        return max(1, math.ceil(peak / self.reactive.spec.total_value - 1e-9))

    def poke(self, now: float, concurrency: float) -> bool:
        return self.reactive.poke(now, concurrency)

    def idle_since(self, now: float) -> float | None:
        """Epoch second the last request ended, or None while requests are in flight (or none
        was ever seen)."""
        epoch = now + self.epoch_offset
        if self._last_busy is None or epoch - self._last_busy < IDLE_AFTER_S:
            return None
        return self._last_busy

    def next_decision_at(self, now: float) -> float | None:
        """The KPA-clock second by which `tick` must run for a decision that changes with no
        new request (releasing or pre-warming a replica); None when nothing is pending. A
        replay that skips idle time must tick by then (it must also tick while requests are
        in flight and while the KPA holds replicas, as for the KPA alone)."""
        idle = self.idle_since(now)
        if idle is None:
            return None
        held, epoch = max(self.replicas or 0, 0), now + self.epoch_offset
        at = self.policy.next_change(epoch, held, idle)
        if self._diverged and self._reactive_replicas > 0:
            # `_kpa_alone` drops to zero at the tail's end; at the next tick when the tail
            # ended before prediction began to hold another count (no tick has read it).
            drop = idle + self._tail_s()
            if drop > epoch:
                at = drop if at is None else min(at, drop)
            elif self._kpa_alone(epoch, idle) != self._kpa_read:
                at = epoch if at is None else min(at, epoch)
        if held > 1 and self.policy.warm is not None and self.policy.warm.useful and self._peaks:
            # Holding more than one while idle: the idle cap drops when the last hour's peak
            # leaves the window.
            expiry = self._peaks[0][0] + PEAK_WINDOW_S
            at = expiry if at is None else min(at, expiry)
        return None if at is None else at - self.epoch_offset

    def _tail_s(self) -> float:
        """How long the KPA alone holds replicas after the last request ends (measured on the
        KPA's own code, `kpa_cost.idle_tail`; kept per spec, as it is read on every tick)."""
        spec = self.reactive.spec
        if spec is not self._tail_spec:
            self._tail_spec, self._tail = spec, idle_tail(spec)
        return self._tail

    def _kpa_alone(self, epoch: float, idle: float | None) -> int:
        """The KPA's count as the policy reads it: the KPA underneath's, except past its tail
        once prediction has held another count while idle. Then the KPA underneath saw
        other replicas than the KPA alone would have (with none ready it records nothing and
        keeps its last count), while the KPA alone is at zero there: handing the service
        back to it (a refit that finds no rhythm) must not start its stale count again."""
        count = self._reactive_replicas
        if self._diverged and idle is not None and epoch >= idle + self._tail_s():
            return min(count, 0)
        return count

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        decision = self.reactive.tick(now, ready, reachable)
        if decision.replicas is not None:
            self._reactive_replicas = decision.replicas
        current = self._reactive_replicas if self.replicas is None else self.replicas
        epoch, idle, need = now + self.epoch_offset, self.idle_since(now), self.idle_need(now)
        if idle is not None and (self._idle_counts is None or self._idle_counts[0] != idle):
            kpa = max(self._reactive_replicas, 1)
            self._idle_counts = (idle, kpa, min(kpa, need))
        kpa_alone = self._kpa_read = self._kpa_alone(epoch, idle)
        chosen = self.policy.decide(epoch, kpa_alone, max(current, 0), idle, need)
        self.last = chosen
        want = chosen.replicas if self._reactive_replicas >= 0 else decision.replicas
        replicas = None if want is None or want == self.replicas else want
        if replicas is not None:
            self.replicas = replicas
        self._diverged = idle is not None and (
            self._diverged or self.replicas != self._reactive_replicas
        )
        self._ready = ready
        held = self.replicas or 0
        if held <= kpa_alone:
            self.ahead = 0
        else:
            self.ahead = max(0, held - self.policy.bounds.clamp(max(kpa_alone, 0), epoch))
        # Until prediction holds another count, the KPA underneath is the KPA alone, at its own
        # ticks: it drops its last replica at the first tick past its tail, not at the tail.
        tail = self._tail_s() if self._diverged else math.inf
        self.ledger.advance(epoch, self.replicas or 0, self._reactive_replicas, idle, tail)
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
            ahead=self.ahead,
        )
