"""Read-only views the console's pages are drawn from: the services table, one service's
revisions and charts. Built from the store, the live scaling entries and the sampler."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from tidal.console.sampler import Sampler, Series
from tidal.controller.history import histogram_quantile
from tidal.controller.routes import key_of

CLASS_ANNOTATION = "autoscaling.knative.dev/class"
DEFAULT_CLASS = "kpa.autoscaling.knative.dev"
RATE_WINDOW_S = 10
WINDOWS = {"hour": (60, 1), "day": (1440, 1), "week": (7 * 1440, 10)}  # minutes, minutes a point


def _revisions(platform: Any, namespace: str | None) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Live revisions by (namespace, service), oldest first: one read of the store."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for revision in platform.store.list("Revision", namespace):
        meta = revision["metadata"]
        service = meta.get("labels", {}).get("serving.knative.dev/service", "")
        out.setdefault((meta["namespace"], service), []).append(platform.live_revision(revision))
    for revisions in out.values():
        revisions.sort(key=lambda r: r["metadata"]["name"])
    return out


def _ready(obj: dict[str, Any]) -> str:
    for condition in obj.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown"))
    return "Unknown"


def _reason(obj: dict[str, Any]) -> str:
    for condition in obj.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready" and condition.get("status") != "True":
            return ": ".join(x for x in (condition.get("reason"), condition.get("message")) if x)
    return ""


def _mean_tail(values: Any, n: int) -> float:
    tail = list(values)[-n:]
    return round(sum(tail) / len(tail), 3) if tail else 0.0


def _p95(series: list[Series]) -> float | None:
    merged: dict[float, float] = {}
    for s in series:
        if len(s.buckets) < 2:
            continue
        first, last = s.buckets[0], s.buckets[-1]
        for le, count in last.items():
            merged[le] = merged.get(le, 0.0) + count - first.get(le, 0.0)
    return histogram_quantile(0.95, merged)


def service_rows(
    platform: Any, sampler: Sampler, only: tuple[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per service for the Services table (or only for the service `only`)."""
    rows = []
    hour_ago = time.time() - 3600
    services = platform.store.list("Service", only[0] if only else None)
    by_service = _revisions(platform, only[0] if only else None)
    for service in services:
        meta = service["metadata"]
        ns, name = meta["namespace"], meta["name"]
        if only is not None and (ns, name) != only:
            continue
        revisions = by_service.get((ns, name), [])
        series = [
            sampler.series[(ns, r["metadata"]["name"])]
            for r in revisions
            if (ns, r["metadata"]["name"]) in sampler.series
        ]
        planned = [s.planned[-1] for s in series if s.planned and s.planned[-1] is not None]
        newest = revisions[-1] if revisions else {}
        route = platform.store.get("Route", ns, name) or {}
        template = service.get("spec", {}).get("template", {}).get("metadata", {})
        predictive = platform.forecaster.revisions.get(
            key_of(ns, newest.get("metadata", {}).get("name", ""))
        )
        autoscaler = newest.get("status", {}).get("autoscaler", {})
        rows.append(
            {
                "namespace": ns,
                "name": name,
                "url": service.get("status", {}).get("url", ""),
                "domains": [f"http://{d}" for d in platform.domains.domains_of(ns, name)],
                "ready": _ready(service),
                "reason": _reason(service),
                "traffic": route.get("status", {}).get("traffic", []),  # as routed now
                "rps": round(sum(_mean_tail(s.rps, RATE_WINDOW_S) for s in series), 3),
                "concurrency": sum(s.concurrency[-1] for s in series if s.concurrency),
                "p95": _p95(series),
                "coldStartsHour": sum(
                    c for s in series for t, c in zip(s.t, s.cold, strict=True) if t >= hour_ago
                ),
                "replicas": sum(s.ready[-1] for s in series if s.ready),
                "desired": sum(s.desired[-1] for s in series if s.desired),
                "planned": sum(planned) if planned else None,
                "class": template.get("annotations", {}).get(CLASS_ANNOTATION, DEFAULT_CLASS),
                "mode": predictive.settings.mode if predictive else "reactive",
                "panic": bool(autoscaler.get("inPanic")),
                "decision": autoscaler.get("reason", ""),
            }
        )
    return rows


def service_detail(platform: Any, sampler: Sampler, ns: str, name: str) -> dict[str, Any] | None:
    """A service with its revisions (state, replicas, failure reasons) and route."""
    service = platform.store.get("Service", ns, name)
    if service is None:
        return None
    revisions = []
    for r in _revisions(platform, ns).get((ns, name), []):
        status = r.get("status", {})
        revisions.append(
            {
                "name": r["metadata"]["name"],
                "ready": _ready(r),
                "reason": _reason(r),
                "desired": status.get("desiredReplicas", 0),
                "actual": status.get("actualReplicas", 0),
                "pending": status.get("pendingReplicas", []),
                "decision": status.get("autoscaler", {}).get("reason", ""),
                "created": r["metadata"].get("creationTimestamp", ""),
            }
        )
    rows = service_rows(platform, sampler, (ns, name))
    return {"service": rows[0] if rows else {}, "revisions": revisions}


def live_series(sampler: Sampler, ns: str, revisions: list[str], seconds: int) -> dict[str, Any]:
    """The last `seconds` of the revisions' per-second samples, summed over revisions."""
    since = time.time() - seconds
    per: dict[float, dict[str, float]] = {}
    for revision in revisions:
        series = sampler.series.get((ns, revision))
        if series is None:
            continue
        data = series.as_dict(since)
        for i, t in enumerate(data["t"]):
            point = per.setdefault(
                round(t), {"rps": 0, "concurrency": 0, "ready": 0, "desired": 0, "cold": 0}
            )
            for key in ("rps", "concurrency", "ready", "desired", "cold"):
                point[key] += data[key][i]
            if data["planned"][i] is not None:
                point["planned"] = point.get("planned", 0) + data["planned"][i]
    times = sorted(per)
    return {
        "t": times,
        **{
            key: [per[t].get(key) for t in times]
            for key in ("rps", "concurrency", "ready", "desired", "planned", "cold")
        },
    }


def history_series(
    platform: Any, sampler: Sampler, ns: str, name: str, revisions: list[str], window: str
) -> dict[str, Any]:
    """Per-minute history of the service over a day or a week, `step` minutes a point."""
    minutes, step = WINDOWS[window]
    end = int(time.time() // 60) + 1
    start = end - minutes
    out: dict[str, Any] = {"t": [float(m * 60) for m in range(start, end, step)]}
    for key, field, scale in (
        ("rps", "requests", 1 / 60),
        ("concurrency", "avg_concurrency", 1.0),
        ("ready", "ready_replicas", 1.0),
    ):
        values = platform.history.service_series(ns, name, field, start, end) * scale
        out[key] = _downsample(values, step)
    cold = np.zeros(minutes)
    for revision in revisions:
        series = sampler.series.get((ns, revision))
        for minute, count in series.cold_minutes.items() if series else ():
            if start <= minute < end:
                cold[minute - start] += count
    out["cold"] = _downsample(cold, step, total=True)
    return out


def _downsample(values: np.ndarray, step: int, total: bool = False) -> list[float | None]:
    out: list[float | None] = []
    for i in range(0, len(values), step):
        chunk = values[i : i + step]
        kept = chunk[~np.isnan(chunk)]
        if not kept.size:
            out.append(None)
        else:
            value = float(kept.sum() if total else kept.mean())
            out.append(None if math.isnan(value) else round(value, 3))
    return out
