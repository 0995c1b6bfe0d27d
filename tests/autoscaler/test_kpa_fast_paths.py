"""The KPA's fast paths give the very floats of the plain formulation: the rounding of window
averages, the bucket bookkeeping of `record` and `window_average`, and the look-ahead of
`steady_until` / `_inputs_change`, checked against record-by-record replays of random histories
(docs/autoscaling.md#windows, docs/simulator.md)."""

import copy
import math
import random
import struct

import pytest

from tidal.api.autoscaling import AutoscalerConfig, AutoscalingAnnotations
from tidal.autoscaler.kpa import RevisionAutoscaler, _totals_after, decider_spec
from tidal.autoscaler.metrics import TimedFloat64Buckets, round_precision


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def go_round(value: float, digits: int) -> float:
    """Go's `math.Round(f*10^n)/10^n`, written out."""
    p = 10.0**digits
    return math.copysign(math.floor(abs(value) * p + 0.5), value) / p


def test_rounding_gives_the_same_bits_as_gos_formula():
    rng = random.Random(7)
    values = [0.0, -0.0, 0.5e-6, -0.5e-6, 1.0000005, 2.4999995, -3.0000005, 1e300, -1e-320]
    values += [rng.uniform(-100, 100) for _ in range(2000)]
    values += [rng.randrange(10**9) / 10**7 for _ in range(2000)]  # many ties at the 7th digit
    for v in values:
        assert bits(round_precision(v)) == bits(go_round(v, 6)), v


class PlainBuckets:
    """`TimedFloat64Buckets.record` and `window_average` as first ported, helper by helper."""

    def __init__(self, window: float) -> None:
        self.window, self.granularity = window, 1.0
        self.buckets = [0.0] * math.ceil(window)
        self.first_write: float | None = None
        self.last_write = -math.inf
        self.window_total = 0.0

    def _truncate(self, t: float) -> float:
        return math.floor(t / self.granularity) * self.granularity

    def _index(self, t: float) -> int:
        return int(t // self.granularity)

    def record(self, t: float, value: float) -> None:
        bucket_time = self._truncate(t)
        if self.last_write != bucket_time:
            if not bucket_time + self.window > self.last_write:
                return
            if self.first_write is None or self.first_write > bucket_time:
                self.first_write = bucket_time
            if bucket_time > self.last_write:
                if bucket_time - self.last_write >= self.window:
                    self.first_write = bucket_time
                    self.buckets = [0.0] * len(self.buckets)
                    self.window_total = 0.0
                else:
                    for i in range(self._index(self.last_write) + 1, self._index(t) + 1):
                        idx = i % len(self.buckets)
                        self.window_total -= self.buckets[idx]
                        self.buckets[idx] = 0.0
                self.last_write = bucket_time
        self.buckets[self._index(t) % len(self.buckets)] += value
        self.window_total += value

    def oldest_nonzero_exit(self) -> float | None:
        size = len(self.buckets)
        last = self._index(self.last_write)
        for age in range(size - 1, -1, -1):
            if self.buckets[(last - age) % size] != 0.0:
                return (last - age + size) * self.granularity
        return None

    def window_average(self, now: float) -> float:
        now = self._truncate(now)
        d = now - self.last_write
        assert self.first_write is not None
        span = int((self.last_write - self.first_write) // self.granularity) + 1
        if d <= 0:
            return go_round(self.window_total / min(span, len(self.buckets)), 6)
        if d < self.window:
            start, end = self._index(self.last_write), self._index(now)
            total = self.window_total
            for i in range(start + 1, end + 1):
                total -= self.buckets[i % len(self.buckets)]
            return go_round(total / min(span, len(self.buckets) - (end - start)), 6)
        return 0.0


@pytest.mark.parametrize("seed", range(4))
def test_bucket_bookkeeping_matches_the_plain_port(seed):
    """Writes in the same second, skipped seconds, gaps of a window, writes from the past; the
    average read later, and when the oldest non-zero bucket leaves."""
    rng = random.Random(seed)
    window = rng.choice([1, 6, 10, 60])
    fast, plain = TimedFloat64Buckets(window), PlainBuckets(window)
    t = 1000.0
    for _ in range(3000):
        t += rng.choice([0.0, 0.3, 1.0, 1.0, 1.0, 2.5, 7.0, window + 0.5])
        at = t - rng.choice([0.0, 0.0, 0.0, 3.0, window + 1.0])
        value = rng.choice([0.0, 0.0, rng.random() * 50, rng.randrange(5) / 3])
        fast.record(at, value)
        plain.record(at, value)
        assert fast.buckets == plain.buckets
        assert bits(fast.window_total) == bits(plain.window_total)
        assert (fast.first_write, fast.last_write) == (plain.first_write, plain.last_write)
        assert fast.oldest_nonzero_exit() == plain.oldest_nonzero_exit()
        for ahead in (0.0, 0.7, 2.0, rng.uniform(0, 2 * window)):
            assert bits(fast.window_average(t + ahead)) == bits(plain.window_average(t + ahead))


def _spec(stable: float, tbc: float):
    """Small targets, so that a few requests move the desired pods."""
    target = 3.0 if stable < 30 else 10.0
    ann = AutoscalingAnnotations(window=stable, target=target, target_burst_capacity=tbc)
    return decider_spec(AutoscalerConfig(), ann, 0)


def _inputs(decider, ready: int, t: float, trigger: bool) -> tuple:
    """What a tick at `t` decides from, read from the windows as `scale` reads them."""
    spec = decider.spec
    observed_stable = decider._stable.window_average(t)
    observed_panic = decider._panic.window_average(t)
    dppc = math.ceil(observed_panic / spec.target_value)
    tbc = spec.target_burst_capacity
    ebc = math.floor(ready * spec.total_value - tbc - observed_panic) if tbc > 0 else tbc
    found = (math.ceil(observed_stable / spec.target_value), dppc, ebc >= 0)
    return (*found, dppc / max(1.0, float(ready)) >= spec.panic_threshold) if trigger else found


def _history(rng: random.Random, ra: RevisionAutoscaler, until: int, ready: int) -> None:
    for t in range(until):
        if rng.random() < 0.6:
            ra.record(float(t), rng.choice([0.0, rng.random() * 40, float(rng.randrange(12))]), 0.0)
        if t % 2 == 0:
            ra.tick(float(t), ready)


@pytest.mark.parametrize("seed", range(6))
def test_steady_until_matches_a_record_by_record_replay(seed):
    """`steady_until`: the first second at which what a tick decides from changes, with the same
    stat recorded every second (then the panic end and the state machine's timers)."""
    rng = random.Random(seed)
    scanned = 0
    for case in range(40):
        spec = _spec(rng.choice([6.0, 10.0, 60.0]), rng.choice([0.0, 20.0, 211.0, -1.0]))
        ra = RevisionAutoscaler(spec, now=0.0)
        now = rng.randrange(5, 150)
        _history(rng, ra, now, ready=0)
        value = rng.choice([1.0, 2.0, float(rng.randrange(1, 40)), rng.random() * 30])
        for _ in range(rng.choice([0, rng.randrange(1, 130)])):  # already steady a while
            ra.record(float(now), value, 0.0)
            if now % 2 == 0:
                ra.tick(float(now), 0)
            now += 1
        ra.record(float(now), value, 0.0)
        ra.tick(float(now), 0)

        reference = copy.deepcopy(ra)
        expected = float(now)
        if reference._replicas is not None:
            decider = copy.deepcopy(reference.decider)
            horizon = len(decider._stable.buckets)
            start = _inputs(decider, 0, now, trigger=True)
            limit = float(now + horizon)
            for j in range(1, horizon + 1):
                decider.record(float(now + j), value, value)
                if _inputs(decider, 0, now + j, trigger=True) != start:
                    limit = float(now + j)
                    break
            panic = reference.decider._panic_time
            if panic is not None and not start[3]:
                limit = min(limit, panic + spec.stable_window)
            expected = max(float(now), reference._at_rest_until(float(now), 0, limit))
            scanned += 1
        assert ra.steady_until(float(now), 0, value, 0.0) == expected, (seed, case)
    assert scanned > 20  # the look-ahead itself ran, not only its early exits


@pytest.mark.parametrize("seed", range(6))
def test_inputs_change_matches_a_record_by_record_replay(seed):
    """`_inputs_change`: with zeros recorded every second, the first second at which the desired
    pods or the sign of the excess burst capacity change (inf: never within a window)."""
    rng = random.Random(100 + seed)
    checked = 0
    for _ in range(40):
        spec = _spec(rng.choice([6.0, 10.0, 60.0]), rng.choice([0.0, 20.0, 211.0]))
        ra = RevisionAutoscaler(spec, now=0.0)
        ready = rng.randrange(1, 4)
        _history(rng, ra, rng.randrange(5, 150), ready)
        decider = copy.deepcopy(ra.decider)
        if decider._stable.first_write is None or decider._panic.first_write is None:
            continue
        last = int(decider._stable.last_write)
        start = _inputs(decider, ready, last, trigger=False)
        expected = math.inf
        for j in range(1, len(decider._stable.buckets) + 1):
            decider.record(float(last + j), 0.0, 0.0)
            if _inputs(decider, ready, last + j, trigger=False) != start:
                expected = float(last + j)
                break
        assert ra._inputs_change(ready) == expected
        checked += 1
    assert checked > 20


@pytest.mark.parametrize("seed", range(3))
def test_totals_after_are_the_floats_of_record(seed):
    """The look-ahead's window totals are bit for bit those that `record` leaves."""
    rng = random.Random(seed)
    for _ in range(200):
        window = rng.choice([1, 6, 60])
        buckets = TimedFloat64Buckets(window)
        second = rng.randrange(100, 200)
        for t in range(second - rng.randrange(0, 2 * window), second + 1):
            buckets.record(float(t), rng.choice([0.0, rng.random() * 99, 1 / 3]))
        value = rng.choice([0.0, 1.0, rng.random() * 7])
        count = rng.randrange(1, 70)
        ahead = _totals_after(list(buckets.buckets), second, buckets.window_total, value, count)
        for j in range(1, count + 1):
            buckets.record(float(second + j), value)
            assert bits(ahead[j - 1]) == bits(buckets.window_total)
