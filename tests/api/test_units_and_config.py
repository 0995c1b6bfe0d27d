from __future__ import annotations

import pytest

from tidal.api.config import parse_config
from tidal.api.errors import InvalidSpec
from tidal.api.units import parse_duration, parse_quantity


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), (15, 15.0), ("2.5", 2.5)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "1m x"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "value"), [("500m", 0.5), ("2", 2.0), ("512Mi", 512 * 2**20), ("1G", 1e9)]
)
def test_quantities(text, value):
    assert parse_quantity(text) == pytest.approx(value)


def test_config_sections_and_defaults():
    config = parse_config(
        {
            "autoscaler": {"stable-window": "6s", "scale-to-zero-grace-period": "2s"},
            "network": {"domain": "tidal.local", "rollout-duration": "30s"},
            "gc": {"retain-since-create-time": "disabled", "min-non-active-revisions": 1},
            "deployment": {"progress-deadline": "20s"},
        }
    )
    assert config.domain == "tidal.local"
    assert config.rollout_duration_s == 30.0
    assert config.progress_deadline_s == 20.0
    assert config.gc.retain_since_create_time_s is None
    assert config.gc.min_non_active_revisions == 1
    assert config.gc.retain_since_last_active_time_s == 15 * 3600
    assert config.autoscaler.stable_window == 6.0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"autoscalr": {}}, "autoscalr"),
        ({"network": {"domian": "x"}}, "network.domian"),
        ({"deployment": {"progress-deadline": "-1s"}}, "deployment.progress-deadline"),
        ({"gc": {"min-non-active-revisions": -1}}, "gc.min-non-active-revisions"),
        ({"autoscaler": {"stable-window": "1s"}}, "autoscaler.stable-window"),
    ],
)
def test_bad_config_is_named(data, field):
    with pytest.raises(InvalidSpec) as info:
        parse_config(data)
    assert info.value.field == field
