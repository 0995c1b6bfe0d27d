"""Build what scales a revision on a measured metric (RT, CPU, memory, GPU) from its validated
annotations (docs/autoscaling.md#metrics-and-classes)."""

from __future__ import annotations

from tidal.api.autoscaling import (
    CONCURRENCY,
    CPU,
    RPS,
    AutoscalingAnnotations,
    MetricSettings,
)
from tidal.autoscaler.baselines import HPAAutoscaler
from tidal.autoscaler.kpa import DeciderSpec
from tidal.autoscaler.signals import MetricFeed, metric_target


def metric_feed(
    ann: AutoscalingAnnotations, settings: MetricSettings, spec: DeciderSpec, cc: int = 0
) -> MetricFeed | None:
    """The feed for a KPA-like revision on rt/cpu/memory/gpu; None for concurrency and rps,
    which the KPA reads as they are."""
    if ann.metric in (CONCURRENCY, RPS, ""):
        return None
    target = metric_target(ann.metric, ann.target, settings.cpu_request, settings.rt_percentile)
    return MetricFeed(target, spec.stable_window, cc)


def hpa_autoscaler(
    spec: DeciderSpec, ann: AutoscalingAnnotations, settings: MetricSettings
) -> HPAAutoscaler:
    """Knative's HPA class: the metric and target as its `hpa.go` makes them; the `window`
    annotation sets both stabilization windows."""
    metric = ann.metric or CPU
    if metric in (CONCURRENCY, RPS):
        # A Pods metric with an AverageValue target: the per-pod target as written.
        per = ann.target if ann.target is not None else spec.target_value
        target = metric_target(metric, per, None, None)
    else:
        target = metric_target(metric, ann.target, settings.cpu_request, settings.rt_percentile)
    window = ann.window
    return HPAAutoscaler(
        spec,
        down_stabilization_s=HPAAutoscaler.DOWN_STABILIZATION_S if window is None else window,
        up_stabilization_s=0.0 if window is None else window,
        sync_s=settings.hpa_sync_s,
        feed=MetricFeed(target, settings.hpa_sync_s),
    )
