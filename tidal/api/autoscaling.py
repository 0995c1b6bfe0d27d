"""Autoscaling settings: the cluster defaults (Knative's ConfigMap `config-autoscaler`) and the
per-revision `autoscaling.knative.dev/*` annotations, parsed and validated as Knative does.

Rules come from docs/autoscaling.md#cluster-defaults (defaults, `config.go` `validate`) and
docs/autoscaling.md#annotations (`annotation_validation.go`). All durations are float seconds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tidal.api.errors import InvalidSpec
from tidal.api.service import Container
from tidal.api.units import parse_quantity

GROUP = "autoscaling.knative.dev"
KPA = "kpa.autoscaling.knative.dev"
HPA = "hpa.autoscaling.knative.dev"
AHPA = "ahpa.autoscaling.knative.dev"
PREDICTIVE = "predictive.tidal.dev"
# Classes whose revisions tidal scales with its own KPA decider (metric concurrency|rps).
KPA_LIKE = (KPA, PREDICTIVE)
CONCURRENCY = "concurrency"
RPS = "rps"
# Measured signals (docs/autoscaling.md#metrics-and-classes): response time in ms, and the
# replicas' CPU (% of the request), memory (MiB) and GPU utilisation (%).
RT = "rt"
CPU = "cpu"
MEMORY = "memory"
GPU = "gpu"
RESOURCE_METRICS = (CPU, MEMORY, GPU)
KPA_METRICS = (CONCURRENCY, RPS, RT)
HPA_METRICS = (*RESOURCE_METRICS, CONCURRENCY, RPS)
PREDICTIVE_METRICS = (CONCURRENCY, RPS, RT, *RESOURCE_METRICS)
RT_PERCENTILE = "tidal.dev/rt-percentile"
HPA_SYNC_PERIOD = "tidal.dev/hpa-sync-period"
LINEAR = "linear"
WEIGHTED_EXPONENTIAL = "weighted-exponential"

TARGET_MIN = 0.01  # docs/autoscaling.md#cluster-defaults TargetMin
WINDOW_MIN_S = 6.0
WINDOW_MAX_S = 3600.0
INT32_MAX = 2**31 - 1

# --- Go-style duration parsing ("1h30m", "500ms", "0") -------------------------------------------

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_INT = re.compile(r"[+-]?[0-9]+")
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration_ns(text: str) -> int:
    """Parse a duration the way Go's `time.ParseDuration` does; return whole nanoseconds."""
    body = text[1:] if text[:1] in "+-" else text
    sign = -1 if text[:1] == "-" else 1
    if body == "0":
        return 0
    invalid = ValueError(f"invalid duration {text!r} (use e.g. 60s, 1m30s, 500ms)")
    if not body:
        raise invalid
    total = Fraction(0)
    pos = 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            raise invalid
        total += Fraction(match.group(1)) * _NS_PER_UNIT[match.group(2)]
        pos = match.end()
    return sign * math.floor(total)


def _duration_seconds(value: Any) -> float:
    """Config durations: a Go duration string, or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_go_duration_ns(value) / 1e9
    raise ValueError(f"invalid duration {value!r}")


def _is_whole_seconds(seconds: float) -> bool:
    return float(seconds).is_integer()


def _fmt_s(seconds: float) -> str:
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(_duration_seconds)]

# --- Cluster defaults ----------------------------------------------------------------------------


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class AutoscalerConfig(BaseModel):
    """Knative's `config-autoscaler` (docs/autoscaling.md#cluster-defaults). Build it from the
    ConfigMap's kebab-case keys with `from_mapping`. `container_concurrency_target_fraction` is the
    key `container-concurrency-target-percentage` as a fraction (70 -> 0.7)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=_kebab, populate_by_name=True
    )

    enable_scale_to_zero: bool = True
    container_concurrency_target_fraction: float = Field(
        0.7, alias="container-concurrency-target-percentage"
    )
    container_concurrency_target_default: float = 100.0
    requests_per_second_target_default: float = 200.0
    target_burst_capacity: float = 211.0
    stable_window: Duration = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold_percentage: float = 200.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    activator_capacity: float = 100.0
    scale_to_zero_grace_period: Duration = 30.0
    scale_to_zero_pod_retention_period: Duration = 0.0
    scale_down_delay: Duration = 0.0
    initial_scale: int = 1
    allow_zero_initial_scale: bool = False
    min_scale: int = 0
    max_scale: int = 0
    max_scale_limit: int = 0
    pod_autoscaler_class: str = KPA

    @property
    def target_utilization(self) -> float:
        """RPS target utilisation; not settable in the ConfigMap
        (docs/autoscaling.md#cluster-defaults)."""
        return 0.7

    @field_validator("container_concurrency_target_fraction")
    @classmethod
    def _percent_to_fraction(cls, value: float) -> float:
        return value / 100.0 if value > 1.0 else value

    @model_validator(mode="after")
    def _validate(self) -> AutoscalerConfig:
        """Knative's `config.go` `validate`, in its order (docs/autoscaling.md#cluster-defaults)."""
        for key, bad, rule in self._violations():
            if bad:
                value = getattr(self, key.replace("-", "_"), None)
                if key == "container-concurrency-target-percentage":
                    value = self.container_concurrency_target_fraction
                raise InvalidSpec(f"autoscaler.{key}", f"{rule}, got {value!r}")
        return self

    def _violations(self) -> list[tuple[str, bool, str]]:
        tbc = self.target_burst_capacity
        frac = self.container_concurrency_target_fraction
        limit = self.max_scale_limit
        min_max = 1 if limit > 0 else 0
        return [
            ("scale-to-zero-grace-period", self.scale_to_zero_grace_period <= 0, "must be > 0s"),
            ("scale-down-delay", self.scale_down_delay < 0, "must be >= 0s"),
            (
                "scale-down-delay",
                not _is_whole_seconds(self.scale_down_delay),
                "must be specified with at most second precision",
            ),
            (
                "scale-to-zero-pod-retention-period",
                self.scale_to_zero_pod_retention_period < 0,
                "must be >= 0s",
            ),
            ("target-burst-capacity", tbc < 0 and tbc != -1, "must be >= 0 or exactly -1"),
            (
                "container-concurrency-target-percentage",
                frac <= 0 or frac > 1,
                "must be in (0, 100] (as a fraction: (0, 1])",
            ),
            (
                "container-concurrency-target-default",
                frac * self.container_concurrency_target_default < TARGET_MIN,
                f"target-percentage x target-default must be >= {TARGET_MIN}",
            ),
            (
                "requests-per-second-target-default",
                self.requests_per_second_target_default < TARGET_MIN,
                f"must be >= {TARGET_MIN}",
            ),
            ("activator-capacity", self.activator_capacity < 1, "must be >= 1"),
            ("max-scale-up-rate", self.max_scale_up_rate <= 1.0, "must be > 1.0"),
            ("max-scale-down-rate", self.max_scale_down_rate <= 1.0, "must be > 1.0"),
            (
                "stable-window",
                not WINDOW_MIN_S <= self.stable_window <= WINDOW_MAX_S,
                "must be in [6s, 1h]",
            ),
            (
                "stable-window",
                not _is_whole_seconds(self.stable_window),
                "must be specified with at most second precision",
            ),
            (
                "panic-window-percentage",
                not 1.0 <= self.panic_window_percentage <= 100.0,
                "must be in [1, 100]",
            ),
            (
                "initial-scale",
                self.initial_scale < 0
                or (self.initial_scale == 0 and not self.allow_zero_initial_scale),
                "must be >= 1 (or 0 when allow-zero-initial-scale is true)",
            ),
            ("min-scale", self.min_scale < 0, "must be >= 0"),
            (
                "max-scale",
                self.max_scale < min_max or (limit > 0 and self.max_scale > limit),
                f"must be in [{min_max}, max-scale-limit ({limit})]"
                if limit > 0
                else "must be >= 0",
            ),
            ("max-scale-limit", limit < 0, "must be >= 0"),
            (
                "min-scale",
                self.min_scale > self.max_scale > 0,
                f"must be <= max-scale ({self.max_scale})",
            ),
        ]

    @classmethod
    def from_mapping(cls, d: dict[str, Any]) -> AutoscalerConfig:
        """Build from ConfigMap-style kebab-case keys; raise InvalidSpec(`autoscaler.<key>`)."""
        try:
            return cls.model_validate(d)
        except ValidationError as exc:
            raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> InvalidSpec:
    err = exc.errors()[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidSpec):
        return cause
    key = ".".join(str(part) for part in err["loc"])
    if err["type"] == "extra_forbidden":
        return InvalidSpec(f"autoscaler.{key}", "unknown key")
    if err["type"] == "value_error":
        return InvalidSpec(f"autoscaler.{key}", err["msg"].removeprefix("Value error, "))
    return InvalidSpec(f"autoscaler.{key}", f"{err['msg']}, got {err['input']!r}")


# --- Per-revision annotations --------------------------------------------------------------------


def _key(name: str) -> str:
    return f"{GROUP}/{name}"


# Kebab-case key first, then the legacy camelCase alias (docs/autoscaling.md#annotations: the kebab
# key wins).
_KEYS: dict[str, tuple[str, ...]] = {
    "class": (_key("class"),),
    "metric": (_key("metric"),),
    "target": (_key("target"),),
    "target_utilization_percentage": (
        _key("target-utilization-percentage"),
        _key("targetUtilizationPercentage"),
    ),
    "window": (_key("window"),),
    "panic_window_percentage": (
        _key("panic-window-percentage"),
        _key("panicWindowPercentage"),
    ),
    "panic_threshold_percentage": (
        _key("panic-threshold-percentage"),
        _key("panicThresholdPercentage"),
    ),
    "min_scale": (_key("min-scale"), _key("minScale")),
    "max_scale": (_key("max-scale"), _key("maxScale")),
    "initial_scale": (_key("initial-scale"), _key("initialScale")),
    "activation_scale": (_key("activation-scale"),),
    "scale_down_delay": (_key("scale-down-delay"), _key("scaleDownDelay")),
    "scale_to_zero_pod_retention_period": (
        _key("scale-to-zero-pod-retention-period"),
        _key("scaleToZeroPodRetentionPeriod"),
    ),
    "target_burst_capacity": (
        _key("target-burst-capacity"),
        _key("targetBurstCapacity"),
    ),
    "metric_aggregation_algorithm": (
        _key("metric-aggregation-algorithm"),
        _key("metricAggregationAlgorithm"),
    ),
}
KNOWN_ANNOTATIONS = frozenset(k for keys in _KEYS.values() for k in keys)


@dataclass(frozen=True)
class AutoscalingAnnotations:
    """Validated `autoscaling.knative.dev/*` values of one revision
    (docs/autoscaling.md#annotations).

    `autoscaler_class` and `metric` are resolved (class from the annotation or the cluster default;
    metric defaulted per class). Every other field is None when the annotation is absent, so callers
    can fall back to the `AutoscalerConfig` value. Durations are seconds.
    """

    autoscaler_class: str = KPA
    metric: str = CONCURRENCY
    metric_aggregation_algorithm: str = LINEAR
    target: float | None = None
    target_utilization_percentage: float | None = None
    window: float | None = None
    panic_window_percentage: float | None = None
    panic_threshold_percentage: float | None = None
    min_scale: int | None = None
    max_scale: int | None = None
    initial_scale: int | None = None
    activation_scale: int | None = None
    scale_down_delay: float | None = None
    scale_to_zero_pod_retention_period: float | None = None
    target_burst_capacity: float | None = None


def default_metric(autoscaler_class: str) -> str:
    """`pa_defaults.go` `defaultMetric`: concurrency for KPA, cpu for HPA, else none."""
    if autoscaler_class in KPA_LIKE:
        return CONCURRENCY
    return "cpu" if autoscaler_class == HPA else ""


class _Reader:
    """Looks up annotations by key priority and builds errors that name the key."""

    def __init__(self, annotations: dict[str, str], prefix: str) -> None:
        self.annotations = annotations
        self.prefix = prefix

    def get(self, name: str) -> tuple[str, str] | None:
        for key in _KEYS[name]:
            if key in self.annotations:
                return key, self.annotations[key]
        return None

    def error(self, key: str, message: str) -> InvalidSpec:
        return InvalidSpec(f"{self.prefix}[{key}]", message)

    def int32(self, name: str) -> int | None:
        """`getIntGE0`: a base-10 int32 >= 0."""
        found = self.get(name)
        if found is None:
            return None
        key, text = found
        if not _INT.fullmatch(text):
            raise self.error(key, f"invalid value {text!r}: must be an integer")
        value = int(text)
        if not 0 <= value <= INT32_MAX:
            raise self.error(key, f"expected 0 <= value <= {INT32_MAX}, got {text!r}")
        return value

    def float_(self, name: str, low: float, high: float | None, rule: str) -> float | None:
        found = self.get(name)
        if found is None:
            return None
        key, text = found
        value = _parse_float(text)
        if value is None:
            raise self.error(key, f"invalid value {text!r}: must be a number")
        if value < low or (high is not None and value > high):
            raise self.error(key, f"{rule}, got {text!r}")
        return value

    def duration(self, name: str, low: float, high: float, whole: bool) -> float | None:
        found = self.get(name)
        if found is None:
            return None
        key, text = found
        try:
            ns = parse_go_duration_ns(text)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None
        seconds = ns / 1e9
        if not low <= seconds <= high:
            raise self.error(key, f"expected {_fmt_s(low)} <= value <= 1h, got {text!r}")
        if whole and ns % 1_000_000_000:
            raise self.error(key, f"must be specified with at most second precision, got {text!r}")
        return seconds


def _parse_float(text: str) -> float | None:
    """Go `strconv.ParseFloat`-like: no spaces or underscores; also refuses inf and NaN."""
    if text != text.strip() or "_" in text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_autoscaling_annotations(
    annotations: dict[str, str],
    config: AutoscalerConfig,
    field_prefix: str = "spec.template.metadata.annotations",
) -> AutoscalingAnnotations:
    """Validate a revision template's annotations like Knative's `ValidateAnnotations`
    (docs/autoscaling.md#annotations).

    Raises InvalidSpec naming the annotation, e.g.
    `spec.template.metadata.annotations[autoscaling.knative.dev/window]`. Unknown
    `autoscaling.knative.dev/*` keys are errors; other annotations are ignored.
    """
    r = _Reader(annotations, field_prefix)
    for key in annotations:
        if key.startswith(f"{GROUP}/") and key not in KNOWN_ANNOTATIONS:
            raise r.error(key, f"unknown autoscaling annotation {key!r}")

    autoscaler_class = _class(r, config)
    min_scale, max_scale, activation_scale = _min_max_scale(r, config)
    panic_window_pct = r.float_("panic_window_percentage", 1, 100, "expected 1 <= value <= 100")
    panic_threshold_pct = r.float_(
        "panic_threshold_percentage", 110, 1000, "expected 110 <= value <= 1000"
    )
    target = r.float_("target", TARGET_MIN, None, f"target should be at least {TARGET_MIN}")
    target_util = r.float_("target_utilization_percentage", 1, 100, "expected 1 <= value <= 100")
    tbc = _target_burst_capacity(r)
    window = r.duration("window", WINDOW_MIN_S, WINDOW_MAX_S, whole=True)
    retention = r.duration("scale_to_zero_pod_retention_period", 0, WINDOW_MAX_S, whole=False)
    delay = r.duration("scale_down_delay", 0, WINDOW_MAX_S, whole=True)
    metric = _metric(r, autoscaler_class)
    algorithm = _algorithm(r, autoscaler_class)
    initial_scale = _initial_scale(r, config)
    return AutoscalingAnnotations(
        autoscaler_class=autoscaler_class,
        metric=metric,
        metric_aggregation_algorithm=algorithm,
        target=target,
        target_utilization_percentage=target_util,
        window=window,
        panic_window_percentage=panic_window_pct,
        panic_threshold_percentage=panic_threshold_pct,
        min_scale=min_scale,
        max_scale=max_scale,
        initial_scale=initial_scale,
        activation_scale=activation_scale,
        scale_down_delay=delay,
        scale_to_zero_pod_retention_period=retention,
        target_burst_capacity=tbc,
    )


def _class(r: _Reader, config: AutoscalerConfig) -> str:
    """`validateClass`: other `*.knative.dev` classes are refused; foreign ones pass."""
    found = r.get("class")
    if found is None:
        return config.pod_autoscaler_class
    key, value = found
    allowed = (KPA, HPA, AHPA)
    if value.endswith(".knative.dev") and value not in allowed:
        raise r.error(
            key, f"invalid value {value!r}: must be one of {', '.join(allowed)} or {PREDICTIVE}"
        )
    return value


def _min_max_scale(
    r: _Reader, config: AutoscalerConfig
) -> tuple[int | None, int | None, int | None]:
    """`validateMinMaxScale` and `validateMaxScaleWithinLimit`; returns (min, max, activation)."""
    min_scale = r.int32("min_scale")
    max_scale = r.int32("max_scale")
    lo, hi = min_scale or 0, max_scale or 0
    max_key = (r.get("max_scale") or _KEYS["max_scale"])[0]
    if hi != 0 and hi < lo:
        raise r.error(max_key, f"max-scale={hi} is less than min-scale={lo}")
    limit = config.max_scale_limit
    if max_scale is not None and limit > 0 and not 1 <= max_scale <= limit:
        raise r.error(max_key, f"expected 1 <= value <= {limit} (max-scale-limit), got {max_scale}")
    found = r.get("activation_scale")
    if found is None:
        return min_scale, max_scale, None
    key, text = found
    if not _INT.fullmatch(text) or abs(int(text)) > INT32_MAX:
        raise r.error(key, f"invalid value {text!r}: must be an integer")
    activation = int(text)
    if lo > activation:
        raise r.error(key, f"min-scale={lo} is greater than activation-scale={activation}")
    if hi != 0 and hi < activation:
        raise r.error(key, f"max-scale={hi} is less than activation-scale={activation}")
    if activation < 2:
        raise r.error(key, f"expected activation-scale >= 2, got {activation}")
    return min_scale, max_scale, activation


def _target_burst_capacity(r: _Reader) -> float | None:
    found = r.get("target_burst_capacity")
    if found is None:
        return None
    key, text = found
    value = _parse_float(text)
    if value is None or (value < 0 and value != -1):
        raise r.error(key, f"expected value >= 0 or exactly -1, got {text!r}")
    return value


def _metric(r: _Reader, autoscaler_class: str) -> str:
    """`validateMetric`: KPA takes concurrency|rps (and tidal's rt); HPA cpu|memory (and tidal's
    gpu, concurrency, rps: tidal has no custom-metrics adapter for other names); the predictive
    classes every metric AHPA takes; foreign classes anything."""
    found = r.get("metric")
    if found is None:
        return default_metric(autoscaler_class)
    key, value = found
    if autoscaler_class == KPA and value not in KPA_METRICS:
        hint = f" ({value} needs class {HPA} or {PREDICTIVE})" if value in RESOURCE_METRICS else ""
        raise r.error(key, f"invalid value {value!r}: must be {CONCURRENCY}, {RPS} or {RT}{hint}")
    if autoscaler_class in (PREDICTIVE, AHPA) and value not in PREDICTIVE_METRICS:
        raise r.error(
            key, f"invalid value {value!r}: must be one of {', '.join(PREDICTIVE_METRICS)}"
        )
    if autoscaler_class == HPA:
        if not value:
            raise r.error(key, "invalid value '': a metric name is required")
        if value == RT:
            raise r.error(
                key, f"invalid value 'rt': scale on response time with class {KPA} or {PREDICTIVE}"
            )
        if value not in HPA_METRICS:
            raise r.error(
                key,
                f"invalid value {value!r}: must be one of {', '.join(HPA_METRICS)} (custom "
                "metrics need a metrics adapter, which tidal does not have)",
            )
    return value


@dataclass(frozen=True)
class MetricSettings:
    """What scaling on a measured metric needs besides the annotation."""

    rt_percentile: float | None = None  # None: mean RT
    hpa_sync_s: float = 15.0
    cpu_request: float | None = None  # cores


def metric_settings(
    ann: AutoscalingAnnotations,
    annotations: dict[str, str],
    container: Container,
    prefix: str = "spec.template.metadata.annotations",
    where: str = "spec.template.spec.containers[0]",
) -> MetricSettings:
    """Check and resolve a revision's metric settings, given its serving container (at
    `where`); raise InvalidSpec naming the field."""
    requests, limits = container.resources.requests, container.resources.limits
    amount = requests.get("cpu", limits.get("cpu"))  # Kubernetes: the request defaults to the limit
    cpu = parse_quantity(amount) if amount is not None else None
    percentile, sync = _check_metric_needs(ann, annotations, cpu, container.gpus(), prefix, where)
    return MetricSettings(percentile, sync, cpu)


def _check_metric_needs(
    ann: AutoscalingAnnotations,
    annotations: dict[str, str],
    cpu_request: float | None,
    gpus: int,
    prefix: str,
    where: str,
) -> tuple[float | None, float]:
    """What a metric needs besides its name: memory and rt a `target` (MiB, ms: there is no
    sensible default), cpu a CPU request to take a percentage of, gpu a GPU. Returns
    (`tidal.dev/rt-percentile` or None, HPA sync period in seconds)."""
    metric, target_key = ann.metric, f"{prefix}[{_key('target')}]"
    if metric == MEMORY and ann.target is None:
        raise InvalidSpec(target_key, 'metric memory needs a target: MiB per replica, e.g. "512"')
    if metric == RT and ann.target is None:
        raise InvalidSpec(target_key, 'metric rt needs a target: milliseconds, e.g. "200"')
    if metric == CPU and not cpu_request and ann.autoscaler_class != HPA:
        # Knative's HPA class takes it (Kubernetes' HPA then reports "missing request for
        # cpu" and holds, as tidal's does); the predictive classes are tidal's to check.
        raise InvalidSpec(
            f"{where}.resources.requests.cpu",
            "metric cpu scales on % of the CPU request: set resources.requests.cpu",
        )
    if metric == GPU and not gpus:
        raise InvalidSpec(
            f"{where}.resources.limits[nvidia.com/gpu]",
            "metric gpu measures the replica's GPUs: request at least one nvidia.com/gpu",
        )
    measured = metric in (RT, *RESOURCE_METRICS)
    if measured and ann.target_utilization_percentage is not None and ann.autoscaler_class != HPA:
        # The KPA-like classes read `target` as written for these (ms, %, MiB); a utilisation
        # on top would be silently ignored. (Knative's HPA class ignores it too, and accepts it.)
        found = next(k for k in _KEYS["target_utilization_percentage"] if k in annotations)
        raise InvalidSpec(
            f"{prefix}[{found}]",
            f"only applies to metric {CONCURRENCY} or {RPS}; for {metric} set the "
            f"{_key('target')} itself",
        )
    percentile = None
    if RT_PERCENTILE in annotations:
        text = annotations[RT_PERCENTILE]
        value = _parse_float(text)
        key = f"{prefix}[{RT_PERCENTILE}]"
        if value is None or not 0 < value < 100:
            raise InvalidSpec(key, f"expected a percentile 0 < value < 100 (e.g. 95), got {text!r}")
        if metric != RT:
            raise InvalidSpec(key, f"only applies to metric rt, not {metric!r}")
        percentile = value
    sync = 15.0
    if HPA_SYNC_PERIOD in annotations:
        text = annotations[HPA_SYNC_PERIOD]
        key = f"{prefix}[{HPA_SYNC_PERIOD}]"
        try:
            sync = parse_go_duration_ns(text) / 1e9
        except ValueError as exc:
            raise InvalidSpec(key, str(exc)) from None
        if not 1.0 <= sync <= 900.0:
            raise InvalidSpec(key, f"expected 1s <= value <= 15m, got {text!r}")
        if ann.autoscaler_class != HPA:
            raise InvalidSpec(key, f"only applies to class {HPA}")
    return percentile, sync


def _algorithm(r: _Reader, autoscaler_class: str) -> str:
    """`validateAlgorithm` (KPA-like classes only); `weightedExponential` is normalised."""
    found = r.get("metric_aggregation_algorithm")
    if found is None or not found[1]:
        return LINEAR
    key, value = found
    if value == "weightedExponential":
        return WEIGHTED_EXPONENTIAL
    if autoscaler_class in KPA_LIKE and value not in (LINEAR, WEIGHTED_EXPONENTIAL):
        raise r.error(
            key,
            f"invalid value {value!r}: must be {LINEAR}, {WEIGHTED_EXPONENTIAL} "
            "or weightedExponential",
        )
    return value


def _initial_scale(r: _Reader, config: AutoscalerConfig) -> int | None:
    """`validateInitialScale`: >= 0, and 0 only when allow-zero-initial-scale."""
    found = r.get("initial_scale")
    if found is None:
        return None
    key, text = found
    if not _INT.fullmatch(text):
        raise r.error(key, f"invalid value {text!r}: must be an integer")
    value = int(text)
    if not 0 <= value <= INT32_MAX:
        raise r.error(key, f"expected 0 <= value <= {INT32_MAX}, got {text!r}")
    if value == 0 and not config.allow_zero_initial_scale:
        raise r.error(
            key,
            "expected 1 <= value (0 needs allow-zero-initial-scale in config-autoscaler), "
            f"got {text!r}",
        )
    return value
