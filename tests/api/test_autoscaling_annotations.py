"""config-autoscaler defaults and validation (docs/autoscaling.md#cluster-defaults) and the
per-revision `autoscaling.knative.dev/*` annotations (docs/autoscaling.md#annotations)."""

import pytest
from pydantic import ValidationError

from tidal.api.autoscaling import (
    AutoscalerConfig,
    AutoscalingAnnotations,
    parse_autoscaling_annotations,
    parse_go_duration_ns,
)
from tidal.api.errors import InvalidSpec

A = "autoscaling.knative.dev/"
PREFIX = "spec.template.metadata.annotations"
CONFIG = AutoscalerConfig()


def parse(annotations, config=CONFIG):
    return parse_autoscaling_annotations(annotations, config)


# --- config-autoscaler (docs/autoscaling.md#cluster-defaults) ------------------------------------


def test_config_defaults():
    """docs/autoscaling.md#cluster-defaults defaults table."""
    c = AutoscalerConfig()
    assert c.enable_scale_to_zero is True
    assert c.container_concurrency_target_fraction == 0.7
    assert c.container_concurrency_target_default == 100.0
    assert c.requests_per_second_target_default == 200.0
    assert c.target_utilization == 0.7
    assert c.target_burst_capacity == 211.0
    assert (c.stable_window, c.panic_window_percentage, c.panic_threshold_percentage) == (
        60.0,
        10.0,
        200.0,
    )
    assert (c.max_scale_up_rate, c.max_scale_down_rate, c.activator_capacity) == (1000, 2, 100)
    assert (c.scale_to_zero_grace_period, c.scale_to_zero_pod_retention_period) == (30.0, 0.0)
    assert (c.scale_down_delay, c.initial_scale, c.allow_zero_initial_scale) == (0.0, 1, False)
    assert (c.min_scale, c.max_scale, c.max_scale_limit) == (0, 0, 0)
    assert c.pod_autoscaler_class == "kpa.autoscaling.knative.dev"
    assert AutoscalerConfig.from_mapping({}) == c


def test_config_from_kebab_keys():
    c = AutoscalerConfig.from_mapping(
        {
            "stable-window": "1m30s",
            "scale-to-zero-grace-period": "500ms",
            "scale-down-delay": 20,
            "container-concurrency-target-percentage": "80",
            "enable-scale-to-zero": "false",
            "target-burst-capacity": "-1",
            "max-scale": "10",
            "max-scale-limit": "20",
        }
    )
    assert (c.stable_window, c.scale_to_zero_grace_period, c.scale_down_delay) == (90, 0.5, 20)
    assert c.container_concurrency_target_fraction == 0.8  # >1 is divided by 100
    assert (c.enable_scale_to_zero, c.target_burst_capacity, c.max_scale) == (False, -1, 10)
    assert AutoscalerConfig.from_mapping(
        {"container-concurrency-target-percentage": 0.5}
    ).container_concurrency_target_fraction == pytest.approx(0.5)
    with pytest.raises(ValidationError):  # frozen
        c.stable_window = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "key", "text"),
    [
        ({"stable-window": "5s"}, "stable-window", "[6s, 1h]"),
        ({"stable-window": "2h"}, "stable-window", "7200"),
        ({"stable-window": "60.5s"}, "stable-window", "second precision"),
        ({"stable-window": "sixty"}, "stable-window", "invalid duration 'sixty'"),
        ({"scale-to-zero-grace-period": "0s"}, "scale-to-zero-grace-period", "> 0s"),
        ({"scale-down-delay": "-1s"}, "scale-down-delay", ">= 0s"),
        ({"scale-down-delay": "1.5s"}, "scale-down-delay", "second precision"),
        (
            {"scale-to-zero-pod-retention-period": "-1s"},
            "scale-to-zero-pod-retention-period",
            ">= 0s",
        ),
        ({"target-burst-capacity": "-2"}, "target-burst-capacity", "-1, got -2.0"),
        (
            {"container-concurrency-target-percentage": "0"},
            "container-concurrency-target-percentage",
            "(0, 100]",
        ),
        (
            {"container-concurrency-target-percentage": "101"},
            "container-concurrency-target-percentage",
            "1.01",
        ),
        (
            {"container-concurrency-target-default": "0.001"},
            "container-concurrency-target-default",
            "0.01",
        ),
        (
            {"requests-per-second-target-default": "0"},
            "requests-per-second-target-default",
            ">= 0.01",
        ),
        ({"activator-capacity": "0.5"}, "activator-capacity", ">= 1, got 0.5"),
        ({"max-scale-up-rate": "1"}, "max-scale-up-rate", "> 1.0, got 1.0"),
        ({"max-scale-down-rate": "0.5"}, "max-scale-down-rate", "> 1.0, got 0.5"),
        ({"panic-window-percentage": "0.5"}, "panic-window-percentage", "[1, 100], got 0.5"),
        ({"initial-scale": "0"}, "initial-scale", "got 0"),
        ({"initial-scale": "-1", "allow-zero-initial-scale": "true"}, "initial-scale", "got -1"),
        ({"min-scale": "-1"}, "min-scale", ">= 0, got -1"),
        ({"max-scale": "-1"}, "max-scale", ">= 0, got -1"),
        ({"max-scale-limit": "5"}, "max-scale", "[1, max-scale-limit (5)], got 0"),
        ({"max-scale-limit": "5", "max-scale": "6"}, "max-scale", "got 6"),
        ({"min-scale": "3", "max-scale": "2"}, "min-scale", "<= max-scale (2), got 3"),
        ({"min-scale": "one"}, "min-scale", "'one'"),
        ({"stable_window": "60s", "tick-interval": "2s"}, "tick-interval", "unknown key"),
    ],
)
def test_config_validation(data, key, text):
    """docs/autoscaling.md#cluster-defaults validation column; errors name `autoscaler.<key>` and
    quote the bad value."""
    with pytest.raises(InvalidSpec) as err:
        AutoscalerConfig.from_mapping(data)
    assert err.value.field == f"autoscaler.{key}"
    assert text in err.value.message


def test_zero_initial_scale_allowed_by_config():
    c = AutoscalerConfig.from_mapping({"initial-scale": "0", "allow-zero-initial-scale": "true"})
    assert c.initial_scale == 0


def test_panic_threshold_is_not_range_checked_in_the_configmap():
    """docs/autoscaling.md#cluster-defaults: only the annotation is limited to 110..1000."""
    assert AutoscalerConfig.from_mapping({"panic-threshold-percentage": "50"})


def test_go_durations():
    assert parse_go_duration_ns("1h30m") == 5400 * 10**9
    assert parse_go_duration_ns("500ms") == 5 * 10**8
    assert parse_go_duration_ns("1.5s") == 15 * 10**8
    assert parse_go_duration_ns("0") == 0
    assert parse_go_duration_ns("-2m") == -120 * 10**9
    for bad in ("", "60", "1x", "s", "1 s", "+"):
        with pytest.raises(ValueError):
            parse_go_duration_ns(bad)


# --- annotations (docs/autoscaling.md#annotations) -----------------------------------------------


def test_no_annotations_give_defaults():
    ann = parse({"other.example.com/x": "y"})
    assert ann == AutoscalingAnnotations()
    assert (ann.autoscaler_class, ann.metric, ann.metric_aggregation_algorithm) == (
        "kpa.autoscaling.knative.dev",
        "concurrency",
        "linear",
    )


def test_every_key_parses():
    ann = parse(
        {
            A + "class": "kpa.autoscaling.knative.dev",
            A + "metric": "rps",
            A + "target": "50",
            A + "target-utilization-percentage": "80",
            A + "window": "2m",
            A + "panic-window-percentage": "5.5",
            A + "panic-threshold-percentage": "150",
            A + "min-scale": "2",
            A + "max-scale": "8",
            A + "initial-scale": "3",
            A + "activation-scale": "4",
            A + "scale-down-delay": "30s",
            A + "scale-to-zero-pod-retention-period": "1m5.5s",
            A + "target-burst-capacity": "-1",
            A + "metric-aggregation-algorithm": "weightedExponential",
        }
    )
    assert ann == AutoscalingAnnotations(
        autoscaler_class="kpa.autoscaling.knative.dev",
        metric="rps",
        metric_aggregation_algorithm="weighted-exponential",
        target=50.0,
        target_utilization_percentage=80.0,
        window=120.0,
        panic_window_percentage=5.5,
        panic_threshold_percentage=150.0,
        min_scale=2,
        max_scale=8,
        initial_scale=3,
        activation_scale=4,
        scale_down_delay=30.0,
        scale_to_zero_pod_retention_period=65.5,
        target_burst_capacity=-1.0,
    )


def test_legacy_camel_case_aliases_and_kebab_wins():
    """docs/autoscaling.md#annotations: the legacy camelCase keys are accepted; the kebab-case key
    wins."""
    ann = parse(
        {
            A + "minScale": "1",
            A + "maxScale": "5",
            A + "initialScale": "2",
            A + "scaleDownDelay": "10s",
            A + "scaleToZeroPodRetentionPeriod": "20s",
            A + "targetBurstCapacity": "0",
            A + "targetUtilizationPercentage": "60",
            A + "panicWindowPercentage": "20",
            A + "panicThresholdPercentage": "300",
            A + "metricAggregationAlgorithm": "linear",
        }
    )
    assert (ann.min_scale, ann.max_scale, ann.initial_scale) == (1, 5, 2)
    assert (ann.scale_down_delay, ann.scale_to_zero_pod_retention_period) == (10.0, 20.0)
    assert (ann.target_burst_capacity, ann.target_utilization_percentage) == (0.0, 60.0)
    assert (ann.panic_window_percentage, ann.panic_threshold_percentage) == (20.0, 300.0)
    both = parse({A + "min-scale": "3", A + "minScale": "not-a-number"})
    assert both.min_scale == 3


def test_classes():
    """docs/autoscaling.md#annotations: KPA/HPA accepted, other *.knative.dev refused, foreign
    classes allowed; tidal also accepts ahpa.autoscaling.knative.dev and predictive.tidal.dev."""
    for cls in (
        "hpa.autoscaling.knative.dev",
        "ahpa.autoscaling.knative.dev",
        "predictive.tidal.dev",
        "example.com/custom",
    ):
        assert parse({A + "class": cls}).autoscaler_class == cls
    assert parse({A + "class": "hpa.autoscaling.knative.dev"}).metric == "cpu"
    assert parse({A + "class": "predictive.tidal.dev"}).metric == "concurrency"
    config = AutoscalerConfig(pod_autoscaler_class="hpa.autoscaling.knative.dev")
    assert parse({A + "metric": "memory"}, config).metric == "memory"


def test_non_kpa_classes_skip_kpa_metric_checks():
    ann = parse({A + "class": "example.com/custom", A + "metric": "gpu"})
    assert ann.metric == "gpu"


@pytest.mark.parametrize(
    ("annotations", "key", "text"),
    [
        ({"class": "foo.autoscaling.knative.dev"}, "class", "'foo.autoscaling.knative.dev'"),
        ({"metric": "cpu"}, "metric", "'cpu'"),
        ({"class": "hpa.autoscaling.knative.dev", "metric": ""}, "metric", "''"),
        ({"target": "0.001"}, "target", "at least 0.01, got '0.001'"),
        ({"target": "ten"}, "target", "'ten'"),
        (
            {"target-utilization-percentage": "0.5"},
            "target-utilization-percentage",
            "1 <= value <= 100, got '0.5'",
        ),
        ({"target-utilization-percentage": "101"}, "target-utilization-percentage", "got '101'"),
        ({"targetUtilizationPercentage": "101"}, "targetUtilizationPercentage", "got '101'"),
        ({"window": "5s"}, "window", "6s <= value <= 1h, got '5s'"),
        ({"window": "61m"}, "window", "got '61m'"),
        ({"window": "6500ms"}, "window", "second precision, got '6500ms'"),
        ({"window": "60"}, "window", "invalid duration '60'"),
        ({"panic-window-percentage": "0"}, "panic-window-percentage", "1 <= value <= 100, got '0'"),
        ({"panic-window-percentage": "101"}, "panic-window-percentage", "got '101'"),
        (
            {"panic-threshold-percentage": "100"},
            "panic-threshold-percentage",
            "110 <= value <= 1000, got '100'",
        ),
        ({"panic-threshold-percentage": "1001"}, "panic-threshold-percentage", "got '1001'"),
        ({"min-scale": "-1"}, "min-scale", "0 <= value <= 2147483647, got '-1'"),
        ({"minScale": "1.5"}, "minScale", "'1.5'"),
        ({"max-scale": "2147483648"}, "max-scale", "got '2147483648'"),
        ({"min-scale": "3", "max-scale": "2"}, "max-scale", "max-scale=2 is less than min-scale=3"),
        ({"initial-scale": "0"}, "initial-scale", "got '0'"),
        ({"initial-scale": "-1"}, "initial-scale", "got '-1'"),
        ({"initialScale": "x"}, "initialScale", "'x'"),
        ({"activation-scale": "1"}, "activation-scale", ">= 2, got 1"),
        ({"activation-scale": "a"}, "activation-scale", "'a'"),
        (
            {"min-scale": "3", "activation-scale": "2"},
            "activation-scale",
            "min-scale=3 is greater than activation-scale=2",
        ),
        (
            {"max-scale": "3", "activation-scale": "4"},
            "activation-scale",
            "max-scale=3 is less than activation-scale=4",
        ),
        ({"scale-down-delay": "-1s"}, "scale-down-delay", "0s <= value <= 1h, got '-1s'"),
        ({"scale-down-delay": "2h"}, "scale-down-delay", "got '2h'"),
        ({"scale-down-delay": "1.5s"}, "scale-down-delay", "second precision"),
        (
            {"scale-to-zero-pod-retention-period": "2h"},
            "scale-to-zero-pod-retention-period",
            "0s <= value <= 1h, got '2h'",
        ),
        ({"target-burst-capacity": "-2"}, "target-burst-capacity", ">= 0 or exactly -1, got '-2'"),
        ({"target-burst-capacity": "lots"}, "target-burst-capacity", "got 'lots'"),
        ({"metric-aggregation-algorithm": "median"}, "metric-aggregation-algorithm", "'median'"),
        ({"scale-to-zero": "true"}, "scale-to-zero", "unknown autoscaling annotation"),
    ],
)
def test_annotation_errors_name_the_annotation(annotations, key, text):
    """docs/autoscaling.md#annotations validation column: each bad value raises InvalidSpec naming
    the annotation, with the allowed range and the bad value in the message."""
    with pytest.raises(InvalidSpec) as err:
        parse({A + k: v for k, v in annotations.items()})
    assert err.value.field == f"{PREFIX}[{A}{key}]"
    assert text in err.value.message


def test_max_scale_limit():
    """docs/autoscaling.md#cluster-defaults, docs/autoscaling.md#annotations: with max-scale-limit,
    every max-scale must be in [1, limit]."""
    config = AutoscalerConfig.from_mapping({"max-scale-limit": "10", "max-scale": "5"})
    assert parse({A + "max-scale": "10"}, config).max_scale == 10
    for bad in ("11", "0"):
        with pytest.raises(InvalidSpec) as err:
            parse({A + "max-scale": bad}, config)
        assert err.value.field == f"{PREFIX}[{A}max-scale]"
        assert f"1 <= value <= 10 (max-scale-limit), got {bad}" in err.value.message


def test_zero_initial_scale_with_allow_zero():
    config = AutoscalerConfig.from_mapping({"allow-zero-initial-scale": "true"})
    assert parse({A + "initial-scale": "0"}, config).initial_scale == 0


def test_field_prefix_is_configurable():
    with pytest.raises(InvalidSpec) as err:
        parse_autoscaling_annotations({A + "window": "1s"}, CONFIG, "metadata.annotations")
    assert err.value.field == f"metadata.annotations[{A}window]"
