"""A seeded synthetic load history: a daily cycle, a weekly dip, noise and random bursts.

Shaped like museum-hours traffic: quiet nights, a broad daytime hump, lower
weekends, and unannounced event bursts the forecast cannot know about.
"""

from __future__ import annotations

import numpy as np

MONDAY = 1_704_067_200.0  # 2024-01-01 00:00 UTC, a Monday


def synthetic_history(
    days: int = 14,
    seed: int = 0,
    start: float = MONDAY,
    base: float = 5.0,
    peak: float = 100.0,
    weekend_factor: float = 0.6,
    noise: float = 0.08,
    bursts_per_day: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-minute (timestamps in epoch seconds, demand) for `days` days from `start`.

    Demand is `base` at night rising to `peak` around 13:00 (weekdays; weekends are scaled by
    `weekend_factor`), times log-normal noise of relative size `noise`, plus Poisson-many
    bursts a day of 5-30 minutes at 30-80 % of `peak`."""
    rng = np.random.default_rng(seed)
    n = days * 1440
    minute = np.arange(n)
    hour = (minute % 1440) / 60.0
    # A hump between 07:00 and 21:00, highest at 14:00.
    hump = np.clip(np.sin(np.pi * (hour - 7.0) / 14.0), 0.0, None) ** 1.5
    weekday = (minute // 1440 + int(start // 86_400 + 3) % 7) % 7  # 1970-01-01 was a Thursday
    level = np.where(weekday >= 5, weekend_factor, 1.0)
    demand = (base + (peak - base) * hump) * level
    demand *= rng.lognormal(-0.5 * noise**2, noise, n)
    for _ in range(rng.poisson(bursts_per_day * days)):
        at = int(rng.integers(0, n))
        length = int(rng.integers(5, 31))
        demand[at : at + length] += rng.uniform(0.3, 0.8) * peak
    return start + 60.0 * minute, demand
