"""`tidal.dev/*` annotations: defaults, accepted forms, and errors that name the annotation."""

from __future__ import annotations

import pytest

from tidal.api.errors import InvalidSpec
from tidal.api.predictive import (
    CronBound,
    PredictiveAnnotations,
    parse_bounds,
    parse_predictive_annotations,
)

FIELD = "spec.template.metadata.annotations[tidal.dev/{}]"


def test_defaults():
    ann = parse_predictive_annotations({"autoscaling.knative.dev/class": "predictive.tidal.dev"})
    assert ann == PredictiveAnnotations()
    assert (ann.mode, ann.quantile, ann.stabilization_window) == ("auto", 0.95, 300.0)
    assert ann.min_history == 2 * 86_400 and ann.scale_up_lead is None


def test_values():
    ann = parse_predictive_annotations(
        {
            "tidal.dev/mode": "observer",
            "tidal.dev/quantile": "95",
            "tidal.dev/scale-up-lead": "3m",
            "tidal.dev/stabilization-window": "10m",
            "tidal.dev/min-history": "7d",
            "tidal.dev/bounds": "MON-FRI 08:00-18:00 min=2",
            "tidal.dev/timezone": "Europe/Rome",
        }
    )
    assert ann.mode == "observer" and ann.quantile == pytest.approx(0.95)
    assert (ann.scale_up_lead, ann.stabilization_window, ann.min_history) == (180, 600, 604_800)
    assert ann.bounds == (CronBound(frozenset(range(5)), 480, 1080, 2, None),)
    assert ann.timezone == "Europe/Rome"
    assert parse_predictive_annotations({"tidal.dev/quantile": "0.99"}).quantile == 0.99


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("mode", "aggressive", "observer, auto, proactive, reactive"),
        ("quantile", "0.3", "0.5..0.999"),
        ("quantile", "100", "0.5..0.999"),
        ("quantile", "high", "0.5..0.999"),
        ("scale-up-lead", "2h", "1h"),
        ("stabilization-window", "soon", "invalid duration"),
        ("min-history", "-1s", "invalid duration"),
        ("bounds", "weekdays 8-18", "DAYS HH:MM-HH:MM"),
        ("bounds", "MON-FUN 08:00-18:00", "invalid days"),
        ("bounds", "* 08:00-25:00", "invalid time"),
        ("bounds", "* 08:00-18:00 min=5 max=2", "min=5 is greater than max=2"),
        ("timezone", "Mars/Olympus", "unknown time zone"),
        ("speed", "fast", "unknown annotation"),
    ],
)
def test_invalid_values_name_the_annotation(key, value, words):
    with pytest.raises(InvalidSpec) as exc:
        parse_predictive_annotations({f"tidal.dev/{key}": value})
    assert exc.value.field == FIELD.format(key)
    assert words in exc.value.message
    if key != "speed":
        assert value in exc.value.message


def test_other_features_keys_can_be_allowed():
    ann = parse_predictive_annotations(
        {"tidal.dev/template-hash": "abc"}, also_known=frozenset({"tidal.dev/template-hash"})
    )
    assert ann == PredictiveAnnotations()


def test_bounds_syntax():
    windows = parse_bounds(
        "MON-FRI 08:00-18:00 min=2 max=10; * 00:00-06:00 max=1;SAT,SUN 22:00-02:00"
    )
    assert windows[0] == CronBound(frozenset({0, 1, 2, 3, 4}), 480, 1080, 2, 10)
    assert windows[1] == CronBound(frozenset(range(7)), 0, 360, None, 1)
    assert windows[2] == CronBound(frozenset({5, 6}), 1320, 120, None, None)
    assert parse_bounds("FRI-MON 00:00-24:00")[0].days == frozenset({4, 5, 6, 0})


def test_a_subdomain_of_tidal_dev_is_pointed_at_tidal_dev():
    key = "predictive.tidal.dev/cold-start-cost"
    with pytest.raises(InvalidSpec) as exc:
        parse_predictive_annotations({key: "3"})
    assert exc.value.field == f"spec.template.metadata.annotations[{key}]"
    assert "did you mean 'tidal.dev/cold-start-cost'?" in exc.value.message
