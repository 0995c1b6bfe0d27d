"""The baselines' event skipping, against ticking every second: after any tick in an idle
stretch, the ticks before `quiet_until` keep the count, and `skip_idle` over them (or over a
prefix, as when a request wakes the service early) leaves exactly the state that recording
zeros every second and ticking every 2 s leaves. Driven on bursty load with long idle gaps,
on an epoch clock and on one that is not whole seconds."""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import numpy as np
import pytest

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.autoscaler.baselines import (
    HPAAutoscaler,
    HybridHistogramAutoscaler,
    RayServeAutoscaler,
    make_autoscaler,
)
from tidal.autoscaler.kpa import decider_spec
from tidal.autoscaler.signals import Usage

HORIZON_S = 1400  # the longest span replayed per check (a skip may be endless)


def spec(cc: int = 1):
    config = AutoscalerConfig()
    return decider_spec(config, parse_autoscaling_annotations({}, config), cc)


def state(value: Any) -> Any:
    """An autoscaler's whole state as plain, comparable data."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (deque, list, tuple)):
        return [state(v) for v in value]
    if isinstance(value, dict):
        return {k: state(v) for k, v in value.items()}
    if hasattr(value, "__dict__"):
        return type(value).__name__, state(vars(value))
    return value


def record(scaler, now: float, concurrency: float, ready: int) -> None:
    """One stat period as the simulator hands it in (CPU of the requests in service for HPA;
    nothing recorded without a ready replica or traffic)."""
    if isinstance(scaler, HPAAutoscaler) and ready:
        busy = min(concurrency, ready * scaler.spec.total_value)
        scaler.record_usage(now, Usage(replicas=ready, cpu_cores=busy))
    if ready or concurrency:
        scaler.record(now, concurrency, concurrency)


# Bursts (up to so many seconds) and the idle gaps (s) between them: short bursts, gaps from
# a second to beyond the 600 s delays, many inside a 30 s look-back; only short gaps (idle
# times within a few histogram bins); a request every ~10 minutes (the hybrid histogram
# unloads and pre-warms); minutes of load (every policy scales up, then down).
SHAPES = {
    "bursty": (8, [1, 3, 8, 15, 25, 40, 90, 300, 650, 1300]),
    "short": (8, [1, 3, 8, 15, 25, 40, 90, 150]),
    "regular": (8, [540, 570, 600, 630, 660]),
    "sustained": (240, [5, 30, 200, 400, 700]),
}


def load(rng: np.random.Generator, seconds: int, shape: str) -> list[float]:
    """Bursts of fractional concurrency, often over the target, between idle gaps."""
    longest, gaps = SHAPES[shape]
    out: list[float] = []
    while len(out) < seconds:
        burst = rng.integers(1, longest)
        out += [float(rng.choice([0.4, 1.0, 1.5, 3.0, 6.0])) for _ in range(burst)]
        out += [0.0] * int(rng.choice(gaps))
    return out[:seconds]


def check_skips(scaler, clock0: float, seconds: int, shape: str, seed: int) -> int:
    """Drive `scaler` over `seconds` of load (replicas ready at once); after each tick right
    after load and a few others, compare a skip to the per-second replay. Returns how many
    skips were compared."""
    rng = np.random.default_rng(seed)
    loads = load(rng, seconds, shape)
    ready, compared, busy = 0, 0, 0
    for k, concurrency in enumerate(loads):
        now = clock0 + k
        record(scaler, now, concurrency, ready)
        busy = k if concurrency else busy
        if k % 2:
            continue
        decision = scaler.tick(now, ready)
        scaled = decision.replicas is not None
        if scaled:
            ready = decision.replicas  # from the next second on: the tick saw the old count
        if k + 1 == len(loads) or loads[k + 1]:
            continue  # busy in the next second (this one's load may have just ended)
        if k - busy > 4 and not scaled and rng.random() > 0.05:
            continue  # every tick right after load or scaling, a few of the others
        idle = next((j for j in range(k + 1, len(loads)) if loads[j]), len(loads)) - k - 1
        for seen in (ready, 0) if ready and rng.random() < 0.2 else (ready,):
            compared += compare(scaler, clock0, k, seen, idle, rng)
    return compared


def compare(scaler, clock0: float, k: int, ready: int, idle: int, rng) -> int:
    """After the tick at stat tick `k`: skip to `quiet_until` (or wake early, at random, before
    it or before the load comes back after `idle` seconds) on one copy, tick every second on
    another; the same state, and no tick in between changed the count. 1 if compared."""
    now = clock0 + k
    limit = scaler.quiet_until(now, ready)
    if limit <= now:
        return 0
    resume = k + 1
    while resume < k + 1 + HORIZON_S and clock0 + resume < limit:
        resume += 1
    last = min(resume - 1, k + idle)  # the last stat tick skipped
    if last > k + 1 and rng.random() < 0.3:
        last = int(rng.integers(k + 1, last))  # woken early
    if last <= k:
        return 0
    every, skipped = copy.deepcopy(scaler), copy.deepcopy(scaler)
    for j in range(k + 1, last + 1):
        record(every, clock0 + j, 0.0, ready)
        if j % 2 == 0:
            assert every.tick(clock0 + j, ready).replicas is None, (j - k, limit - now)
    records = [clock0 + j for j in range(k + 1, last + 1)] if ready else []
    ticks = [clock0 + j for j in range(k + 1, last + 1) if j % 2 == 0]
    skipped.skip_idle(records, ticks, ready)
    assert state(skipped) == state(every), (type(scaler).__name__, k, last - k)
    return 1


SCALERS = {
    "ray": lambda: make_autoscaler("ray", spec(), 0.0),
    "ray-short-delays": lambda: make_autoscaler(
        "ray", spec(), 0.0, settings={"upscale_delay_s": 10.0, "downscale_delay_s": 40.0}
    ),
    "hpa": lambda: make_autoscaler("hpa", spec(), 0.0),
    "keepalive": lambda: make_autoscaler("keepalive", spec(), 0.0),
    "hybrid-histogram": lambda: HybridHistogramAutoscaler(spec()),
    "peak": lambda: make_autoscaler("peak", spec(), 0.0, peak_replicas=2),
}


@pytest.mark.parametrize(
    ("shape", "clock0", "seconds"),
    [
        ("bursty", 1_700_000_000.0, 6000),
        ("bursty", 1_700_000_000.375, 6000),  # tick times that are not whole seconds
        ("short", 1_700_000_000.0, 3000),
        ("regular", 1_700_000_000.0, 20000),
        ("sustained", 1_700_000_000.0, 8000),
    ],
)
@pytest.mark.parametrize("name", sorted(SCALERS))
def test_skip_idle_leaves_the_state_ticking_every_second_leaves(name, shape, clock0, seconds):
    scaler = SCALERS[name]()
    compared = check_skips(scaler, clock0, seconds, shape, seed=len(name))
    assert compared > 30, compared


def test_ray_skips_its_downscale_delay_and_lays_down_the_look_back_zeros():
    """Warm replicas waiting out the 600 s downscale delay: skipped to the tick whose counter
    trips (half a stat period early), the skipped zeros in the look-back as recorded every
    second, so that the next reports average over them."""
    ray = make_autoscaler("ray", spec(cc=1), 0.0)
    assert isinstance(ray, RayServeAutoscaler)
    clock0, ready, t = 1_700_000_000.0, 0, 0
    for t in range(0, 120):  # 3 in flight for two minutes: scales up to 3
        record(ray, clock0 + t, 3.0, ready)
        if t % 2 == 0:
            decision = ray.tick(clock0 + t, ready)
            ready = decision.replicas if decision.replicas is not None else ready
    assert ready > 1
    for t in range(120, 200):  # idle long enough for the look-back to hold only zeros
        record(ray, clock0 + t, 0.0, ready)
        if t % 2 == 0:
            assert ray.tick(clock0 + t, ready).replicas is None
    now = clock0 + 198
    assert ray._reported == 0.0 and all(c == 0.0 for _, c in ray._samples)
    counter = ray._counter
    assert counter < 0
    trip = now + 2 * (int(600 / 2) + 1 + counter)  # the tick the counter passes -300 at
    assert ray.quiet_until(now, ready) == trip - 0.5
    every, skipped = copy.deepcopy(ray), copy.deepcopy(ray)
    seconds = range(199, int(trip - clock0))
    for t in seconds:
        record(every, clock0 + t, 0.0, ready)
        if t % 2 == 0:
            every.tick(clock0 + t, ready)
    skipped.skip_idle(
        [clock0 + t for t in seconds], [clock0 + t for t in seconds if t % 2 == 0], ready
    )
    assert state(skipped) == state(every)
    assert len(skipped._samples) > 25  # the look-back's zeros, not just the last tick's
    # A burst right after the skip: the next report averages it with those zeros.
    for scaler in (every, skipped):
        record(scaler, trip, 0.0, ready)
        assert scaler.tick(trip, ready).replicas == 0  # the trip itself ran for real
        for t in range(1, 12):
            record(scaler, trip + t, 4.0, 0)
    assert every.tick(trip + 12, 0) == skipped.tick(trip + 12, 0)
    assert every._reported == skipped._reported > 0


def test_ray_skip_stops_at_the_next_report_while_the_look_back_holds_load():
    ray = make_autoscaler("ray", spec(cc=1), 0.0)
    clock0, ready = 1_700_000_000.0, 0
    for t in range(0, 60):
        record(ray, clock0 + t, 2.0 if t < 50 else 0.0, ready)
        if t % 2 == 0:
            decision = ray.tick(clock0 + t, ready)
            ready = decision.replicas if decision.replicas is not None else ready
    now = clock0 + 58
    assert any(c for _, c in ray._samples)
    next_report = ray._reported_at + 10.0
    assert now < next_report and ray.quiet_until(now, ready) == next_report - 0.5


def test_hybrid_histogram_skips_from_the_second_that_begins_an_idle_period():
    """Right after load (the tick's own stat was busy), the next second's zero begins an idle
    period whose warm window starts at once: skipped to half a stat period before the window
    ends, where the count drops (not one tick later)."""
    hybrid = HybridHistogramAutoscaler(spec(cc=1))
    clock0, ready, k = 1_700_000_000.0, 0, 0
    for _ in range(60):  # a request, then ~30 s idle: a representative histogram, bin 0
        for t in range(k, k + 34):
            record(hybrid, clock0 + t, 0.5 if t < k + 2 else 0.0, ready)
            if t % 2 == 0:
                decision = hybrid.tick(clock0 + t, ready)
                ready = decision.replicas if decision.replicas is not None else ready
        k += 34
    record(hybrid, clock0 + k, 0.5, ready)
    assert hybrid.tick(clock0 + k, ready).replicas is None and ready == 1
    now = clock0 + k
    begin, end = hybrid._windows(now + 1)
    assert begin == now + 1 and end < now + 200  # warm from the idle start, for a few bins
    limit = hybrid.quiet_until(now, ready)
    assert limit == end - 0.5
    every = copy.deepcopy(hybrid)
    drop = next(t for t in range(k + 1, k + 400) if t % 2 == 0 and t >= end - clock0)
    for t in range(k + 1, drop + 1):
        record(every, clock0 + t, 0.0, ready)
        if t % 2 == 0:
            assert (every.tick(clock0 + t, ready).replicas is None) == (t < drop)
    assert compare(hybrid, clock0, k, ready, 400, np.random.default_rng(0)) == 1


def test_hybrid_histogram_windows_are_the_float_computation_they_replace():
    """The warm windows from running integer sums equal the numpy computation (std, cumsum,
    searchsorted) on random histograms and at a coefficient of variation of exactly 2."""

    def reference(h: HybridHistogramAutoscaler, idle_start: float) -> tuple[float, float]:
        total = int(h._bins.sum())
        if h._oob and h._oob / (h._oob + total) >= h.OOB_THRESHOLD:
            guess = h._predict_idle()
            prewarm = guess * (1 - h.ARIMA_MARGIN)
            return idle_start + prewarm, idle_start + prewarm + guess * h.ARIMA_MARGIN * 2
        mean = total / len(h._bins)
        cv = float(h._bins.std(ddof=1) / mean) if total else 0.0
        if cv < h.CV_THRESHOLD:
            return idle_start, idle_start + h.RANGE_S
        cumulative = np.cumsum(h._bins) / total
        head = int(np.searchsorted(cumulative, h.head))
        tail = int(np.searchsorted(cumulative, h.tail))
        prewarm = head * h.BIN_S * (1 - h.HISTOGRAM_MARGIN)
        keep = (tail + 1) * h.BIN_S * (1 + h.HISTOGRAM_MARGIN)
        return idle_start + prewarm, idle_start + prewarm + keep

    rng = np.random.default_rng(1)
    compared = 0
    for _ in range(40):
        head, tail = (float(q) for q in rng.choice([0.0, 0.05, 1 / 3, 0.5, 0.99, 1.0], 2))
        h = HybridHistogramAutoscaler(spec(), head=head, tail=tail)
        scale = float(rng.choice([20.0, 600.0, 4000.0, 20000.0]))
        for _ in range(int(rng.integers(0, 150))):
            h._add_idle_time(float(rng.exponential(scale)))
            start = float(rng.random() * 2e9)
            assert h._windows(start) == reference(h, start)
            compared += 1
    assert compared > 1000
    # 240 bins summing to 240 with squares summing to 1196: cv = 2 exactly, not below it.
    h = HybridHistogramAutoscaler(spec())
    for i, count in enumerate([30] + [2] * 43 + [1] * 124):
        for _ in range(count):
            h._add_idle_time(i * h.BIN_S + 1.0)
    assert float(h._bins.std(ddof=1)) / (h._total / len(h._bins)) == 2.0
    assert h._windows(5.0) == reference(h, 5.0) != (5.0, 5.0 + h.RANGE_S)
