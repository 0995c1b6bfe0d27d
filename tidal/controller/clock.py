"""The controller's clock, injected so tests (and anything replaying time) can drive it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds: timers (back-off, provisioning, drain deadlines) and autoscaler time."""

    def now(self) -> float: ...


class MonotonicClock:
    """The real one: time.monotonic."""

    def now(self) -> float:
        return time.monotonic()
