"""The KPA port: decider spec (docs/autoscaling.md#per-revision-settings), Scale()
(docs/autoscaling.md#the-scale-decision), multiscaler (docs/autoscaling.md#ticks-and-pokes) and the
KPA reconciler's bounds / scale-to-zero / SKS mode (docs/autoscaling.md#bounds-and-scale-to-zero),
checked against the docs/autoscaling.md#worked-examples oracles."""

from dataclasses import replace

import pytest

from tidal.api.autoscaling import AutoscalerConfig, AutoscalingAnnotations
from tidal.autoscaler.kpa import (
    ACTIVATING,
    ACTIVE,
    INACTIVE,
    PROXY,
    SERVE,
    Decider,
    RevisionAutoscaler,
    decider_spec,
)
from tidal.autoscaler.metrics import WeightedFloat64Buckets

DEFAULTS = decider_spec(AutoscalerConfig(), AutoscalingAnnotations(), 0)


def spec_with(config=None, container_concurrency=0, **annotations):
    return decider_spec(
        AutoscalerConfig.from_mapping(config or {}),
        AutoscalingAnnotations(**annotations),
        container_concurrency,
    )


def drive(ra, until, replicas, start=0):
    """Idle revision: tick every 2 s with ready pods following the applied replicas; the scraper
    records 0 every second while pods are ready (docs/autoscaling.md#metrics). Returns applied
    changes."""
    applied = []
    for t in range(start, until):
        if replicas > 0:
            ra.record(t, 0.0, 0.0)
        if t % 2 == 0:
            d = ra.tick(float(t), replicas)
            if d.replicas is not None:
                applied.append((t, d.replicas))
                replicas = d.replicas
    return applied, replicas


# --- decider spec (docs/autoscaling.md#per-revision-settings) -----------------------------------


def test_default_decider_spec():
    """docs/autoscaling.md#per-revision-settings, docs/autoscaling.md#worked-examples: concurrency
    target 70 of total 100, panic window 6 s, threshold 200 %."""
    s = DEFAULTS
    assert (s.scaling_metric, s.target_value, s.total_value) == ("concurrency", 70.0, 100.0)
    assert (s.stable_window, s.panic_window, s.panic_threshold) == (60.0, 6.0, 2.0)
    assert (s.target_burst_capacity, s.initial_scale, s.activation_scale) == (211.0, 1, 0)
    assert (s.max_scale_up_rate, s.max_scale_down_rate, s.scale_down_delay) == (1000.0, 2.0, 0)
    assert (s.min_scale, s.max_scale, s.scale_to_zero_grace_period) == (0, 0, 30.0)
    assert s.enable_scale_to_zero and s.aggregation_algorithm == "linear"


def test_rps_target_is_140_of_200():
    """docs/autoscaling.md#per-revision-settings: rps total 200 x 0.7."""
    s = spec_with(metric="rps")
    assert (s.scaling_metric, s.target_value, s.total_value) == ("rps", 140.0, 200.0)


def test_container_concurrency_sets_total_and_caps_target():
    """docs/autoscaling.md#per-revision-settings: total = CC; an annotation target is capped at CC
    for concurrency, not for rps."""
    assert (spec_with(container_concurrency=10).target_value) == pytest.approx(7.0)
    s = spec_with(container_concurrency=10, target=50.0)
    assert (s.total_value, s.target_value) == (10.0, pytest.approx(7.0))
    s = spec_with(container_concurrency=10, target=5.0, target_utilization_percentage=50.0)
    assert (s.total_value, s.target_value) == (5.0, 2.5)
    assert spec_with(container_concurrency=10, metric="rps", target=50.0).total_value == 50.0


def test_target_has_a_floor_of_001():
    """docs/autoscaling.md#per-revision-settings: TargetValue = max(0.01, total x tu)."""
    assert spec_with(target=0.01, target_utilization_percentage=1.0).target_value == 0.01


def test_panic_window_rounding_and_minimum():
    """docs/autoscaling.md#per-revision-settings: round(stable x pct / 100) to a second, at least 1
    s."""
    assert spec_with(window=25.0).panic_window == 3.0  # 2.5 s rounds half away from zero
    assert spec_with(window=6.0, panic_window_percentage=1.0).panic_window == 1.0
    assert spec_with(window=120.0, panic_window_percentage=50.0).panic_window == 60.0


def test_annotations_override_config():
    s = spec_with(
        {"scale-down-delay": "10s", "min-scale": "1", "target-burst-capacity": "0"},
        panic_threshold_percentage=300.0,
        scale_down_delay=20.0,
        min_scale=2,
        max_scale=9,
        activation_scale=3,
        initial_scale=4,
        target_burst_capacity=-1.0,
        scale_to_zero_pod_retention_period=90.0,
    )
    assert (s.panic_threshold, s.scale_down_delay, s.min_scale, s.max_scale) == (3.0, 20.0, 2, 9)
    assert (s.activation_scale, s.initial_scale, s.target_burst_capacity) == (3, 4, -1.0)
    assert s.scale_to_zero_pod_retention_period == 90.0
    assert spec_with({"scale-down-delay": "10s"}).scale_down_delay == 10.0


def test_initial_scale_zero_annotation_needs_allow_zero():
    """docs/autoscaling.md#per-revision-settings: an annotation of 0 is used only with
    allow-zero-initial-scale."""
    assert spec_with(initial_scale=0).initial_scale == 1
    assert spec_with({"allow-zero-initial-scale": "true"}, initial_scale=0).initial_scale == 0


# --- Scale() (docs/autoscaling.md#the-scale-decision) --------------------------------------------


def test_350_concurrency_gives_5_pods():
    """docs/autoscaling.md#worked-examples: ceil(350 / 70) = 5."""
    d = Decider(DEFAULTS, now=0)
    for t in range(10):
        d.record(t, 350.0, 0.0)
    r = d.scale(9, ready_pods=5)
    assert (r.valid, r.desired, r.stable_value, r.panic_value, r.in_panic) == (
        True,
        5,
        350.0,
        350.0,
        False,
    )


def test_rps_metric_scales_on_rps():
    d = Decider(spec_with(metric="rps"), now=0)
    d.record(0, 1.0, 700.0)
    assert d.scale(0, ready_pods=5).desired == 5  # ceil(700 / 140)


def test_panic_entry_hold_and_exit():
    """docs/autoscaling.md#worked-examples: ready=2, panic avg 300: dppc = 5, 5/2 >= 2 -> panic; 5
    is held as a floor until the stable window passes with no over-threshold tick."""
    d = Decider(DEFAULTS, now=0)
    d.record(100, 300.0, 0.0)
    r = d.scale(100, ready_pods=2)
    assert (r.desired, r.in_panic) == (5, True)
    for t in range(101, 161):
        d.record(t, 0.0, 0.0)
        if t % 2 == 0:
            r = d.scale(t, ready_pods=5)
            assert (r.desired, r.in_panic) == (5, True), t
    d.record(161, 0.0, 0.0)
    d.record(162, 0.0, 0.0)
    r = d.scale(162, ready_pods=5)
    assert (r.desired, r.in_panic) == (2, False)  # panicTime 100 + 60 < 162; floor(5 / 2)


def test_panic_is_extended_by_each_over_threshold_tick():
    d = Decider(DEFAULTS, now=0)
    d.record(0, 300.0, 0.0)
    d.scale(0, ready_pods=1)
    d.record(50, 300.0, 0.0)
    assert d.scale(50, ready_pods=1).in_panic
    d.record(100, 0.0, 0.0)
    assert d.scale(100, ready_pods=5).in_panic  # 50 + 60 >= 100
    d.record(111, 0.0, 0.0)
    assert not d.scale(111, ready_pods=5).in_panic


def test_decider_starts_in_panic_with_more_than_one_ready_pod():
    """docs/autoscaling.md#the-scale-decision: a new decider with ready > 1 holds the current scale
    (maxPanicPods = ready)."""
    d = Decider(DEFAULTS, now=0, ready=4)
    d.record(0, 0.0, 0.0)
    r = d.scale(0, ready_pods=4)
    assert (r.desired, r.in_panic) == (4, True)
    d2 = Decider(DEFAULTS, now=0, ready=1)
    d2.record(0, 0.0, 0.0)
    assert d2.scale(0, ready_pods=1).in_panic is False


def test_scale_down_halves_per_tick():
    """docs/autoscaling.md#worked-examples: from 10 pods with a stable value of 0: 10 -> 5 -> 2 -> 1
    -> 0 (maxScaleDownRate 2)."""
    d = Decider(DEFAULTS, now=0)
    ready, seen = 10, []
    for t in range(0, 8, 2):
        d.record(t, 0.0, 0.0)
        ready = d.scale(t, ready_pods=ready).desired
        seen.append(ready)
    assert seen == [5, 2, 1, 0]


def test_unreachable_scales_down_without_rate_limit_or_delay():
    """docs/autoscaling.md#the-scale-decision: maxDown = 0 when unreachable; the scale-down-delay
    applies only when reachable."""
    d = Decider(replace(DEFAULTS, scale_down_delay=30.0), now=0)
    d.record(0, 0.0, 0.0)
    assert d.scale(0, ready_pods=10, reachable=False).desired == 0


def test_max_scale_up_rate():
    """docs/autoscaling.md#the-scale-decision: maxUp = ceil(MaxScaleUpRate x ready)."""
    d = Decider(spec_with({"max-scale-up-rate": "2.5"}), now=0)
    d.record(0, 7000.0, 0.0)
    assert d.scale(0, ready_pods=2).desired == 5


def test_scale_down_delay_holds_the_max():
    """docs/autoscaling.md#worked-examples, docs/autoscaling.md#the-scale-decision: with
    scale-down-delay D, desired is the max over the last D (2 s buckets)."""
    d = Decider(replace(DEFAULTS, scale_down_delay=10.0), now=0)
    d.record(0, 350.0, 0.0)
    assert d.scale(0, ready_pods=5).desired == 5
    seen = []
    for t in range(2, 16, 2):
        for s in (t - 1, t):
            d.record(s, 0.0, 0.0)
        seen.append(d.scale(t, ready_pods=5).desired)
    # The raw decision falls to 2 (floor(5 / 2)) at once; 5 is held until t=10, when the
    # 2 s bucket of t=0 leaves the 5-bucket window.
    assert seen == [5, 5, 5, 5, 2, 2, 2]


def test_activation_scale_is_the_floor_of_nonzero_demand():
    """docs/autoscaling.md#the-scale-decision, docs/autoscaling.md#annotations: ActivationScale
    applies whenever demand > 0; zero demand stays zero."""
    d = Decider(replace(DEFAULTS, activation_scale=3), now=0)
    d.record(0, 1.0, 0.0)
    assert d.scale(0, ready_pods=0).desired == 3
    for t in range(1, 62):
        d.record(t, 0.0, 0.0)
    assert d.scale(61, ready_pods=1).desired == 0


def test_excess_burst_capacity_examples():
    """docs/autoscaling.md#worked-examples: defaults, 3 ready pods, panic concurrency 50: floor(300
    - 211 - 50) = 39. At 100: -11. TBC 0 gives 0 and TBC -1 gives -1."""
    for load, ebc in [(50.0, 39.0), (100.0, -11.0)]:
        d = Decider(DEFAULTS, now=0)
        d.record(0, load, 0.0)
        assert d.scale(0, ready_pods=3).ebc == ebc
    for tbc in (0.0, -1.0):
        d = Decider(replace(DEFAULTS, target_burst_capacity=tbc), now=0)
        d.record(0, 50.0, 0.0)
        assert d.scale(0, ready_pods=3).ebc == tbc


def test_no_data_is_invalid_unless_tbc_is_minus_one():
    """docs/autoscaling.md#metrics: no write for longer than the stable window -> ErrNoData (skip
    the tick), except with TBC = -1 (no scrape target)."""
    d = Decider(DEFAULTS, now=0)
    assert d.scale(0, ready_pods=0).valid is False
    d.record(0, 70.0, 0.0)
    assert d.scale(60, ready_pods=1).valid
    r = d.scale(61, ready_pods=1)
    assert (r.valid, r.desired) == (False, -1)
    r = Decider(replace(DEFAULTS, target_burst_capacity=-1.0), now=0).scale(0, 0)
    assert (r.valid, r.desired) == (True, 0)


def test_weighted_exponential_algorithm_is_used():
    d = Decider(replace(DEFAULTS, aggregation_algorithm="weighted-exponential"), now=0)
    stable, panic = d._windows["concurrency"]
    assert isinstance(stable, WeightedFloat64Buckets) and stable.smoothing_coeff == 0.2
    assert panic.smoothing_coeff == pytest.approx(0.7846, abs=1e-4)
    d.record(0, 350.0, 0.0)
    r = d.scale(0, ready_pods=1)
    assert r.stable_value == pytest.approx(70.0)  # 350 x 0.2, unnormalised
    assert r.panic_value == pytest.approx(350.0 * panic.smoothing_coeff)
    assert (r.desired, r.in_panic) == (4, True)  # ceil(274.6 / 70)


# --- RevisionAutoscaler (docs/autoscaling.md#ticks-and-pokes,
# docs/autoscaling.md#bounds-and-scale-to-zero) ---------------------------------------------------


def test_first_tick_creates_initial_scale_and_ebc_starts_negative():
    """docs/autoscaling.md#ticks-and-pokes: a new decider has EBC = initialScale x total - TBC =
    -111 (activator in path); docs/autoscaling.md#bounds-and-scale-to-zero: the deployment starts
    with initialScale replicas and the PA is Activating."""
    ra = RevisionAutoscaler(DEFAULTS, now=0)
    assert (ra.desired_scale, ra.ebc) == (-1, -111.0)
    d = ra.tick(0, ready=0)
    assert (d.replicas, d.desired_raw, d.active, d.mode) == (1, -1, ACTIVATING, PROXY)
    assert ra.tick(2, ready=0).replicas is None


def test_full_scale_down_to_zero_after_restart_with_10_pods():
    """docs/autoscaling.md#worked-examples with the PA steps: a restarted autoscaler with 10 ready
    pods starts in panic and holds 10 for the stable window; then 10 -> 5 -> 2 -> 1; desired 0 is
    not applied until the PA has been Active >= 60 s, then Inactive; with defaults 1 pod has EBC
    -111 < 0, so the activator has been in path since t=66 and 0 is applied when the 30 s grace has
    passed."""
    ra = RevisionAutoscaler(DEFAULTS, now=0, ready=10)
    applied, _ = drive(ra, 140, replicas=10)
    assert applied == [(62, 5), (64, 2), (66, 1), (96, 0)]
    assert ra.active == INACTIVE and ra.mode == PROXY


def test_scale_to_zero_pa_steps():
    """docs/autoscaling.md#bounds-and-scale-to-zero with TBC 0 (activator out of path while
    serving): Active for >= stable window, then Inactive (want 0, not applied), SKS to Proxy, and 0
    is applied after the 30 s grace."""
    spec = replace(DEFAULTS, target_burst_capacity=0.0)
    ra = RevisionAutoscaler(spec, now=0)
    assert ra.tick(0, ready=0).replicas == 1
    ra.record(1, 0.0, 0.0)
    d = ra.tick(2, ready=1)
    assert d.active == ACTIVE  # ready >= minReady
    ra.record(3, 0.0, 0.0)
    d = ra.tick(4, ready=1)
    assert (d.replicas, d.desired_raw, d.mode) == (None, 0, SERVE)
    assert d.reason == "idle; scale to zero in 58s"
    applied, _ = drive(ra, 200, replicas=1, start=5)
    assert applied == [(92, 0)]
    # Active since t=2 -> Inactive at t=62 (want 0) -> grace 30 s from the Proxy switch.
    ra2 = RevisionAutoscaler(spec, now=0)
    ra2.tick(0, 0)
    drive(ra2, 62, replicas=1, start=1)
    d = ra2.tick(62, 1)
    assert (d.active, d.mode, d.replicas) == (INACTIVE, PROXY, None)
    ra2.record(63, 0.0, 0.0)
    d = ra2.tick(64, 1)
    assert d.reason == "scale-to-zero grace 28s left"


def test_pod_retention_delays_the_last_pod():
    """docs/autoscaling.md#bounds-and-scale-to-zero: InactiveFor must reach max(grace, retention)
    before 0 is applied."""
    spec = replace(DEFAULTS, scale_to_zero_pod_retention_period=90.0)
    ra = RevisionAutoscaler(spec, now=0)
    ra.tick(0, 0)
    applied, _ = drive(ra, 300, replicas=1, start=1)
    assert applied == [(152, 0)]  # Inactive at t=62, + 90 s


def test_scale_to_zero_disabled_keeps_one():
    spec = replace(DEFAULTS, enable_scale_to_zero=False)
    ra = RevisionAutoscaler(spec, now=0)
    ra.tick(0, 0)
    applied, replicas = drive(ra, 300, replicas=1, start=1)
    assert (applied, replicas, ra.active) == ([], 1, ACTIVE)


def test_poke_from_zero_and_cold_start():
    """docs/autoscaling.md#ticks-and-pokes Poke / docs/autoscaling.md#scale-from-zero: at desired 0
    an activator stat with concurrency triggers an immediate tick; the partial window gives avg 1,
    so 1 pod; EBC < 0 keeps the SKS in Proxy."""
    ra = RevisionAutoscaler(DEFAULTS, now=0)
    assert ra.poke(0, 1.0) is False  # desired is still -1
    ra.tick(0, 0)
    drive(ra, 120, replicas=1, start=1)
    assert (ra.desired_scale, ra.active) == (0, INACTIVE)
    ra.record(300.2, 1.0, 1.0)
    assert ra.poke(300.2, 0.0) is False
    assert ra.poke(300.2, 1.0) is True
    d = ra.tick(300.2, ready=0)
    assert (d.replicas, d.desired_raw, d.stable_value) == (1, 1, 1.0)
    assert (d.active, d.mode) == (ACTIVATING, PROXY)
    assert ra.poke(300.3, 1.0) is False
    ra.record(301, 1.0, 1.0)
    assert ra.tick(302, ready=1).active == ACTIVE


def test_activation_scale_from_zero():
    """docs/autoscaling.md#annotations: activation-scale makes a scale-from-zero go straight to
    AS."""
    ra = RevisionAutoscaler(replace(DEFAULTS, activation_scale=3, initial_scale=0), now=0)
    assert ra.tick(0, 0).replicas == 0
    ra.record(10, 1.0, 1.0)
    assert ra.tick(10, 0).replicas == 3


def test_initial_scale_is_the_minimum_until_initialised():
    """docs/autoscaling.md#bounds-and-scale-to-zero: the deployment starts at initialScale; min =
    max(min, initialScale) until minReady = initialScale pods were ready; afterwards the decider may
    go lower."""
    ra = RevisionAutoscaler(replace(DEFAULTS, initial_scale=3), now=0)
    assert ra.tick(0, 0).replicas == 3
    ra.record(1, 70.0, 0.0)
    d = ra.tick(2, ready=2)
    assert (d.desired_raw, d.replicas, d.active) == (1, None, ACTIVATING)
    ra.record(3, 70.0, 0.0)
    d = ra.tick(4, ready=3)
    assert d.active == ACTIVE
    ra.record(5, 70.0, 0.0)
    assert ra.tick(6, ready=3).replicas == 1


def test_zero_initial_scale_is_inactive_at_once():
    ra = RevisionAutoscaler(replace(DEFAULTS, initial_scale=0), now=0)
    d = ra.tick(0, 0)
    assert (d.replicas, d.active) == (0, INACTIVE)


def test_min_and_max_clamp():
    """docs/autoscaling.md#bounds-and-scale-to-zero: desired is clamped to [min, max]; min keeps the
    revision from reaching zero; min is ignored when unreachable."""
    spec = replace(DEFAULTS, min_scale=2, max_scale=4)
    ra = RevisionAutoscaler(spec, now=0)
    ra.record(0, 7000.0, 0.0)
    assert ra.tick(0, 0).replicas == 4
    applied, _ = drive(ra, 300, replicas=4, start=1)
    # Panic (7000 / 70 = 100 pods wanted) holds 4 until 60 s after the last over-threshold
    # tick (t=4); then floor(4 / 2) = 2, and min-scale keeps it there instead of 1 or 0.
    assert applied == [(66, 2)] and ra.active == ACTIVE
    ra.record(300, 0.0, 0.0)
    d = ra.tick(300, ready=2, reachable=False)
    assert d.replicas is None and d.desired_raw == 0
    ra.record(301, 0.0, 0.0)
    d = ra.tick(302, ready=2, reachable=False)
    assert d.active == INACTIVE


def test_activation_times_out():
    """docs/autoscaling.md#bounds-and-scale-to-zero: Activating longer than progress deadline + 30 s
    with desired 0 applies 0."""
    ra = RevisionAutoscaler(DEFAULTS, now=0, progress_deadline_s=100)
    assert ra.tick(0, 0).replicas == 1
    d = ra.tick(130, 0)
    assert (d.replicas, d.active) == (None, ACTIVATING)
    d = ra.tick(132, 0)
    assert (d.replicas, d.active) == (0, INACTIVE)
    assert d.reason == "activation timed out after 132s"


def test_invalid_tick_keeps_last_desired():
    """docs/autoscaling.md#ticks-and-pokes: an invalid Scale (no data) leaves the last DesiredScale
    in place."""
    ra = RevisionAutoscaler(DEFAULTS, now=0)
    ra.record(0, 350.0, 0.0)
    assert ra.tick(0, 0).replicas == 5
    d = ra.tick(100, 5)
    assert (d.desired_raw, d.replicas, ra.desired_scale) == (-1, None, 5)


def test_serve_mode_needs_positive_ebc():
    """docs/autoscaling.md#worked-examples: 3 ready pods at 50 concurrency: EBC 39 -> Serve; at 100:
    -11 -> Proxy."""
    ra = RevisionAutoscaler(DEFAULTS, now=0)
    ra.record(0, 50.0, 0.0)
    d = ra.tick(0, ready=3)
    assert (d.ebc, d.mode) == (39.0, SERVE)
    ra.record(1, 150.0, 0.0)  # panic window now averages 100
    d = ra.tick(1, ready=3)
    assert (d.panic_value, d.ebc, d.mode) == (100.0, -11.0, PROXY)


def test_restart_at_zero_stays_inactive_and_scales_up_on_demand():
    """A restored revision at zero applies nothing until there is demand; the new decider's
    DesiredScale is -1, so the first stat waits for the next 2 s tick
    (docs/autoscaling.md#ticks-and-pokes)."""
    ra = RevisionAutoscaler(DEFAULTS, now=0, ready=0, initialized=True)
    d = ra.tick(0, 0)
    assert (d.replicas, d.active, d.mode) == (None, INACTIVE, PROXY)
    ra.record(5, 1.0, 1.0)
    assert ra.poke(5, 1.0) is False
    d = ra.tick(6, 0)
    assert (d.replicas, d.active) == (1, ACTIVATING)


def test_restart_with_pods_keeps_them():
    """A restored revision with 3 ready pods: no initial scale, decider starts in panic
    (docs/autoscaling.md#the-scale-decision)."""
    ra = RevisionAutoscaler(replace(DEFAULTS, initial_scale=5), now=0, ready=3, initialized=True)
    ra.record(0, 0.0, 0.0)
    d = ra.tick(0, 3)
    assert (d.replicas, d.desired_raw, d.in_panic, d.active) == (None, 3, True, ACTIVE)
