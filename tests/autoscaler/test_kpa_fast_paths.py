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
from tidal.autoscaler.kpa import RevisionAutoscaler, _record_each, _totals_after, decider_spec
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
    average read later."""
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
    answers = _check_inputs_change(rng, 40, _history, (5, 150))
    assert len(answers) > 20


def _check_inputs_change(rng, cases, history, lengths) -> list[float]:
    """`_inputs_change` against recording zeros second by second on a copy, after
    `history(rng, autoscaler, seconds, ready)` of a length drawn from `lengths`, for each of
    `cases` random specs; the answers checked."""
    answers = []
    for _ in range(cases):
        spec = _spec(rng.choice([6.0, 10.0, 60.0]), rng.choice([0.0, 20.0, 211.0]))
        ra = RevisionAutoscaler(spec, now=0.0)
        ready = rng.randrange(1, 4)
        history(rng, ra, rng.randrange(*lengths), ready)
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
        answers.append(expected)
    return answers


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


def _sparse_history(rng: random.Random, ra: RevisionAutoscaler, until: int, ready: int) -> None:
    """Bursts of a few seconds between idle stretches (zeros recorded, or nothing at all), as a
    sparse service's windows look: mostly zero buckets, spans that are not yet full."""
    t = rng.randrange(0, 90)
    while t < until:
        for _ in range(rng.randrange(1, 6)):
            ra.record(
                float(t), rng.choice([1.0, rng.random() * 3, float(rng.randrange(1, 9))]), 0.0
            )
            if t % 2 == 0:
                ra.tick(float(t), ready)
            t += 1
        quiet = rng.randrange(1, 80)
        zeros = rng.random() < 0.7
        for _ in range(quiet):
            if zeros:
                ra.record(float(t), 0.0, 0.0)
            if t % 2 == 0:
                ra.tick(float(t), ready)
            t += 1
            if t >= until:
                break


@pytest.mark.parametrize("seed", range(6))
def test_inputs_change_on_sparse_windows_matches_a_record_by_record_replay(seed):
    """`_inputs_change` looks only where a zero overwrites a non-zero bucket or the span grows:
    windows that are mostly zero, partly filled, or all zero give the replay's answer."""
    rng = random.Random(300 + seed)
    answers = _check_inputs_change(rng, 60, _sparse_history, (20, 400))
    assert len(answers) > 30 and sum(a != math.inf for a in answers) > 10


@pytest.mark.parametrize("seed", range(6))
def test_at_rest_until_right_after_a_step_matches_the_full_trial_step(seed):
    """Right after a step with the same inputs, `_at_rest_until` tries the reconciler alone;
    the answer and the state it leaves are those of the trial step of the whole autoscaler
    (decider included) with snapshots of everything, which it takes otherwise."""
    rng = random.Random(500 + seed)
    fast_paths = moved = 0
    for _ in range(120):
        spec = _spec(rng.choice([6.0, 10.0, 60.0]), rng.choice([0.0, 20.0, 211.0, -1.0]))
        ready = rng.choice([0, 1, 1, 2, 3])
        ra = RevisionAutoscaler(spec, now=0.0, ready=rng.choice([0, ready]))
        history = rng.choice([_sparse_history, _history, None])  # None: a new revision
        if history is not None:
            history(rng, ra, rng.randrange(2, 300), ready)
        now = float(int(ra.decider._stable.last_write) if ra.decider._stable.first_write else 0)
        now += rng.choice([0, 1, 2, 31, 61, 700])
        ra.tick(now, rng.choice([ready, ready, 0, ready + 1]), rng.random() < 0.9)
        ready_now = ra._stepped[1]
        limit = now + rng.choice([0.5, 7.0, 90.0, math.inf])
        full = copy.deepcopy(ra)
        full._stepped = None  # no record of the last step: the whole trial step runs
        fast_paths += ra._stepped == (
            now,
            ready_now,
            ra.reachable,
            ra.decider._stable.writes,
            ra.decider._panic.writes,
        )
        got = ra._at_rest_until(now, ready_now, limit)
        want = full._at_rest_until(now, ready_now, limit)
        assert got == want
        moved += got == now
        state = {k: v for k, v in vars(ra).items() if k not in ("decider", "_stepped")}
        assert state == {k: v for k, v in vars(full).items() if k not in ("decider", "_stepped")}
        assert vars(ra.decider).keys() == vars(full.decider).keys()
        for key in ("_panic_time", "_max_panic_pods"):
            assert getattr(ra.decider, key) == getattr(full.decider, key)
    assert fast_paths == 120 and 0 < moved < 100  # both answers: at rest, and still moving


def test_a_write_after_the_step_makes_at_rest_until_try_the_whole_step():
    """The fast path holds only while the windows are as the last step read them: a record
    since then moves the decider's inputs, and the whole trial step sees it."""
    spec = _spec(10.0, 0.0)
    ra = RevisionAutoscaler(spec, now=0.0, ready=1, initialized=True)
    for t in range(12):
        ra.record(float(t), 0.0, 0.0)
        ra.tick(float(t), 1)
    assert ra._at_rest_until(11.0, 1, math.inf) > 11.0  # idle, at rest: a timer ahead
    ra.record(11.0, 50.0, 0.0)  # a burst in the same second, after the tick
    assert ra._stepped is not None and ra._stepped[3] != ra.decider._stable.writes
    assert ra._at_rest_until(11.0, 1, math.inf) == 11.0  # the next tick scales up


def test_at_rest_until_sees_the_reconciler_still_moving_and_puts_it_back():
    """The tick that deactivates an idle revision leaves it Inactive with its replica; the next
    tick at the same instant scales it to zero (the activator has been in the path for the
    grace period). The fast path must say `now` and leave the state as the tick left it."""
    spec = _spec(60.0, 211.0)  # a stable window longer than the grace period
    ra = RevisionAutoscaler(spec, now=0.0, ready=1, initialized=True)
    t = 0
    while ra.active != "Inactive":
        ra.record(float(t), 0.0, 0.0)
        ra.tick(float(t), 1)
        t += 1
        assert t < 400
    now = float(t - 1)
    before = copy.deepcopy(vars(ra))
    assert ra._at_rest_until(now, 1, math.inf) == now
    assert vars(ra).keys() == before.keys()
    for key, value in before.items():
        if key != "decider":
            assert getattr(ra, key) == value, key
    assert ra.tick(now, 1).replicas == 0


@pytest.mark.parametrize("seed", range(4))
def test_recording_a_run_at_once_leaves_the_buckets_of_record(seed):
    """`_record_each` writes a run of the seconds right after the last write by slices and one
    reduction; other times one by one. Either way the buckets are bit for bit those of calling
    `record` for each time: short runs, runs that wrap the ring, runs longer than the window,
    runs that start later, fractional times, repeated seconds."""
    rng = random.Random(700 + seed)
    runs = 0
    for _ in range(150):
        window = rng.choice([1, 2, 6, 10, 60])
        one, each = TimedFloat64Buckets(window), TimedFloat64Buckets(window)
        t = 1000.0 + rng.randrange(60)
        for _ in range(rng.randrange(0, 3 * window)):
            value = rng.choice([0.0, rng.random() * 9, 1 / 3, float(rng.randrange(4))])
            one.record(t, value)
            each.record(t, value)
            t += rng.choice([1.0, 1.0, 1.0, 2.0, 0.0])
        start = (each.last_write if each.first_write is not None else t) + rng.choice(
            [1.0, 1.0, 1.0, 1.25, 2.0, 0.0]
        )
        count = rng.choice([1, 2, window, window + 1, rng.randrange(1, 4 * window + 2)])
        times = [start + k for k in range(count)]
        if rng.random() < 0.2:
            times.insert(rng.randrange(len(times)), times[0])  # a repeated second
            times.sort()
        value = rng.choice([0.0, 3.0, rng.random() * 5, 1 / 3])
        before = one.writes
        _record_each(one, times, 0, len(times), value)
        for at in times:
            each.record(at, value)
        assert one.buckets == each.buckets
        assert [bits(b) for b in one.buckets] == [bits(b) for b in each.buckets]
        assert bits(one.window_total) == bits(each.window_total)
        assert (one.first_write, one.last_write, one.writes) == (
            each.first_write,
            each.last_write,
            each.writes,
        )
        runs += one.writes - before == len(times) and times[0] == int(times[0])
    assert runs > 60


@pytest.mark.parametrize("seed", range(3))
def test_tick_replicas_is_the_ticks_replicas_and_leaves_the_same_state(seed):
    """The simulator's `tick_replicas` is `tick(...).replicas` without the `Decision`: the same
    answer and the same state after, tick after tick."""
    rng = random.Random(900 + seed)
    for _ in range(20):
        spec = _spec(rng.choice([6.0, 10.0, 60.0]), rng.choice([0.0, 20.0, 211.0, -1.0]))
        one = RevisionAutoscaler(spec, now=0.0)
        other = copy.deepcopy(one)
        ready = 0
        for t in range(rng.randrange(10, 300)):
            value = rng.choice([0.0, 0.0, rng.random() * 30])
            for ra in (one, other):
                ra.record(float(t), value, value)
            if t % 2 == 0:
                ready = max(0, ready + rng.choice([-1, 0, 0, 1]))
                reachable = rng.random() < 0.9
                assert one.tick(float(t), ready, reachable).replicas == other.tick_replicas(
                    float(t), ready, reachable
                )
                assert vars(one).keys() == vars(other).keys()
                for key, value in vars(one).items():
                    if key != "decider":
                        assert getattr(other, key) == value, key


def _unwritten_inputs(decider, t: float) -> tuple | None:
    """What a tick at `t` with no pod ready decides from, read as `scale` reads it: no data, or
    the stable and panic pods and the sign of the excess burst capacity."""
    spec = decider.spec
    if decider._stable.is_empty(t) and spec.target_burst_capacity != -1:
        return None
    observed_panic = decider._panic.window_average(t)
    ebc = decider._excess_burst_capacity(0, observed_panic)
    return (
        math.ceil(decider._stable.window_average(t) / spec.target_value),
        math.ceil(observed_panic / spec.target_value),
        ebc >= 0,
    )


@pytest.mark.parametrize("seed", range(6))
def test_unwritten_change_matches_reading_the_windows_second_by_second(seed):
    """`_unwritten_change`: with nothing recorded (no pod ready, no traffic), the first second
    at which a tick would read other inputs from the sliding windows (averages over the
    buckets still in them, which may rise as zeros leave; then no data at all)."""
    rng = random.Random(1100 + seed)
    checked = rising = 0
    for _ in range(60):
        spec = _spec(rng.choice([6.0, 10.0, 60.0]), rng.choice([0.0, 20.0, 211.0, -1.0]))
        ra = RevisionAutoscaler(spec, now=0.0)
        history = rng.choice([_sparse_history, _history])
        history(rng, ra, rng.randrange(20, 400), rng.randrange(0, 3))
        decider = ra.decider
        if decider._stable.first_write is None:
            continue
        now = float(int(decider._stable.last_write) + rng.choice([0, 0, 1, 3, 20]))
        if rng.random() < 0.3:
            now += 0.5  # a tick inside a second reads that second's bucket
        start = _unwritten_inputs(decider, now)
        expected = math.inf
        for b in range(int(now) + 1, int(now) + 2 * len(decider._stable.buckets) + 3):
            found = _unwritten_inputs(decider, float(b))
            if found != start:
                expected = float(b)
                rising += start is not None and found is not None and found[0] > start[0]
                break
        assert ra._unwritten_change(now) == expected
        checked += 1
    assert checked > 40 and rising > 0  # some stable pods rose as the older zeros left


def test_quiet_until_at_zero_skips_while_the_unwritten_windows_decide_the_same():
    """A revision at zero whose windows still hold data (its requests timed out before a pod
    was ready) used to tick every second; it now skips up to the first second its inputs or
    its state machine would move, and the skip lands where per-second ticks would."""
    spec = _spec(60.0, 211.0)
    ra = RevisionAutoscaler(spec, now=0.0)
    for t in range(0, 8):
        ra.record(float(t), 4.0, 1.0)  # queued requests, no pod ever ready
        ra.tick(float(t), 0)
    now = 8.0
    ra.tick(now, 0)
    until = ra.quiet_until(now, 0)
    assert until > now + 2.0
    every = copy.deepcopy(ra)
    desired = copy.deepcopy(ra.decider).scale(now, 0).desired
    ticks = [float(k) for k in range(int(now) + 2, math.ceil(until), 2)]
    for t in ticks:  # the decision ticks before the limit decide as the tick at `now`
        assert every.tick(t, 0).replicas is None
        assert copy.deepcopy(every.decider).scale(t, 0).desired == desired
    ra.skip_idle([], ticks, 0)
    for key, value in vars(every).items():
        if key not in ("decider", "_stepped"):
            assert getattr(ra, key) == value, key
