"""Combine the reactive KPA, the plan and the bounds into the replicas to run
(research/predictive.md §1.4 step 8, §6.1):

    desired = clamp(max(reactive, planned), bounds(t)), scale-in held by the stabilization window

Modes (`tidal.dev/mode`, AHPA's `scaleStrategy`, §2.1):
- auto: both paths, as above.
- proactive: the plan alone (the reactive count when the plan does not cover now).
- reactive: the KPA alone, within the bounds.
- observer: act like reactive, and expose what auto would do (`recommended`). A revision in
  auto or proactive runs in observer while its history is shorter than `tidal.dev/min-history`,
  and says so in `reason`.
Bounds always apply; they do not depend on history. Pure: time comes in as `now`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tidal.api.predictive import AUTO, OBSERVER, PROACTIVE, REACTIVE, PredictiveAnnotations
from tidal.autoscaler.predictive.bounds import Bounds
from tidal.autoscaler.predictive.plan import Plan


@dataclass(frozen=True)
class PolicyDecision:
    """What to run now and why. `planned` is None when no plan covers now; `recommended` is
    what auto mode would run (the figure observer mode exposes)."""

    replicas: int
    mode_used: str
    reason: str
    planned: int | None
    reactive: int
    recommended: int


class PredictivePolicy:
    """One revision's combination of paths. Give it a plan with `set_plan` when one is built,
    and call `decide` on every autoscaler tick."""

    def __init__(
        self, settings: PredictiveAnnotations, min_scale: int = 0, max_scale: int = 0
    ) -> None:
        self.settings = settings
        self.bounds = Bounds(min_scale, max_scale, settings.bounds, settings.timezone)
        self.plan: Plan | None = None
        # (time, auto recommendation, proactive recommendation) inside the window.
        self._window: deque[tuple[float, int, int]] = deque()

    def set_plan(self, plan: Plan | None) -> None:
        self.plan = plan

    def decide(self, now: float, reactive_desired: int, current_replicas: int) -> PolicyDecision:
        """`reactive_desired` is the KPA's count (its `Decision.replicas`, or the current count
        when that is None); a negative value means the KPA has no data yet."""
        reactive = reactive_desired if reactive_desired >= 0 else current_replicas
        planned = self.plan.replicas_at(now) if self.plan is not None else None
        auto_raw = reactive if planned is None else max(reactive, planned)
        auto, proactive = self._stabilize(now, auto_raw, reactive if planned is None else planned)
        recommended = self.bounds.clamp(auto, now)
        mode, reason = self._mode(planned)
        if mode == AUTO:
            replicas = recommended
            reason = f"auto: max(reactive {reactive}, planned {planned}) -> {replicas}"
        elif mode == PROACTIVE:
            replicas = self.bounds.clamp(proactive, now)
            reason = f"proactive: planned {planned} -> {replicas}"
        else:
            replicas = self.bounds.clamp(reactive, now)
            reason = f"{reason}; reactive {reactive} -> {replicas}, auto would run {recommended}"
        return PolicyDecision(replicas, mode, reason, planned, reactive, recommended)

    def _mode(self, planned: int | None) -> tuple[str, str]:
        """The mode in effect and, for reactive/observer, why."""
        mode = self.settings.mode
        if mode in (OBSERVER, REACTIVE):
            return mode, f"{mode}: tidal.dev/mode={mode}"
        if self.plan is None:
            return OBSERVER, "observer: no plan yet"
        have = self.plan.history_minutes * 60.0
        need = self.settings.min_history
        if have < need:
            return (
                OBSERVER,
                f"observer: {human_duration(have)} of history, need {human_duration(need)}",
            )
        if planned is None:
            return REACTIVE, "reactive: the plan does not cover now"
        return mode, ""

    def _stabilize(self, now: float, auto: int, proactive: int) -> tuple[int, int]:
        """Scale-in takes the max of the recommendations within the window (§1.4 step 8);
        scale-out is immediate."""
        self._window.append((now, auto, proactive))
        while self._window[0][0] < now - self.settings.stabilization_window:
            self._window.popleft()
        return max(a for _, a, _ in self._window), max(p for _, _, p in self._window)


def human_duration(seconds: float) -> str:
    """Largest two units, e.g. 3h, 1d12h, 45m, 30s."""
    s = int(seconds)
    parts = [(s // 86_400, "d"), (s % 86_400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return "".join(f"{n}{unit}" for n, unit in parts[:2] if n) or "0s"
