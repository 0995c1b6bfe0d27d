"""`tidal forecast`'s line on the priced warm decision, from the API's view of the fit."""

from __future__ import annotations

from tidal.cli.predictive import _warm_line

FIT = {
    "fitted": True,
    "used": False,
    "gaps": 42,
    "coldStartCostReplicaSeconds": 1.0,
    "autoPrice": True,
    "readySeconds": 42.0,
    "kpaTailSeconds": 90.0,
    "expectedReplicaTimeVsKpa": 0.274,
    "expectedColdStartsVsKpa": 0.0,
}


def test_the_line_gives_the_expected_ratios_when_the_held_out_gaps_can_show_them() -> None:
    line = _warm_line(FIT)
    assert "expects 0.00x the KPA's cold starts at 0.27x its idle replica time" in line
    assert "idle replicas follow it" in line


def test_the_line_says_there_is_nothing_to_beat_without_evidence() -> None:
    line = _warm_line({**FIT, "expectedColdStartsVsKpa": None})
    assert "expects" not in line
    assert "shorter than the KPA's 90 s tail" in line and "no cold start of its to beat" in line
