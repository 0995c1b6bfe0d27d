"""Plans and warm models for predictive revisions, built off the event loop from the stored
history (docs/predictive.md).

Every revision of class `predictive.tidal.dev` (or the `ahpa.autoscaling.knative.dev` alias)
gets, hourly, what the simulator's replay gets (`tidal.autoscaler.predictive.refit`): a
1,440-minute plan from the service's per-minute demand on the metric it scales on (mean
concurrency, request rate, CPU cores, memory, GPU or RT: `signals.planning_spec`) over the
last 28 days, led by the measured Ready Time (p90) or
`tidal.dev/scale-up-lead`; and the priced warm decision, fitted on the idle gaps the autoscaler
saw plus those in the history before it started. Building runs in a worker thread so the data
plane never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import Gauge

from tidal.api.predictive import PredictiveAnnotations
from tidal.autoscaler.kpa import DeciderSpec
from tidal.autoscaler.predictive.autoscaler import PredictiveAutoscaler
from tidal.autoscaler.predictive.bounds import Bounds
from tidal.autoscaler.predictive.ledger import Ledger
from tidal.autoscaler.predictive.plan import Plan, ready_time_lead
from tidal.autoscaler.predictive.policy import PolicyDecision, PredictivePolicy
from tidal.autoscaler.predictive.refit import (
    REFIT_S,
    WARM_REFIT_S,
    build_models,
    measured_saving,
    ready_seconds,
    refit_warm,
)
from tidal.autoscaler.predictive.warm import MIN_GAPS
from tidal.autoscaler.signals import demand_series, plan_columns, plan_unit
from tidal.store.history import MetricHistory

HISTORY_DAYS = 28
REPLAN_S = REFIT_S
LABELS = ["namespace", "revision"]
PREDICTED_DEMAND = Gauge(
    "tidal_predicted_demand", "Forecast demand at the plan's quantile for this minute", LABELS
)
PLANNED_REPLICAS = Gauge("tidal_planned_replicas", "Replicas the plan wants now", LABELS)
RECOMMENDED_REPLICAS = Gauge(
    "tidal_recommended_replicas", "What auto mode runs now (observer mode exposes it)", LABELS
)


@dataclass
class Planned:
    """A predictive revision and its current plan."""

    namespace: str
    service: str
    revision: str
    spec: DeciderSpec
    settings: PredictiveAnnotations
    autoscaler: PredictiveAutoscaler
    plan: Plan | None = None
    planned_at: float = 0.0
    warm_at: float = 0.0


def demand_history(
    history: MetricHistory, namespace: str, service: str, metric: str, now: float
) -> tuple[np.ndarray, float]:
    """The service's demand on `metric` (the plan spec's `scaling_metric`) per minute up to the
    current minute (exclusive), and the epoch second where the plan after it starts."""
    end = int(now // 60)
    first = history.first_minute(namespace, service)
    start = end if first is None else max(first, end - HISTORY_DAYS * 1440)
    columns = {
        name: history.service_series(namespace, service, name, start, end)
        for name in plan_columns(metric)
    }
    return demand_series(metric, columns), end * 60.0


def lead_minutes(
    history: MetricHistory, namespace: str, service: str, settings: PredictiveAnnotations
) -> int:
    if settings.scale_up_lead is not None:
        return math.ceil(settings.scale_up_lead / 60.0)
    return ready_time_lead(np.asarray(history.ready_times(namespace, service)))


class Forecaster:
    def __init__(self, history: MetricHistory) -> None:
        self.history = history
        self.revisions: dict[str, Planned] = {}  # kept by tidal.controller.handle.Revisions

    def forget(self, planned: Planned) -> None:
        """The revision is gone (the platform's handle map dropped it from `revisions`)."""
        for gauge in (PREDICTED_DEMAND, PLANNED_REPLICAS, RECOMMENDED_REPLICAS):
            with contextlib.suppress(KeyError):
                gauge.remove(planned.namespace, planned.revision)

    def ready_s(self, namespace: str, service: str, settings: PredictiveAnnotations) -> float:
        """The Ready Time the warm decision pre-warms by: the fixed lead, or the measured p90."""
        if settings.scale_up_lead is not None:
            return settings.scale_up_lead
        return ready_seconds(self.history.ready_times(namespace, service))

    async def build(
        self, namespace: str, service: str, spec: DeciderSpec, settings: PredictiveAnnotations
    ) -> Plan:
        """A fresh plan and warm model from the service's history and, when one of its
        revisions is predictive, the idle gaps that autoscaler saw; the fitting runs in a
        worker thread (the gaps are copied here, on the event loop)."""
        series, start = demand_history(
            self.history, namespace, service, spec.scaling_metric, time.time()
        )
        lead = lead_minutes(self.history, namespace, service, settings)
        ready_s = self.ready_s(namespace, service, settings)
        watcher = next(
            (
                p.autoscaler
                for p in self.revisions.values()
                if (p.namespace, p.service) == (namespace, service) and p.spec is spec
            ),
            None,
        )
        bounds = Bounds(spec.min_scale, spec.max_scale, settings.bounds, settings.timezone)
        gaps = list(watcher.gaps) if watcher is not None else []
        since = watcher.observing_since if watcher is not None else None
        used = watcher.policy.warm if watcher is not None else None
        ledger = copy.copy(watcher.ledger) if watcher is not None else None
        plan, _, _ = await asyncio.to_thread(
            build_models,
            series,
            start,
            spec,
            settings,
            lead,
            ready_s,
            bounds,
            gaps,
            since,
            used,
            ledger,
        )
        return plan

    async def replan_due(self) -> None:
        """Rebuild every plan older than REPLAN_S (and build the missing ones); refit warm
        models older than WARM_REFIT_S."""
        now = time.time()
        for planned in list(self.revisions.values()):
            if planned.plan is None or now - planned.planned_at >= REPLAN_S:
                planned.plan = await self.build(
                    planned.namespace, planned.service, planned.spec, planned.settings
                )
                planned.planned_at = planned.warm_at = now
                planned.autoscaler.set_plan(planned.plan)
            elif now - planned.warm_at >= WARM_REFIT_S:
                planned.warm_at = now
                await self.refit_warm(planned, now)

    async def refit_warm(self, planned: Planned, now: float) -> None:
        """The warm model alone, from the history and the gaps seen, in a worker thread on a
        copy (the autoscaler itself is only touched here, on the event loop)."""
        series, start = demand_history(
            self.history, planned.namespace, planned.service, planned.spec.scaling_metric, now
        )
        settings = planned.settings
        ready_s = self.ready_s(planned.namespace, planned.service, settings)
        watcher = planned.autoscaler
        shadow = PredictiveAutoscaler(watcher.reactive, PredictivePolicy(settings))
        shadow.gaps, shadow.observing_since = list(watcher.gaps), watcher.observing_since
        shadow.ledger = copy.copy(watcher.ledger)  # read by the refit, off the event loop
        model = await asyncio.to_thread(
            refit_warm, shadow, series, start, planned.spec, settings, ready_s, watcher.policy.warm
        )
        watcher.policy.set_warm(model, shadow.policy.gaps_seen)

    def export(self) -> None:
        """Publish each predictive revision's current numbers as gauges."""
        now = time.time()
        for planned in self.revisions.values():
            labels = (planned.namespace, planned.revision)
            plan, last = planned.plan, planned.autoscaler.last
            if plan is not None:
                index = int((now - plan.start) // 60)
                if 0 <= index < len(plan.replicas):
                    PREDICTED_DEMAND.labels(*labels).set(float(plan.forecast.upper[index]))
                    PLANNED_REPLICAS.labels(*labels).set(int(plan.replicas[index]))
            if last is not None:
                RECOMMENDED_REPLICAS.labels(*labels).set(last.recommended)


def plan_view(
    namespace: str,
    service: str,
    revision: str,
    settings: PredictiveAnnotations,
    metric: str,
    plan: Plan,
    last: PolicyDecision | None,
    history: MetricHistory,
) -> dict[str, Any]:
    """What `tidal forecast` shows: periods, mode and why, Ready Time, the plan, and the
    recent history it was built from (demand and ready replicas)."""
    ready_times = history.ready_times(namespace, service)
    recent_minutes = 2 * 1440
    end = int(plan.start // 60)
    demand, _ = demand_history(history, namespace, service, metric, plan.start)
    ready = history.service_series(namespace, service, "ready_replicas", end - recent_minutes, end)
    return {
        "namespace": namespace,
        "service": service,
        "revision": revision,
        "mode": settings.mode,
        "modeUsed": last.mode_used if last else None,
        "reason": last.reason if last else "no decision yet",
        "periodsMinutes": list(plan.periods),
        "method": plan.method,
        "forecastReason": plan.forecast.reason,
        "quantile": settings.quantile,
        "readyTimeP90Seconds": float(np.percentile(ready_times, 90)) if ready_times else None,
        "readyTimeSamples": len(ready_times),
        "leadMinutes": plan.lead_minutes,
        "metric": metric,
        "unit": plan_unit(metric),
        "targetPerReplica": plan.target_per_replica,
        "historyMinutes": plan.history_minutes,
        "start": plan.start,
        "replicas": [int(r) for r in plan.replicas],
        "cautiousReplicas": [int(r) for r in plan.cautious] if plan.cautious is not None else None,
        "warm": warm_view(plan),
        "demand": _floats(plan.forecast.mean),
        "upper": _floats(plan.forecast.upper),
        "recent": {
            "start": (end - recent_minutes) * 60.0,
            "demand": _floats(demand[-recent_minutes:], pad_to=recent_minutes),
            "readyReplicas": _floats(ready),
        },
    }


def warm_view(plan: Plan) -> dict[str, Any]:
    """The priced warm decision's fit: what a cold start is worth, what it expects vs the KPA."""
    model = plan.warm
    if model is None:
        return {"fitted": False, "gaps": plan.gaps_seen, "needGaps": MIN_GAPS}
    return {
        "fitted": True,
        "used": model.useful,
        "gaps": model.gaps,
        "coldStartCostReplicaSeconds": round(model.price, 1),
        "autoPrice": model.auto_price,
        "readySeconds": round(model.ready_s, 1),
        "kpaTailSeconds": model.kpa_tail_s,
        "expectedReplicaTimeVsKpa": round(model.expected_cost_ratio, 3),
        "expectedColdStartsVsKpa": (
            round(model.expected_cold_ratio, 3) if model.evidence else None
        ),
    }


def _floats(values: np.ndarray, pad_to: int = 0) -> list[float | None]:
    out = [None if math.isnan(v) else round(float(v), 4) for v in np.asarray(values, float)]
    return [None] * (pad_to - len(out)) + out if pad_to > len(out) else out


def account_view(ledger: Ledger, spec: DeciderSpec, ready_s: float) -> dict[str, Any]:
    """The live account of replica time behind the auto price (docs/predictive.md): what
    prediction spent against what the KPA alone would have, both decayed with a week's
    half-life, the cold starts it avoided and caused, and whether that shows a saving that
    widens the price's budget."""
    return {
        "spentReplicaSeconds": round(ledger.spent, 1),
        "kpaReplicaSeconds": round(ledger.kpa, 1),
        "coldStartsAvoided": round(ledger.avoided, 2),
        "coldStartsCaused": round(ledger.caused, 2),
        "savingMeasured": measured_saving(ledger, spec, ready_s),
    }
