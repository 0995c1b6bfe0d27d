"""tidal's predictive autoscaler in the simulator: the production `PredictiveAutoscaler`
(tidal/autoscaler/predictive/autoscaler.py) fed with plans built from the replayed history.

Live, the controller builds plans hourly from the stored per-minute history; here this wrapper
keeps the per-minute mean concurrency of the replay and does the same. `now` is epoch seconds:
plans and cron bounds are calendar-aware.
"""

from __future__ import annotations

import math

import numpy as np

from tidal.api.predictive import PredictiveAnnotations
from tidal.autoscaler.kpa import DeciderSpec, Decision, RevisionAutoscaler
from tidal.autoscaler.predictive.autoscaler import PredictiveAutoscaler
from tidal.autoscaler.predictive.plan import build_plan, ready_time_lead
from tidal.autoscaler.predictive.policy import PredictivePolicy

REPLAN_S = 3600.0  # as live (tidal.controller.forecasting.REPLAN_S)


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
        `tidal.dev/scale-up-lead` is set. `prior_history` is per-minute mean concurrency that
        ends where the replay starts (`tidal simulate --history`)."""
        self.spec = spec
        self.settings = settings
        reactive = RevisionAutoscaler(spec, now, progress_deadline_s=progress_deadline_s)
        policy = PredictivePolicy(settings, spec.min_scale, spec.max_scale)
        self.autoscaler = PredictiveAutoscaler(reactive, policy)
        lead_s = settings.scale_up_lead
        self.lead_minutes = (
            math.ceil(lead_s / 60.0) if lead_s is not None else ready_time_lead(ready_times)
        )
        self._minute = math.floor(now / 60.0)
        self._first_minute = self._minute
        self._sum = 0.0
        self._history: list[float] = [] if prior_history is None else list(prior_history)
        self._first_minute -= len(self._history)
        self._next_plan = now

    def record(self, now: float, concurrency: float, rps: float) -> None:
        self.autoscaler.record(now, concurrency, rps)
        self._roll(now)
        self._sum += concurrency

    def _roll(self, now: float) -> None:
        """Close the minutes before the one holding `now` (mean concurrency; no record = 0)."""
        minute = math.floor(now / 60.0)
        while self._minute < minute:
            self._history.append(self._sum / 60.0)
            self._sum = 0.0
            self._minute += 1

    def poke(self, now: float, concurrency: float) -> bool:
        return self.autoscaler.poke(now, concurrency)

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        self._roll(now)
        if now >= self._next_plan:
            self._next_plan = now + REPLAN_S
            if len(self._history) * 60.0 >= self.settings.min_history:
                start = (self._first_minute + len(self._history)) * 60.0
                self.autoscaler.set_plan(
                    build_plan(
                        np.asarray(self._history),
                        start,
                        self.spec.target_value,
                        self.settings.quantile,
                        self.lead_minutes,
                    )
                )
        return self.autoscaler.tick(now, ready, reachable)
