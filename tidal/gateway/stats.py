"""Per-revision request statistics, measured where Knative's queue-proxy and activator measure
them (docs/autoscaling.md#metrics): time-weighted average concurrency and request count per period.

The gateway sees every request (it plays both activator and queue-proxy), so these are exact
revision totals, counted from the moment a request arrives (held requests included).
"""

from __future__ import annotations

import random
import time

# Latencies kept per stat period: a uniform sample (reservoir) beyond this many requests.
LATENCY_SAMPLES = 512


class RevisionStats:
    __slots__ = ("_area", "_last", "_seen", "in_flight", "latencies", "peak", "requests")

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.requests = 0
        self._area = 0.0
        self._last = time.monotonic()
        # (response time, service time) in seconds of requests answered this period: the whole
        # time in the gateway, and the part spent on a replica (docs/autoscaling.md#response-time).
        self.latencies: list[tuple[float, float]] = []
        self._seen = 0

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

    def answered(self, response_s: float, service_s: float) -> None:
        """A request finished: its time in the gateway and the part on a replica."""
        self._seen += 1
        if len(self.latencies) < LATENCY_SAMPLES:
            self.latencies.append((response_s, service_s))
        else:
            slot = random.randrange(self._seen)
            if slot < LATENCY_SAMPLES:
                self.latencies[slot] = (response_s, service_s)

    def take_latencies(self) -> list[tuple[float, float]]:
        """The latencies of this period (a sample when many); starts the next period."""
        taken, self.latencies, self._seen = self.latencies, [], 0
        return taken
