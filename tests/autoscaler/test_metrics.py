"""Window aggregation, docs/autoscaling.md#windows (and docs/autoscaling.md#worked-examples for the
partial window)."""

import pytest

from tidal.autoscaler.metrics import (
    MaxTimeWindow,
    TimedFloat64Buckets,
    WeightedFloat64Buckets,
    new_buckets,
    smoothing_coefficient,
)


def test_first_stat_gives_its_value_not_a_sixtieth():
    """docs/autoscaling.md#worked-examples: a fresh revision's first stat of 1 yields avg 1
    immediately, not 1/60."""
    b = TimedFloat64Buckets(60)
    b.record(1000.4, 1.0)
    assert b.window_average(1000.9) == 1.0


def test_partial_window_divides_by_buckets_since_first_write():
    """docs/autoscaling.md#windows: now <= lastWrite -> windowTotal / min(span+1, nb)."""
    b = TimedFloat64Buckets(60)
    for t, v in [(10, 2.0), (11, 4.0), (12, 6.0)]:
        b.record(t, v)
    assert b.window_average(12) == 4.0


def test_values_in_the_same_second_sum():
    """docs/autoscaling.md#metrics: scraper and activator stats of the same second add up in one
    bucket."""
    b = TimedFloat64Buckets(60)
    b.record(5.1, 3.0)
    b.record(5.7, 2.0)
    assert b.window_average(5) == 5.0


def test_stale_buckets_are_dropped_when_data_stops():
    """docs/autoscaling.md#windows: 0 < now-lastWrite < window: remove buckets in (lastWrite, now]
    and shrink the divisor. Six 1 s buckets hold 1..6; three seconds later only 4, 5, 6 remain."""
    b = TimedFloat64Buckets(6)
    for t in range(6):
        b.record(t, float(t + 1))
    assert b.window_average(5) == 3.5
    assert b.window_average(8) == 5.0


def test_single_stat_stays_until_the_window_passes():
    """docs/autoscaling.md#windows: the partial-window average of one stat is that stat until a
    whole window passes."""
    b = TimedFloat64Buckets(60)
    b.record(100, 1.0)
    assert b.window_average(159) == 1.0
    assert b.window_average(160) == 0.0


def test_gap_of_a_window_resets_the_buffer():
    """docs/autoscaling.md#windows: a gap of at least one window resets all buckets and
    firstWrite."""
    b = TimedFloat64Buckets(6)
    b.record(0, 100.0)
    b.record(6, 2.0)
    assert b.window_average(6) == 2.0


def test_gaps_shorter_than_a_window_count_as_zero():
    b = TimedFloat64Buckets(6)
    b.record(0, 6.0)
    b.record(3, 6.0)
    assert b.window_average(3) == 3.0  # (6 + 0 + 0 + 6) / 4


def test_writes_older_than_a_window_are_ignored():
    b = TimedFloat64Buckets(6)
    b.record(100, 6.0)
    b.record(90, 1000.0)
    assert b.window_average(100) == 6.0


def test_average_is_rounded_to_six_digits():
    b = TimedFloat64Buckets(60)
    b.record(0, 1.0)
    b.record(2, 0.0)
    assert b.window_average(2) == 0.333333


def test_is_empty_after_a_window_without_writes():
    b = TimedFloat64Buckets(60)
    assert b.is_empty(0)
    b.record(10, 0.0)
    assert not b.is_empty(70)
    assert b.is_empty(71)


def test_resize_window_keeps_the_newest_buckets():
    """docs/autoscaling.md#windows ResizeWindow copies the newest buckets."""
    b = TimedFloat64Buckets(6)
    for t in range(6):
        b.record(t, float(t + 1))
    b.resize_window(3, now=5)
    assert len(b.buckets) == 3
    assert b.window_average(5) == 5.0  # (4 + 5 + 6) / 3


def test_smoothing_coefficient_values():
    """docs/autoscaling.md#windows: a 60-bucket window gives alpha 0.2, a 6-bucket window about
    0.785."""
    assert smoothing_coefficient(60) == 0.2
    assert smoothing_coefficient(6) == pytest.approx(1 - 0.0001 ** (1 / 6))
    assert smoothing_coefficient(6) == pytest.approx(0.7846, abs=1e-4)
    assert WeightedFloat64Buckets(60).smoothing_coeff == 0.2


def test_weighted_average_matches_knatives_documented_example():
    """bucketing.go comment: data [10, 10, 5, 5] (newest last) with alpha 0.6 gives 5.544;
    reversed it gives 9.072. Weights are not normalised."""
    for data, expected in [([10, 10, 5, 5], 5.544), ([5, 5, 10, 10], 9.072)]:
        b = WeightedFloat64Buckets(4)
        b.smoothing_coeff = 0.6
        for t, v in enumerate(data):
            b.record(t, float(v))
        assert b.window_average(3) == pytest.approx(expected)


def test_weighted_average_decays_over_empty_seconds():
    """docs/autoscaling.md#windows: z empty seconds multiply the weights by (1-alpha)^z and drop z
    buckets."""
    b = WeightedFloat64Buckets(6)
    a = b.smoothing_coeff
    b.record(0, 10.0)
    assert b.window_average(0) == pytest.approx(10 * a)
    assert b.window_average(2) == pytest.approx(10 * a * (1 - a) ** 2)
    assert b.window_average(7) == 0.0


def test_new_buckets_selects_the_algorithm():
    assert type(new_buckets(60, "weighted-exponential")) is WeightedFloat64Buckets
    assert type(new_buckets(60, "linear")) is TimedFloat64Buckets


def test_max_window_holds_the_maximum_for_its_duration():
    """docs/autoscaling.md#the-scale-decision scale-down-delay: max over the trailing window, 2 s
    buckets."""
    w = MaxTimeWindow(10, 2)
    assert w.size == 5
    seen = []
    for t, v in [(0, 5), (2, 3), (4, 1), (8, 1), (10, 2), (12, 1), (20, 1)]:
        w.record(t, v)
        seen.append(w.current())
    assert seen == [5, 5, 5, 5, 3, 2, 1]


def test_max_window_same_bucket_keeps_the_larger():
    w = MaxTimeWindow(4, 2)
    w.record(10.0, 7)
    w.record(11.9, 3)
    assert w.current() == 7
    assert MaxTimeWindow(4, 2).current() == 0
    assert MaxTimeWindow(5, 2).size == 3
