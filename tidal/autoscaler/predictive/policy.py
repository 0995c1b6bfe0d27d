"""Combine the reactive KPA, the warm decision, the plan and the bounds into the replicas to
run (docs/predictive.md):

    auto = clamp(max(reactive-or-warm, planned), bounds(t))

- reactive-or-warm: while requests are in flight, the KPA's count. While the service is idle,
  the priced warm decision (`warm.WarmModel`): replicas kept (the KPA's count, at most what the
  last hour's peak needed) or one pre-warmed, or none, which may release sooner than the KPA's
  tail would. A request the forecast missed is met by the KPA exactly as without prediction (it
  runs on every tick and owns every count above one while requests are in flight).
- planned: the plan's expected-demand replicas, led by one Ready Time, when the forecast found a
  daily or weekly period (a predictable rise is ready before it comes), where it plans more
  than one replica (the first is the warm decision's).

Modes (`tidal.dev/mode`):
- auto: as above.
- proactive: the plan alone (the reactive count when the plan does not cover now), scale-in
  held by the stabilization window.
- reactive: the KPA alone, within the bounds.
- observer: act like reactive, and expose what auto would do (`recommended`). A revision in
  auto runs as the KPA (observer) while it has neither enough idle gaps for the warm decision
  nor `tidal.dev/min-history` for the plan, and says so in `reason`.
Bounds always apply; they do not depend on history. Pure: time comes in as `now`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tidal.api.predictive import AUTO, OBSERVER, PROACTIVE, REACTIVE, PredictiveAnnotations
from tidal.autoscaler.predictive.bounds import Bounds
from tidal.autoscaler.predictive.plan import Plan
from tidal.autoscaler.predictive.warm import HORIZON_S, MIN_GAPS, WarmModel


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
    """One revision's combination of paths. Give it a plan with `set_plan` and a warm model with
    `set_warm` when they are built, and call `decide` on every autoscaler tick."""

    def __init__(
        self, settings: PredictiveAnnotations, min_scale: int = 0, max_scale: int = 0
    ) -> None:
        self.settings = settings
        self.bounds = Bounds(min_scale, max_scale, settings.bounds, settings.timezone)
        self.plan: Plan | None = None
        self.warm: WarmModel | None = None
        self.gaps_seen = 0  # idle gaps the last warm fit had (for the reason when it had too few)
        # (time, proactive recommendation) inside the stabilization window.
        self._window: deque[tuple[float, int]] = deque()
        self._mode_memo: tuple | None = None  # (plan, warm, gaps_seen, settings, _mode())

    def set_plan(self, plan: Plan | None) -> None:
        self.plan = plan

    def set_warm(self, model: WarmModel | None, gaps_seen: int = 0) -> None:
        self.warm = model
        self.gaps_seen = model.gaps if model is not None else gaps_seen

    def decide(
        self,
        now: float,
        reactive_desired: int,
        current_replicas: int,
        idle_since: float | None = None,
        idle_need: int | None = None,
    ) -> PolicyDecision:
        """`reactive_desired` is the KPA's count (its `Decision.replicas`, or the current count
        when that is None); a negative value means the KPA has no data yet. `idle_since` is when
        the last request ended, None while requests are in flight. `idle_need` is the most
        replicas an idle service may hold when the warm decision keeps one (the last hour's
        peak at full capacity per replica); None: no such cap."""
        reactive = reactive_desired if reactive_desired >= 0 else current_replicas
        planned = self._planned(now)
        base, why = reactive, f"reactive {reactive}"
        if self.warm is not None and self.warm.useful and idle_since is not None:
            keep, why = self.warm.action(idle_since, now, current_replicas > 0)
            base = max(reactive, 1) if keep else 0
            # The KPA's headroom (its target is below a replica's capacity, and a cold start
            # panics it to two) is for concurrency that is not there while idle: hold no more
            # than the last hour's peak needed.
            if idle_need is not None and base > idle_need:
                base, why = idle_need, f"{why}; the last hour's peak needs {idle_need}"
        # The plan adds capacity beyond one replica. Whether an idle service holds its first
        # is the priced warm decision's call: a plan of one is a sparse service's forecast
        # rounded up where last week happened to have a request, which no price weighed.
        auto = base if planned is None or planned <= 1 else max(base, planned)
        recommended = self.bounds.clamp(auto, now)
        cautious = self._cautious(now)
        proactive = self._stabilize(now, reactive if cautious is None else cautious)
        mode, reason = self._mode()
        if mode == AUTO:
            replicas = recommended
            plan_text = "" if planned is None else f", planned {planned}"
            reason = f"auto: {why}{plan_text} -> {replicas}"
        elif mode == PROACTIVE:
            replicas = self.bounds.clamp(proactive, now)
            reason = f"proactive: planned {cautious} -> {replicas}"
        else:
            replicas = self.bounds.clamp(reactive, now)
            reason = f"{reason}; reactive {reactive} -> {replicas}, auto would run {recommended}"
        return PolicyDecision(replicas, mode, reason, planned, reactive, recommended)

    def next_change(
        self, now: float, current_replicas: int, idle_since: float | None
    ) -> float | None:
        """Epoch second when, with no new request, the warm decision next changes (None: not
        before something else happens). A caller that skips idle time ticks by then."""
        if self.warm is None or not self.warm.useful or idle_since is None:
            return None
        return self.warm.next_change(idle_since, now, current_replicas > 0)

    def _planned(self, now: float) -> int | None:
        """The plan's count now, when the plan is trustworthy: built from at least min-history
        and from a forecast that found a period."""
        plan = self.plan
        if plan is None or not plan.periods:
            return None
        if plan.history_minutes * 60.0 < self.settings.min_history:
            return None
        return plan.replicas_at(now)

    def _cautious(self, now: float) -> int | None:
        """The plan's quantile count now (proactive mode)."""
        plan = self.plan
        if plan is None:
            return None
        counts = plan.replicas if plan.cautious is None else plan.cautious
        i = int((now - plan.start) // 60)
        return int(counts[i]) if 0 <= i < len(counts) else None

    def _mode(self) -> tuple[str, str]:
        """The mode in effect and, for reactive/observer, why: the same until the plan, the
        warm model or the settings change, so kept until then (it is asked every tick)."""
        memo = self._mode_memo
        if (
            memo is not None
            and memo[0] is self.plan
            and memo[1] is self.warm
            and memo[2] == self.gaps_seen
            and memo[3] is self.settings
        ):
            return memo[4]
        mode = self._mode_now()
        self._mode_memo = (self.plan, self.warm, self.gaps_seen, self.settings, mode)
        return mode

    def _mode_now(self) -> tuple[str, str]:
        mode = self.settings.mode
        if mode in (OBSERVER, REACTIVE):
            return mode, f"{mode}: tidal.dev/mode={mode}"
        if mode == PROACTIVE:
            if self.plan is None:
                return OBSERVER, "observer: no plan yet"
            have = self.plan.history_minutes * 60.0
            if have < self.settings.min_history:
                need = human_duration(self.settings.min_history)
                return OBSERVER, f"observer: {human_duration(have)} of history, need {need}"
            return mode, ""
        if (self.warm is not None and self.warm.useful) or self._planned_ok():
            return mode, ""
        have = 0.0 if self.plan is None else self.plan.history_minutes * 60.0
        need = human_duration(self.settings.min_history)
        periodic = "" if self.plan is None or self.plan.periods else ", no period found"
        if self.warm is None:
            gaps = f"{self.gaps_seen} idle gaps seen, need {MIN_GAPS} to price keeping one warm"
        elif self.warm.rhythm:
            gaps = (
                f"{self.warm.gaps} idle gaps: a {self.warm.price:.0f} replica-s price expects "
                f"{self.warm.expected_cold_ratio:.2f}x the KPA's cold starts; used once the next "
                "fit agrees"
            )
        elif not self.warm.evidence:
            gaps = (
                f"{self.warm.gaps} idle gaps, the newest all shorter than the KPA's "
                f"{self.warm.kpa_tail_s:.0f} s tail and in one slice of the day: no cold start "
                "of the KPA's to beat yet"
            )
        elif self.warm.long_gap_scored:
            gaps = (
                f"{self.warm.gaps} idle gaps, the newest all shorter than the KPA's "
                f"{self.warm.kpa_tail_s:.0f} s tail: no affordable price meets a longer gap "
                f"warm (scored with one gap past the model's {HORIZON_S / 3600:.0f} h horizon, "
                f"the best expects {self.warm.expected_cold_ratio:.2f}x the KPA's cold starts)"
            )
        else:
            gaps = (
                f"{self.warm.gaps} idle gaps show no rhythm to exploit (best affordable price "
                f"expects {self.warm.expected_cold_ratio:.2f}x the KPA's cold starts)"
            )
        return OBSERVER, (
            f"observer (runs as the KPA): {human_duration(have)} of history, need {need} for "
            f"a plan{periodic}; {gaps}"
        )

    def _planned_ok(self) -> bool:
        plan = self.plan
        return (
            plan is not None
            and bool(plan.periods)
            and plan.history_minutes * 60.0 >= self.settings.min_history
        )

    def _stabilize(self, now: float, proactive: int) -> int:
        """Proactive scale-in takes the max of the recommendations within the window;
        scale-out is immediate. The window keeps only recommendations no later one is at
        least as high as (decreasing), so its first is the max, and the latest moment each
        value was recommended is kept."""
        window = self._window
        while window and window[-1][1] <= proactive:
            window.pop()
        window.append((now, proactive))
        while window[0][0] < now - self.settings.stabilization_window:
            window.popleft()
        return window[0][1]


def human_duration(seconds: float) -> str:
    """Largest two units, e.g. 3h, 1d12h, 45m, 30s."""
    s = int(seconds)
    parts = [(s // 86_400, "d"), (s % 86_400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return "".join(f"{n}{unit}" for n, unit in parts[:2] if n) or "0s"
