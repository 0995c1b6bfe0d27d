"""Replica bounds at a moment: cron windows over min/max-scale (like AHPA's `instanceBounds`;
docs/predictive.md): the bounds of the window active at a moment, else min/max-scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from tidal.api.predictive import CronBound


@dataclass(frozen=True)
class Bounds:
    """`min_scale`/`max_scale` as in Knative (max 0 = unbounded), refined by cron `windows`
    evaluated in `timezone`. The first matching window wins; its unset limits keep the
    revision's."""

    min_scale: int = 0
    max_scale: int = 0
    windows: tuple[CronBound, ...] = ()
    timezone: str = "UTC"

    def at(self, now: float) -> tuple[int, int | None]:
        """(low, high) replicas at epoch `now`; high None means unbounded. A window's `max=0`
        means zero replicas in that window."""
        window = self.window_at(now)
        low, high = self.min_scale, self.max_scale or None
        if window is not None:
            low = low if window.min_replicas is None else window.min_replicas
            high = high if window.max_replicas is None else window.max_replicas
        return low, high

    def window_at(self, now: float) -> CronBound | None:
        """The first window containing `now`, if any."""
        if not self.windows:
            return None
        local = datetime.fromtimestamp(now, ZoneInfo(self.timezone))
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        for window in self.windows:
            if window.start < window.end:
                if day in window.days and window.start <= minute < window.end:
                    return window
            elif (day in window.days and minute >= window.start) or (
                (day - 1) % 7 in window.days and minute < window.end
            ):
                return window
        return None

    def clamp(self, replicas: int, now: float) -> int:
        """`replicas` within the bounds at `now`; the upper bound wins a conflict."""
        low, high = self.at(now)
        replicas = max(replicas, low)
        return replicas if high is None else min(replicas, high)
