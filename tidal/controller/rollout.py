"""Gradual rollout of a new latest revision (Knative's rollout.go,
docs/architecture.md#revisions-traffic-and-rollout).

The new revision starts with 1% of the latest target's percent P; then, every `step_duration`,
`step_size` points move to it from the newest older revisions first, until it has all of P.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Rollout:
    percent: int  # P: the share of the latest target being moved
    split: tuple[tuple[str, int], ...]  # (revision, percent), oldest first, new revision last
    started: float
    step_size: int
    step_duration: float
    next_step: float

    @property
    def done(self) -> bool:
        return self.split[-1][1] >= self.percent

    def to_dict(self) -> dict[str, object]:
        return {
            "percent": self.percent,
            "split": [list(s) for s in self.split],
            "started": self.started,
            "stepSize": self.step_size,
            "stepDuration": self.step_duration,
            "nextStep": self.next_step,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Rollout:
        return cls(
            percent=int(data["percent"]),  # type: ignore[arg-type]
            split=tuple((str(r), int(p)) for r, p in data["split"]),  # type: ignore[union-attr]
            started=float(data["started"]),  # type: ignore[arg-type]
            step_size=int(data["stepSize"]),  # type: ignore[arg-type]
            step_duration=float(data["stepDuration"]),  # type: ignore[arg-type]
            next_step=float(data["nextStep"]),  # type: ignore[arg-type]
        )


def start_rollout(
    previous: list[tuple[str, int]], new_revision: str, percent: int, duration_s: float, now: float
) -> Rollout | None:
    """Begin moving `percent` from the `previous` split to `new_revision`; None when there is
    nothing to roll (no duration, P <= 1, or no previous revision)."""
    old = [(rev, pct) for rev, pct in previous if pct > 0 and rev != new_revision]
    if duration_s <= 0 or percent <= 1 or not old:
        return None
    split = [*_take(old, 1), (new_revision, 1)]
    # The Ingress is ready at once here, so the observed start-up m is one second.
    m = 1.0
    remaining = max(1.0, duration_s - m)
    steps = min(max(1, math.floor(remaining / m)), percent - 1)
    step_size = max(1, round((percent - 1) / steps))
    step_duration = remaining / steps
    return Rollout(percent, tuple(split), now, step_size, step_duration, now + m)


def advance(rollout: Rollout, now: float) -> Rollout:
    """Apply every step whose time has come."""
    while not rollout.done and now >= rollout.next_step:
        *old, (new_revision, new_percent) = rollout.split
        moved = min(rollout.step_size, rollout.percent - new_percent)
        split = [*_take(old, moved), (new_revision, new_percent + moved)]
        rollout = replace(
            rollout, split=tuple(split), next_step=rollout.next_step + rollout.step_duration
        )
    return rollout


def _take(old: list[tuple[str, int]], amount: int) -> list[tuple[str, int]]:
    """Remove `amount` points from the newest older revisions first; drop emptied ones."""
    result = list(old)
    for index in range(len(result) - 1, -1, -1):
        if amount <= 0:
            break
        revision, percent = result[index]
        taken = min(percent, amount)
        result[index] = (revision, percent - taken)
        amount -= taken
    return [(r, p) for r, p in result if p > 0]
