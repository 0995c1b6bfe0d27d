"""Builds a revision's handle from its stored document: the one place that knows how.

The autoscaler comes from a table keyed by the policy an `autoscaling.knative.dev/class` names
(`BUILDERS`); policies not in it are the baselines of `tidal.autoscaler.baselines`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tidal.api.autoscaling import (
    AutoscalingAnnotations,
    MetricSettings,
    metric_settings,
    parse_autoscaling_annotations,
)
from tidal.api.config import PlatformConfig
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import (
    PLATFORM_ANNOTATIONS,
    PROGRESS_DEADLINE,
    WARM_STANDBY,
    first_error,
    runs_in_container,
)
from tidal.api.predictive import parse_predictive_annotations
from tidal.api.service import RevisionSpec
from tidal.api.units import parse_duration
from tidal.autoscaler.baselines import make_autoscaler, policy_for_class
from tidal.autoscaler.kpa import DeciderSpec, RevisionAutoscaler, decider_spec
from tidal.autoscaler.predictive.autoscaler import PredictiveAutoscaler
from tidal.autoscaler.predictive.policy import PredictivePolicy
from tidal.autoscaler.signals import MetricAutoscaler, planning_spec, signal_spec
from tidal.controller.clock import Clock, MonotonicClock
from tidal.controller.forecasting import Planned
from tidal.controller.handle import RevisionHandle, RevisionKey
from tidal.controller.measured import hpa_autoscaler, metric_feed
from tidal.controller.revisions import GENERATION_LABEL
from tidal.controller.scaling import Autoscaler
from tidal.controller.workload import (
    OtherContainer,
    RevisionRuntimeSpec,
    RevisionWorkload,
    WorkloadEvents,
)
from tidal.gateway.activator import RevisionThrottler
from tidal.runtime.base import Runtime
from tidal.runtime.container import image_spec
from tidal.runtime.deployments import revision_labels


@dataclass(frozen=True)
class AutoscalerInputs:
    """What every autoscaler builder gets."""

    key: RevisionKey
    service: str
    spec: DeciderSpec
    plan_spec: DeciderSpec  # what plans forecast (signals.planning_spec), in the metric's units
    autoscaling: AutoscalingAnnotations
    measured: MetricSettings
    annotations: dict[str, Any]
    now: float
    ready: int  # restored replicas (0 for a new revision)
    initialized: bool  # restored: the revision already had its initial scale
    progress_deadline_s: float


Built = tuple[Autoscaler, Planned | None]


def _kpa(inputs: AutoscalerInputs) -> RevisionAutoscaler:
    return RevisionAutoscaler(
        inputs.spec,
        inputs.now,
        ready=inputs.ready,
        progress_deadline_s=inputs.progress_deadline_s,
        initialized=inputs.initialized,
    )


def _build_kpa(inputs: AutoscalerInputs) -> Built:
    return _kpa(inputs), None


def _build_predictive(inputs: AutoscalerInputs) -> Built:
    """The KPA, led by an hourly plan (tidal.controller.forecasting builds the plan)."""
    settings = parse_predictive_annotations(inputs.annotations, also_known=PLATFORM_ANNOTATIONS)
    spec = inputs.spec
    autoscaler = PredictiveAutoscaler(
        _kpa(inputs),
        PredictivePolicy(settings, spec.min_scale, spec.max_scale),
        epoch_offset=time.time() - inputs.now,
    )
    key = inputs.key
    planned = Planned(
        key.namespace, inputs.service, key.name, inputs.plan_spec, settings, autoscaler
    )
    return autoscaler, planned


def _build_hpa(inputs: AutoscalerInputs) -> Built:
    """Kubernetes HPA on a measured metric (tidal.controller.measured)."""
    return hpa_autoscaler(inputs.spec, inputs.autoscaling, inputs.measured), None


BUILDERS: dict[str, Callable[[AutoscalerInputs], Built]] = {
    "kpa": _build_kpa,
    "predictive": _build_predictive,
    "hpa": _build_hpa,
}


def build_autoscaler(policy: str, inputs: AutoscalerInputs) -> Built:
    builder = BUILDERS.get(policy)
    if builder is not None:
        return builder(inputs)
    baseline = make_autoscaler(
        policy,
        inputs.spec,
        inputs.now,
        ready=inputs.ready,
        progress_deadline_s=inputs.progress_deadline_s,
    )
    return baseline, None


class RevisionFactory:
    """Stored Revision → `RevisionHandle` (nothing is started: the platform adds the handle,
    then sets a restored revision's scale)."""

    def __init__(
        self,
        config: PlatformConfig,
        data_dir: Path,
        runtime: Runtime,
        events: WorkloadEvents,
        poke: Callable[[str], None],
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.data_dir = data_dir
        self.runtime = runtime
        self.events = events
        self.poke = poke  # the scaling loop's: a first request at zero
        self.clock = clock or MonotonicClock()

    def build(self, service: str, revision: dict[str, Any], restored: int | None) -> RevisionHandle:
        """`restored`: the replicas a stored revision wanted before a restart (None: new)."""
        meta = revision["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key = RevisionKey.of(namespace, name)
        try:
            spec = RevisionSpec.model_validate(revision["spec"])
        except ValidationError as exc:  # stored before a rule it breaks was added
            problem = first_error(exc)
            raise InvalidSpec(f"spec.{problem.field}", problem.message) from None
        annotations = meta.get("annotations", {})
        autoscaling = parse_autoscaling_annotations(annotations, self.config.autoscaler)
        progress = (
            parse_duration(annotations[PROGRESS_DEADLINE])
            if PROGRESS_DEADLINE in annotations
            else self.config.progress_deadline_s
        )
        cc = spec.container_concurrency
        timeout = float(spec.timeout_seconds)
        throttler = RevisionThrottler(
            namespace,
            service,
            name,
            cc,
            timeout,
            queue_depth=self.config.pending_cap_default,
            on_first_request=lambda _: self.poke(key),
            response_start_s=float(spec.response_start_timeout_seconds or 0),
            idle_s=float(spec.idle_timeout_seconds or 0),
            h2c=any(port.name == "h2c" for port in spec.serving.ports),
        )
        status = revision.get("status", {})
        ready_condition = _condition(status)
        failure = None
        if ready_condition.get("status") == "False":
            failure = (ready_condition.get("reason", "Failed"), ready_condition.get("message", ""))
            throttler.fail(f"revision {name} failed: {failure[0]}: {failure[1]}")
        container = spec.serving
        in_container = runs_in_container(container, annotations)
        names = spec.container_names()
        sidecars = tuple(
            OtherContainer(name, c, image_spec(c))
            for index, (name, c) in enumerate(zip(names, spec.containers, strict=True))
            if index != spec.serving_index  # each has an image: checked at apply
        )
        init_names = spec.init_container_names()
        init_containers = tuple(
            OtherContainer(name, c, image_spec(c))
            for name, c in zip(init_names, spec.init_containers, strict=True)
        )
        workload = RevisionWorkload(
            RevisionRuntimeSpec(
                namespace=namespace,
                service=service,
                revision=name,
                container=container,
                container_concurrency=cc,
                timeout_s=timeout,
                progress_deadline_s=progress,
                log_dir=self.data_dir / "logs" / namespace / name,
                termination_grace_s=self.config.termination_grace_s,
                labels=revision_labels(revision),
                standby_pool=annotations.get(WARM_STANDBY),
                image=image_spec(container) if in_container else None,
                volumes=tuple(spec.volumes),
                image_pull_secrets=tuple(spec.image_pull_secrets),
                service_account=spec.service_account_name,
                sidecars=sidecars,
                init_containers=init_containers,
                container_name=names[spec.serving_index],
            ),
            self.runtime,
            throttler,
            events=self.events,
            ever_ready=ready_condition.get("status") == "True" or bool(status.get("everReady")),
            failure=failure,
            clock=self.clock,
        )
        policy = policy_for_class(autoscaling.autoscaler_class)
        measured = metric_settings(autoscaling, annotations, container)
        plan_spec = decider = decider_spec(self.config.autoscaler, autoscaling, cc)
        # rt/cpu/memory/gpu for the KPA-like classes: the KPA decides on replica-equivalents
        # that the feed computes from the measured metric.
        feed = None
        if policy in ("kpa", "predictive"):
            feed = metric_feed(autoscaling, measured, decider, cc)
        if feed is not None:
            plan_spec = planning_spec(decider, feed.target)  # plans forecast the metric itself
            decider = signal_spec(decider)
        inputs = AutoscalerInputs(
            key,
            service,
            decider,
            plan_spec,
            autoscaling,
            measured,
            annotations,
            self.clock.now(),
            ready=restored or 0,
            initialized=restored is not None,
            progress_deadline_s=progress,
        )
        autoscaler, planned = build_autoscaler(policy, inputs)
        if feed is not None:
            autoscaler = MetricAutoscaler(autoscaler, feed)
        return RevisionHandle(
            key=key,
            service=service,
            generation=int(meta["labels"][GENERATION_LABEL]),
            decider=decider,
            throttler=throttler,
            workload=workload,
            autoscaler=autoscaler,
            planned=planned,
            history_key=(namespace, service, name),
            period_start=inputs.now,
        )


def _condition(status: dict[str, Any]) -> dict[str, Any]:
    for condition in status.get("conditions", []):
        if condition.get("type") == "Ready":
            return condition
    return {}
