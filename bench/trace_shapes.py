"""Twelve seeded request traces of shapes the predictive policy was never tuned on, written as
generic CSVs (`timestamp`) for `bench/pareto.py --no-synthetic DIR/*.csv` or `tidal simulate
--trace`: a check that `auto` does not cost more than the KPA on services it has not seen.

    python bench/trace_shapes.py OUTDIR [--seed 11] [--days 9]

Shapes: heavy-tailed (Pareto) gaps, business hours on weekdays, hourly batches, three cron jobs
a day, a timer that changes period, a timer with an outage day, a jittered timer plus noise, a
low-rate diurnal service, traffic that decays, fixed-size bursts at Poisson times, traffic that
grows, and a one-off launch on a sparse service. Each shape draws from its own generator (seed,
shape), so adding one does not change the others.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

DAY = 86_400.0
EPOCH = 1_735_689_600.0  # 2025-01-01 00:00 UTC, a Wednesday


def _each_second(rng: np.random.Generator, rate: np.ndarray) -> np.ndarray:
    """A request in second t with probability `rate[t]` (at most one a second)."""
    seconds = np.arange(rate.size)
    return (seconds[rng.random(seconds.size) < rate]).astype(float)


def pareto_gaps(rng: np.random.Generator, days: float) -> np.ndarray:
    return np.cumsum((rng.pareto(1.2, int(days * 2500)) + 1.0) * 8.0)


def business_hours(rng: np.random.Generator, days: float) -> np.ndarray:
    """Sessions of 1-6 requests about 4 s apart, ~20 an hour from 09:00 to 17:00 on weekdays."""
    out = []
    for day in range(int(days)):
        if (2 + day) % 7 in (5, 6):  # day 0 is a Wednesday: skip Saturdays and Sundays
            continue
        starts = day * DAY + 9 * 3600 + np.sort(rng.uniform(0, 8 * 3600, rng.poisson(160)))
        for start in starts:
            out.append(start + np.cumsum(rng.exponential(4.0, rng.integers(1, 7))))
    return np.concatenate(out)


def hourly_batch(rng: np.random.Generator, days: float) -> np.ndarray:
    """40 requests in the first 90 s of every hour."""
    return np.concatenate([h * 3600 + rng.uniform(0, 90, 40) for h in range(int(days * 24))])


def cron3(rng: np.random.Generator, days: float) -> np.ndarray:
    """100 requests a few seconds apart at 02:00, 08:30 and 20:15 every day."""
    return np.concatenate(
        [
            d * DAY + at + np.cumsum(rng.exponential(3.0, 100))
            for d in range(int(days))
            for at in (7200, 30600, 72900)
        ]
    )


def drift_timer(rng: np.random.Generator, days: float) -> np.ndarray:
    """Every 10 minutes for five days, then every 3 minutes at another phase."""
    before, after = np.arange(0, 5 * DAY, 600.0), np.arange(5 * DAY + 77, days * DAY, 180.0)
    ticks = np.concatenate([before, after])
    return ticks + rng.normal(0, 2, ticks.size)


def timer7_outage(rng: np.random.Generator, days: float) -> np.ndarray:
    """Every 7 minutes, silent on the fifth day."""
    ticks = np.arange(0, days * DAY, 420.0)
    ticks = ticks[(ticks < 4 * DAY) | (ticks >= 5 * DAY)]
    return ticks + rng.uniform(0, 3, ticks.size)


def timer5_jitter(rng: np.random.Generator, days: float) -> np.ndarray:
    """Every 5 minutes with 15 s of jitter, plus 200 requests at random."""
    ticks = np.arange(0, days * DAY, 300.0)
    noise = rng.uniform(0, days * DAY, 200)
    return np.concatenate([ticks + rng.normal(0, 15, ticks.size), noise])


def diurnal_low(rng: np.random.Generator, days: float) -> np.ndarray:
    """Poisson at up to 0.02 req/s in the afternoon, next to none at night."""
    seconds = np.arange(int(days * DAY))
    phase = (seconds % DAY) / DAY * 2 * np.pi - np.pi / 2 - 0.5
    return _each_second(rng, 0.02 * np.clip(np.sin(phase), 0, None) ** 2)


def decay(rng: np.random.Generator, days: float) -> np.ndarray:
    """0.05 req/s for three days, then 0.001 req/s."""
    busy = np.cumsum(rng.exponential(20.0, 13_000))
    busy = busy[busy < 3 * DAY]
    return np.concatenate([busy, 3 * DAY + np.cumsum(rng.exponential(1000.0, int(days * 90)))])


def poisson_bursts(rng: np.random.Generator, days: float) -> np.ndarray:
    """30 requests a second apart, bursts about every 2 hours at random."""
    starts = np.cumsum(rng.exponential(7200.0, int(days * 24)))
    return np.concatenate([start + np.arange(30.0) for start in starts])


def growing(rng: np.random.Generator, days: float) -> np.ndarray:
    """A daytime service whose traffic doubles every day and a half: 0.002 req/s at the first
    day's peak, about 0.13 req/s at the ninth's."""
    seconds = np.arange(int(days * DAY))
    daytime = np.clip(np.sin((seconds % DAY) / DAY * 2 * np.pi - np.pi / 2), 0, None)
    return _each_second(rng, 0.002 * 2.0 ** (seconds / (1.5 * DAY)) * daytime)


def one_off(rng: np.random.Generator, days: float) -> np.ndarray:
    """A request every 20 minutes or so at random, and once (day 6, 14:00) a launch: about
    3,000 requests in an hour, rising and falling."""
    background = np.cumsum(rng.exponential(1200.0, int(days * 80)))
    launch = 5 * DAY + 14 * 3600 + rng.triangular(0, 900, 3600, 3000)
    return np.concatenate([background, launch])


SHAPES: dict[str, Callable[[np.random.Generator, float], np.ndarray]] = {
    "pareto-gaps": pareto_gaps,
    "business-hours": business_hours,
    "hourly-batch": hourly_batch,
    "cron3": cron3,
    "drift-timer": drift_timer,
    "timer7-outage": timer7_outage,
    "timer5-jitter": timer5_jitter,
    "diurnal-low": diurnal_low,
    "decay": decay,
    "poisson-bursts": poisson_bursts,
    "growing": growing,
    "one-off": one_off,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--days", type=float, default=9.0)
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    for index, (name, shape) in enumerate(SHAPES.items()):
        rng = np.random.default_rng([args.seed, index])
        times = shape(rng, args.days)
        times = np.sort(times[(times >= 0) & (times < args.days * DAY)])
        path = args.outdir / f"{name}-s{args.seed}.csv"
        with path.open("w") as out:
            out.write("timestamp\n")
            out.writelines(f"{EPOCH + t:.3f}\n" for t in times)
        print(f"{path}: {len(times):,} requests")


if __name__ == "__main__":
    main()
