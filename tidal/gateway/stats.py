"""Per-revision request statistics, measured where Knative's queue-proxy and activator measure
them (docs/autoscaling.md#metrics): time-weighted average concurrency and request count per period.

The gateway sees every request (it plays both activator and queue-proxy), so these are exact
revision totals, counted from the moment a request arrives (held requests included).
"""

from __future__ import annotations

import time


class RevisionStats:
    __slots__ = ("_area", "_last", "in_flight", "peak", "requests")

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.requests = 0
        self._area = 0.0
        self._last = time.monotonic()

    def _advance(self, now: float) -> None:
        self._area += self.in_flight * (now - self._last)
        self._last = now

    def arrive(self) -> None:
        self._advance(time.monotonic())
        self.in_flight += 1
        self.requests += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight

    def depart(self) -> None:
        self._advance(time.monotonic())
        self.in_flight -= 1

    def collect(self, period_start: float, now: float) -> tuple[float, int, int]:
        """Average and peak concurrency over [period_start, now] and the requests that arrived
        in it; starts the next period."""
        self._advance(now)
        elapsed = max(now - period_start, 1e-3)
        average, count, peak = self._area / elapsed, self.requests, self.peak
        self._area, self.requests, self.peak = 0.0, 0, self.in_flight
        return average, count, peak
