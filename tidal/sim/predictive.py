"""tidal's predictive autoscaler in the simulator: the production `PredictiveAutoscaler`
(tidal/autoscaler/predictive/autoscaler.py) fed with plans and warm models built from the
replayed history, by the same functions the live controller calls (tidal/autoscaler/predictive/
refit.py).

Live, the controller refits (plans hourly, warm models every 10 minutes) from the stored
per-minute history; here this wrapper keeps
the per-minute mean concurrency of the replay (after `prior_history`, the per-minute history
that ends where the trace starts) and does the same. `now` is epoch seconds: plans and cron
bounds are calendar-aware.
"""

from __future__ import annotations

import math

import numpy as np

from tidal.api.predictive import PredictiveAnnotations
from tidal.autoscaler.kpa import DeciderSpec, Decision, RevisionAutoscaler
from tidal.autoscaler.predictive.autoscaler import PredictiveAutoscaler
from tidal.autoscaler.predictive.plan import ready_time_lead
from tidal.autoscaler.predictive.policy import PredictivePolicy
from tidal.autoscaler.predictive.refit import (
    REFIT_S,
    WARM_REFIT_S,
    ready_seconds,
    refit,
    refit_warm,
)

HISTORY_MINUTES = 28 * 1440  # as live (tidal.controller.forecasting.HISTORY_DAYS)


class SimulatedPredictive:
    def __init__(
        self,
        spec: DeciderSpec,
        settings: PredictiveAnnotations,
        now: float,
        ready_times: np.ndarray,
        progress_deadline_s: float = 600.0,
        prior_history: np.ndarray | None = None,
    ) -> None:
        """`ready_times` are measured start-up times (s); the plan leads by their p90 unless
        `tidal.dev/scale-up-lead` is set. `prior_history` is per-minute mean concurrency for
        the minutes just before `now` (e.g. from `tidal simulate --history`)."""
        self.spec = spec
        self.settings = settings
        reactive = RevisionAutoscaler(spec, now, progress_deadline_s=progress_deadline_s)
        self.policy = PredictivePolicy(settings, spec.min_scale, spec.max_scale)
        self.autoscaler = PredictiveAutoscaler(reactive, self.policy)
        lead_s = settings.scale_up_lead
        self.lead_minutes = (
            math.ceil(lead_s / 60.0) if lead_s is not None else ready_time_lead(ready_times)
        )
        self.ready_s = lead_s if lead_s is not None else ready_seconds(ready_times)
        self._minute = math.floor(now / 60.0)
        prior = [] if prior_history is None else [float(v) for v in prior_history]
        self._first_minute = self._minute - len(prior)
        self._sum = 0.0
        self._history: list[float] = prior
        self._next_plan = now
        self._next_warm = now + WARM_REFIT_S

    def record(self, now: float, concurrency: float, rps: float) -> None:
        self.autoscaler.record(now, concurrency, rps)
        self._roll(now)
        self._sum += concurrency

    def _roll(self, now: float) -> None:
        """Close the minutes before the one holding `now` (mean concurrency; no record = 0)."""
        minute = math.floor(now / 60.0)
        if minute - self._minute > 1:  # a skipped stretch: whole minutes without a record
            self._history.append(self._sum / 60.0)
            self._history.extend([0.0] * (minute - self._minute - 1))
            self._sum, self._minute = 0.0, minute
        while self._minute < minute:
            self._history.append(self._sum / 60.0)
            self._sum = 0.0
            self._minute += 1
        if len(self._history) > 2 * HISTORY_MINUTES:
            drop = len(self._history) - HISTORY_MINUTES
            del self._history[:drop]
            self._first_minute += drop

    def poke(self, now: float, concurrency: float) -> bool:
        return self.autoscaler.poke(now, concurrency)

    def next_decision_at(self, now: float) -> float | None:
        """See `PredictiveAutoscaler.next_decision_at`; also the next hourly refit."""
        at = self.autoscaler.next_decision_at(now)
        refit_at = min(self._next_plan, self._next_warm)
        return refit_at if at is None else min(at, refit_at)

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        self._roll(now)
        if now < min(self._next_plan, self._next_warm):
            return self.autoscaler.tick(now, ready, reachable)
        history = np.asarray(self._history[-HISTORY_MINUTES:])
        start = (self._first_minute + len(self._history)) * 60.0
        if now >= self._next_plan:
            self._next_plan = now + REFIT_S
            self._next_warm = now + WARM_REFIT_S
            refit(
                self.autoscaler,
                history,
                start,
                self.spec,
                self.settings,
                self.lead_minutes,
                self.ready_s,
            )
        else:
            self._next_warm = now + WARM_REFIT_S
            refit_warm(self.autoscaler, history, start, self.spec, self.settings, self.ready_s)
        return self.autoscaler.tick(now, ready, reachable)
