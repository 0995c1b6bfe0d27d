"""Windowed metric aggregation, ported from Knative's `pkg/autoscaler/aggregation`
(docs/autoscaling.md#windows). Pure: every method takes `now` (float seconds) from the caller.

Times are truncated to the bucket granularity (1 s for metrics, 2 s for the scale-down-delay
max window), exactly like Go's `time.Truncate` on Unix time.
"""

from __future__ import annotations

import math
from collections import deque

from tidal.api.autoscaling import WEIGHTED_EXPONENTIAL

BUCKET_SIZE = 1.0  # docs/autoscaling.md#cluster-defaults BucketSize
MIN_EXPONENT = 0.2
WEIGHT_PRECISION = 0.9999
PRECISION = 6


ROUND_SCALE = 10.0**PRECISION  # the 10^n of `round_precision`


def round_precision(value: float) -> float:
    """Go's `math.Round(f*10^6)/10^6` (half away from zero), the rounding of every window
    average. A positive value skips abs and copysign: the same float, sooner."""
    if value > 0.0:
        return math.floor(value * ROUND_SCALE + 0.5) / ROUND_SCALE
    return math.copysign(math.floor(abs(value) * ROUND_SCALE + 0.5), value) / ROUND_SCALE


def smoothing_coefficient(num_buckets: float) -> float:
    """alpha = max(1 - (1 - 0.9999)^(1/nb), 0.2) (docs/autoscaling.md#windows weighted
    exponential)."""
    return max(1 - math.pow(1 - WEIGHT_PRECISION, 1 / num_buckets), MIN_EXPONENT)


class TimedFloat64Buckets:
    """Ring buffer of per-bucket sums over a window; `window_average` is Knative's linear,
    partial-window average (docs/autoscaling.md#windows)."""

    def __init__(self, window: float, granularity: float = BUCKET_SIZE) -> None:
        self.granularity = granularity
        self.window = window
        self.buckets = [0.0] * math.ceil(window / granularity)
        self.first_write: float | None = None
        self.last_write = -math.inf  # Go's zero time: "never"
        self.window_total = 0.0
        # Bumped by every write: a reader that saw the same count saw the same buckets.
        self.writes = 0

    def _truncate(self, t: float) -> float:
        return math.floor(t / self.granularity) * self.granularity

    def _index(self, t: float) -> int:
        return int(t // self.granularity)

    def record(self, t: float, value: float) -> None:
        """Add `value` to the bucket of `t`, zeroing buckets skipped since the last write; a gap
        of a whole window resets the buffer and `first_write`. Writes older than a window
        before the last write are dropped."""
        step = self.granularity
        bucket_time = math.floor(t / step) * step
        index = int(t // step)
        last = self.last_write
        if last != bucket_time:
            if not bucket_time + self.window > last:
                return
            first = self.first_write
            if first is None or first > bucket_time:
                self.first_write = bucket_time
            if bucket_time > last:
                if bucket_time - last >= self.window:
                    self.first_write = bucket_time
                    self.buckets = [0.0] * len(self.buckets)
                    self.window_total = 0.0
                else:
                    ring = self.buckets
                    size = len(ring)
                    total = self.window_total
                    for i in range(int(last // step) + 1, index + 1):
                        idx = i % size
                        total -= ring[idx]
                        ring[idx] = 0.0
                    self.window_total = total
                self.last_write = bucket_time
        ring = self.buckets
        ring[index % len(ring)] += value
        self.window_total += value
        self.writes += 1

    def record_idle(self, t: float) -> None:
        """The state that a zero recorded every bucket up to `t` leaves: skipped buckets are
        zeroed and `first_write` kept (a single `record` would reset it after a long gap). The
        simulator uses it to skip idle seconds; it needs at least one earlier write."""
        first = self.first_write
        self.record(t, 0.0)
        if first is not None and self.first_write is not None:
            self.first_write = min(first, self.first_write)

    def span_full(self) -> bool:
        """True once the valid part of the window covers all its buckets."""
        return self.first_write is not None and self._valid_span() >= len(self.buckets)

    def is_empty(self, now: float) -> bool:
        """True when nothing was written during the last window."""
        return self._truncate(now) - self.last_write > self.window

    def _valid_span(self) -> int:
        assert self.first_write is not None
        return int((self.last_write - self.first_write) // self.granularity) + 1

    def window_average(self, now: float) -> float:
        """Average over the valid part of the window, rounded to 6 digits
        (docs/autoscaling.md#windows linear)."""
        step = self.granularity
        now = math.floor(now / step) * step
        last = self.last_write
        d = now - last
        if d <= 0:
            assert self.first_write is not None
            span = int((last - self.first_write) // step) + 1
            return round_precision(self.window_total / min(span, len(self.buckets)))
        if d < self.window:
            ring = self.buckets
            size = len(ring)
            start, end = int(last // step), int(now // step)
            total = self.window_total
            for i in range(start + 1, end + 1):
                total -= ring[i % size]
            num = min(self._valid_span(), size - (end - start))
            return round_precision(total / num)
        return 0.0

    def resize_window(self, window: float, now: float) -> None:
        """Change the window, keeping the newest buckets (`ResizeWindow`)."""
        if window == self.window:
            return
        num = math.ceil(window / self.granularity)
        new = [0.0] * num
        total = 0.0
        if self._truncate(now) - self.last_write <= self.window:
            old = len(self.buckets)
            idx = self._index(self.last_write)
            for _ in range(min(num, old)):
                new[idx % num] = self.buckets[idx % old]
                total += self.buckets[idx % old]
                idx -= 1
            self.first_write = self.last_write - (old - 1) * self.granularity
        else:
            self.first_write = None
        self.window = window
        self.buckets = new
        self.window_total = total
        self.writes += 1


class WeightedFloat64Buckets(TimedFloat64Buckets):
    """Buckets averaged with exponentially decaying, unnormalised weights
    (docs/autoscaling.md#windows)."""

    def __init__(self, window: float, granularity: float = BUCKET_SIZE) -> None:
        super().__init__(window, granularity)
        self.smoothing_coeff = smoothing_coefficient(math.ceil(window / granularity))

    def window_average(self, now: float) -> float:
        """Sum of bucket[lastWrite-i] * alpha*(1-alpha)^(i+z), z = empty buckets since the last
        write (docs/autoscaling.md#windows)."""
        now = self._truncate(now)
        if self.is_empty(now):
            return 0.0
        total_b = num_b = len(self.buckets)
        multiplier = self.smoothing_coeff
        if now > self.last_write:
            num_z = int((now - self.last_write) // self.granularity)
            multiplier *= math.pow(1 - self.smoothing_coeff, num_z)
            num_b -= num_z
        start = self._index(self.last_write) + total_b
        result = 0.0
        for i in range(num_b):
            result += self.buckets[(start - i) % total_b] * multiplier
            multiplier *= 1 - self.smoothing_coeff
        return result

    def resize_window(self, window: float, now: float) -> None:
        super().resize_window(window, now)
        self.smoothing_coeff = smoothing_coefficient(math.ceil(window / self.granularity))


def new_buckets(window: float, algorithm: str = "linear") -> TimedFloat64Buckets:
    """Buckets for a metric window; `weighted-exponential` selects the weighted average."""
    if algorithm == WEIGHTED_EXPONENTIAL:
        return WeightedFloat64Buckets(window)
    return TimedFloat64Buckets(window)


class MaxTimeWindow:
    """Maximum of values recorded over the last `duration`, in `granularity` buckets (Knative
    `aggregation/max`, the scale-down-delay window of docs/autoscaling.md#the-scale-decision: 2 s
    buckets)."""

    def __init__(self, duration: float, granularity: float = 2.0) -> None:
        self.size = math.ceil(duration / granularity)
        self.granularity = granularity
        self._maxima: deque[tuple[int, int]] = deque()  # (index, value), values descending

    def record(self, now: float, value: int) -> None:
        index = math.floor(now) // int(self.granularity)
        while self._maxima and value >= self._maxima[-1][1]:
            self._maxima.pop()
        while self._maxima and index - self._maxima[0][0] >= self.size:
            self._maxima.popleft()
        if self._maxima and self._maxima[-1][0] == index:
            value = max(value, self._maxima.pop()[1])
        self._maxima.append((index, value))

    def current(self) -> int:
        """The maximum over the window; 0 before the first record."""
        return self._maxima[0][1] if self._maxima else 0

    def expires_at(self) -> float:
        """When the current maximum leaves the window if only zeros follow (inf when it is 0)."""
        if not self._maxima or self._maxima[0][1] == 0:
            return math.inf
        return float((self._maxima[0][0] + self.size) * int(self.granularity))
