"""Walk-forward backtest of the forecast and plan against two baselines (docs/predictive.md):
for each fold (a day; an hour, or 10 minutes, for histories under three days, or three hours),
fit on what came before and forecast the fold.

Every method gets the same treatment: its point forecast scores MASE (against the in-sample
same-minute-yesterday error), and `mean + Q_q(its in-sample residuals)` goes through the same
`plan_replicas` to count under-provisioned minutes (replicas x target < demand) and
replica-minutes. Two replays run beside them: `reactive_kpa` (replicas from the demand seen
one stable window earlier, arriving one Ready Time later) and `tidal_auto` (the
`PredictivePolicy` in auto mode over that reactive path and the tidal plans).

Choice of forecast (`synthetic_history(seed=0)`, q 0.95, lead 2 min, target 10; MASE /
under-provisioned minutes / fit time per day):
- seasonal-median profile: days 2-13 of 14: 0.78 / 0.72 % / 18 ms; days 14-20 of 21: 0.35 /
  1.25 % / 40 ms.
- STL (robust, 10-min bins, period 1 d; MSTL 1 d + 1 w once a week is found) + the same band:
  days 2-13: 1.24 / 4.2 % / 0.8 s; days 14-20: 0.71 / 3.2 % / 23 s (MSTL).
STL on raw 1-minute data takes ~20 s a fit, far over the 1 s planning budget.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from tidal.api.predictive import PredictiveAnnotations
from tidal.api.textfile import not_text
from tidal.api.units import epoch_unit, parse_timestamp
from tidal.autoscaler.predictive.forecast import filled, forecast
from tidal.autoscaler.predictive.forecast import seasonal_naive as seasonal_naive_forecast
from tidal.autoscaler.predictive.periods import DAY, interpolate_gaps
from tidal.autoscaler.predictive.plan import Plan, plan_replicas
from tidal.autoscaler.predictive.policy import PredictivePolicy

MAX_SPAN_MINUTES = 5 * 366 * DAY  # five years of minutes: longer is a mistake in the file


def load_history_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read `timestamp,value` rows (ISO 8601, naive = UTC, or epoch seconds, milliseconds,
    microseconds or nanoseconds, told apart by size; a header line and a UTF-8 byte-order mark
    are allowed) into per-minute (timestamps, values): the mean of the samples in each minute,
    NaN where there were none. A coarser series (e.g. 5-min) is interpolated between its
    samples. Raises ValueError naming the file and line of a bad row."""
    try:
        stamps, values = _samples(path)
    except UnicodeDecodeError as exc:
        raise not_text(path, exc) from None
    if not stamps:
        raise ValueError(f"{path}: no rows")
    minutes = np.floor(np.asarray(stamps) / 60.0).astype(np.int64)
    first = int(minutes.min())
    span = int(minutes.max()) - first + 1
    if span > MAX_SPAN_MINUTES:
        limit = MAX_SPAN_MINUTES // DAY
        raise ValueError(f"{path}: timestamps span {span // DAY:,} days; at most {limit:,} allowed")
    slot = minutes - first
    v = np.asarray(values)
    ok = ~np.isnan(v)
    counts = np.bincount(slot[ok], minlength=span)
    sums = np.bincount(slot[ok], weights=v[ok], minlength=span)
    with np.errstate(invalid="ignore", divide="ignore"):
        series = np.where(counts > 0, sums / counts, np.nan)
    step = int(np.median(np.diff(np.unique(slot)))) if len(np.unique(slot)) > 1 else 1
    if step > 1:
        series = interpolate_gaps(series, max_gap=step - 1)
    return 60.0 * (first + np.arange(span)), series


def _samples(path: str | Path) -> tuple[list[float], list[float]]:
    """The file's (epoch seconds, value) rows as they stand, header skipped."""
    stamps, values = [], []
    unit: float | None = None
    with open(path, newline="", encoding="utf-8-sig") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'timestamp,value', got {row!r}")
            text, value = (cell.strip() for cell in row)
            if lineno == 1 and not _is_number(value):
                continue  # header
            if unit is None:
                unit = epoch_unit(text)
            try:
                stamps.append(parse_timestamp(text, unit))
            except ValueError as error:
                raise ValueError(f"{path}:{lineno}: {error}") from None
            values.append(_value(value, f"{path}:{lineno}"))
    return stamps, values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _value(text: str, where: str) -> float:
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: bad value {text!r} (a number)") from None
    if value < 0 or math.isinf(value):
        raise ValueError(f"{where}: bad value {text!r} (a finite number >= 0)")
    return value


# --- Forecasters: (train, horizon, quantile) -> (mean, upper) -----------------------------------


def seasonal_naive(train: np.ndarray, horizon: int, q: float) -> tuple[np.ndarray, np.ndarray]:
    """Same minute last week (with a week and a day of history), else yesterday, else the last
    value; band from its own in-sample errors."""
    result = seasonal_naive_forecast(train, q, horizon)
    return result.mean, result.upper


def holt_winters(train: np.ndarray, horizon: int, q: float) -> tuple[np.ndarray, np.ndarray]:
    """Additive Holt-Winters with a daily season (statsmodels); band from its residuals. NaN
    (not scored) with under two days of history."""
    y = filled(train)
    if len(y) < 2 * DAY:
        nan = np.full(horizon, math.nan)
        return nan, nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ExponentialSmoothing(
            y, seasonal="add", seasonal_periods=DAY, initialization_method="heuristic"
        ).fit()
    mean = np.clip(fit.forecast(horizon), 0.0, None)
    return mean, mean + max(float(np.quantile(fit.resid, q)), 0.0)


BASELINES = {
    "seasonal_naive": seasonal_naive,
    "holt_winters": holt_winters,
}


# --- Replays ------------------------------------------------------------------------------------


def reactive_replay(
    demand: np.ndarray, target: float, lead_minutes: int, window_minutes: int = 1
) -> np.ndarray:
    """A KPA-like reactive path at minute resolution: replicas ready at minute t are
    `ceil(mean demand over the stable window ending at t - lead / target)` (the decision made
    one Ready Time earlier). Missing demand counts as 0."""
    y = np.nan_to_num(np.asarray(demand, dtype=float))
    sums = np.concatenate(([0.0], np.cumsum(y)))
    end = np.arange(len(y)) - lead_minutes + 1  # exclusive end of the observed window
    begin = np.clip(end - window_minutes, 0, None)
    end = np.clip(end, 0, None)
    observed = (sums[end] - sums[begin]) / window_minutes
    return np.ceil(observed / target - 1e-9).astype(np.int64)


def policy_replay(
    plans: list[Plan], reactive: np.ndarray, settings: PredictiveAnnotations
) -> np.ndarray:
    """Run `PredictivePolicy` once a minute over the plans (back to back) and `reactive`."""
    policy = PredictivePolicy(settings)
    out = np.empty(len(reactive), dtype=np.int64)
    i = 0
    for plan in plans:
        policy.set_plan(plan)
        for k in range(len(plan.replicas)):
            now = plan.start + 60.0 * k
            out[i] = policy.decide(now, int(reactive[i]), int(out[i - 1]) if i else 0).replicas
            i += 1
    return out


# --- Backtest -----------------------------------------------------------------------------------


def fold_minutes(length: int) -> int:
    """A day with three days of history or more; else an hour with three hours; else 10 min."""
    return DAY if length >= 3 * DAY else 60 if length >= 3 * 60 else 10


def backtest(
    values: np.ndarray,
    target: float,
    quantile: float = 0.95,
    lead_minutes: int = 2,
    start: float = 0.0,
    first_day: int = 2,
    on_day: Callable[[], None] | None = None,
) -> dict:
    """Walk forward through a per-minute history (starting at epoch `start`) one fold at a time
    (`fold_minutes`) from fold `first_day`. Returns `{"methods": {name: {mase,
    under_provisioned_minutes, replica_minutes, minutes}}, "days": n, "folds": n,
    "foldMinutes": m, "chosen": {method: folds}}`; MASE is None for the replays."""
    y = np.asarray(values, dtype=float)
    fold = fold_minutes(len(y))
    folds = len(y) // fold
    if folds <= first_day:
        raise ValueError(
            f"need more than {first_day} folds of {fold} minutes of history "
            f"({(first_day + 1) * fold} minutes), got {len(y)} minute{'s' * (len(y) != 1)}"
        )
    truth = y[first_day * fold : folds * fold]
    names = ("tidal", *BASELINES)
    per_method: dict[str, list[np.ndarray]] = {name: [] for name in names}
    mase: dict[str, list[float]] = {name: [] for name in names}
    chosen: dict[str, int] = {}
    plans = []
    for d in range(first_day, folds):
        train, actual = y[: d * fold], y[d * fold : (d + 1) * fold]
        scale = _mase_scale(train)
        result = forecast(train, quantile, fold)
        chosen[result.method] = chosen.get(result.method, 0) + 1
        outputs = {"tidal": (result.mean, result.upper)}
        outputs |= {name: fn(train, fold, quantile) for name, fn in BASELINES.items()}
        for name, (mean, upper) in outputs.items():
            mase[name].append(_nanmean(np.abs(actual - mean)) / scale if scale else math.nan)
            per_method[name].append(plan_replicas(np.nan_to_num(upper), target, lead_minutes))
        present = int(np.count_nonzero(~np.isnan(train)))
        replicas = per_method["tidal"][-1]
        plans.append(Plan(start + d * fold * 60.0, replicas, result, lead_minutes, target, present))
        if on_day is not None:  # progress for the CLI
            on_day()
    reactive = reactive_replay(y, target, lead_minutes)[first_day * fold : folds * fold]
    settings = PredictiveAnnotations(quantile=quantile, min_history=first_day * fold * 60.0)
    report = {
        name: _score(truth, np.concatenate(per_method[name]), target, _nanmean(mase[name]))
        for name in names
        if not math.isnan(_nanmean(mase[name])) or name == "tidal"
    }
    report["reactive_kpa"] = _score(truth, reactive, target, None)
    report["tidal_auto"] = _score(truth, policy_replay(plans, reactive, settings), target, None)
    return {
        "methods": report,
        "days": round((folds - first_day) * fold / DAY, 2),
        "folds": folds - first_day,
        "foldMinutes": fold,
        "chosen": chosen,
    }


def trace_rate(path: str | Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A request trace (any format `tidal simulate` reads) as per-minute (timestamps, req/s)."""
    from tidal.sim.traces import load_trace

    trace = load_trace(path, seed)
    minutes = max(int(np.ceil(trace.duration / 60.0)), 1)
    counts = np.bincount((trace.arrivals // 60.0).astype(np.int64), minlength=minutes)
    return trace.start_epoch + 60.0 * np.arange(len(counts)), counts / 60.0


def _mase_scale(train: np.ndarray) -> float:
    """In-sample mean absolute error of same-minute-yesterday (of the previous minute when
    under two days)."""
    lag = DAY if len(train) > DAY else 1
    scale = _nanmean(np.abs(train[lag:] - train[:-lag]))
    return 0.0 if math.isnan(scale) else scale


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else math.nan


def _score(truth: np.ndarray, replicas: np.ndarray, target: float, mase: float | None) -> dict:
    known = ~np.isnan(truth)
    under = int(np.count_nonzero(replicas[known] * target < truth[known]))
    return {
        "mase": None if mase is None or math.isnan(mase) else round(mase, 4),
        "under_provisioned_minutes": under,
        "replica_minutes": int(replicas.sum()),
        "minutes": int(known.sum()),
    }
