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

from tidal.api.predictive import PROACTIVE, PredictiveAnnotations
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
    warm_model_stands,
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
        self._history = _Series(prior)
        self._trim()
        self._next_plan = now
        self._next_warm = now + WARM_REFIT_S

    def record(self, now: float, concurrency: float, rps: float) -> None:
        self.autoscaler.record(now, concurrency, rps)
        self._roll(now)
        self._sum += concurrency

    def _roll(self, now: float) -> None:
        """Close the minutes before the one holding `now` (mean concurrency; no record = 0)."""
        minute = math.floor(now / 60.0)
        if minute <= self._minute:  # most calls: the same minute
            return
        if minute - self._minute > 1:  # a skipped stretch: whole minutes without a record
            self._history.append(self._sum / 60.0)
            self._history.zeros(minute - self._minute - 1)
            self._sum, self._minute = 0.0, minute
        while self._minute < minute:
            self._history.append(self._sum / 60.0)
            self._sum = 0.0
            self._minute += 1
        self._trim()

    def _trim(self) -> None:
        """Forget what no refit reads (kept up to twice that, so it is dropped rarely)."""
        if len(self._history) > 2 * HISTORY_MINUTES:
            drop = len(self._history) - HISTORY_MINUTES
            self._history.drop(drop)
            self._first_minute += drop

    def poke(self, now: float, concurrency: float) -> bool:
        return self.autoscaler.poke(now, concurrency)

    @property
    def mode(self) -> str:
        return self.autoscaler.mode

    @property
    def ahead(self) -> int:
        """Replicas held ahead of demand at the last tick (`PredictiveAutoscaler.ahead`)."""
        return self.autoscaler.ahead

    def next_decision_at(self, now: float) -> float | None:
        """See `PredictiveAutoscaler.next_decision_at`; also the next refit. Not a warm refit
        that would keep the model (`warm_model_stands`): every later one would too until a
        request ends the gap, which wakes the replay anyway, and `tick` steps the 10-minute
        clock past them as their own ticks would have. An idle fleet then wakes hourly."""
        at = self.autoscaler.next_decision_at(now)
        refit_at = self._next_plan
        warm_start = math.floor(self._next_warm / 60.0) * 60.0  # `start` of a refit then
        if not warm_model_stands(self.autoscaler, warm_start):
            refit_at = min(refit_at, self._next_warm)
        return refit_at if at is None else min(at, refit_at)

    def tick(self, now: float, ready: int, reachable: bool = True) -> Decision:
        self._roll(now)
        if now < min(self._next_plan, self._next_warm):
            return self.autoscaler.tick(now, ready, reachable)
        history = self._history.tail(HISTORY_MINUTES)
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
                # Only proactive mode reads a plan without a period, and no one is shown one.
                aperiodic=self.settings.mode == PROACTIVE,
            )
        else:
            while self._next_warm <= now:  # each due tick (skipped or not) steps it once
                self._next_warm += WARM_REFIT_S
            refit_warm(self.autoscaler, history, start, self.spec, self.settings, self.ready_s)
        return self.autoscaler.tick(now, ready, reachable)


class _Series:
    """The per-minute history: appended to one minute at a time, read as an array of its last
    minutes at every refit (a buffer, so that a refit does not convert a month-long list)."""

    def __init__(self, values: list[float]) -> None:
        self._data = np.zeros(max(1024, 2 * len(values)))
        self._data[: len(values)] = values
        self._size = len(values)

    def __len__(self) -> int:
        return self._size

    def _grow(self, extra: int) -> None:
        need = self._size + extra
        if need > len(self._data):
            data = np.zeros(max(need, 2 * len(self._data)))
            data[: self._size] = self._data[: self._size]
            self._data = data

    def append(self, value: float) -> None:
        self._grow(1)
        self._data[self._size] = value
        self._size += 1

    def zeros(self, count: int) -> None:
        self._grow(count)
        self._data[self._size : self._size + count] = 0.0
        self._size += count

    def drop(self, count: int) -> None:
        """Forget the first `count` minutes."""
        kept = self._data[count : self._size].copy()
        self._data[: len(kept)] = kept
        self._size = len(kept)

    def tail(self, count: int) -> np.ndarray:
        """A copy of the last `count` minutes (all when fewer)."""
        return self._data[max(0, self._size - count) : self._size].copy()
