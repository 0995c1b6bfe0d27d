"""The simulated platform's semantics, each policy end to end, and the CLI's JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from tidal.api.autoscaling import AutoscalerConfig, parse_autoscaling_annotations
from tidal.api.pools import parse_pools
from tidal.autoscaler.kpa import decider_spec
from tidal.scheduler.placement import Demand
from tidal.sim import POLICIES, ServiceModel, Simulation, simulate, synthetic_trace
from tidal.sim.cli import simulate as simulate_command
from tidal.sim.dists import parse_distribution
from tidal.sim.model import policy_note, startup_sample
from tidal.sim.report import summarize
from tidal.sim.traces import Trace

FAST = {"stable-window": "6s", "scale-to-zero-grace-period": "1s"}
JSON_KEYS = {
    "requests",
    "cold_start_requests",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "slo_violations",
    "failed_requests",
    "replica_seconds",
    "gpu_seconds",
    "cost",
}


def service(cc=0, timeout=300.0, annotations=None, config=FAST) -> ServiceModel:
    cfg = AutoscalerConfig.from_mapping(config)
    ann = parse_autoscaling_annotations(annotations or {}, cfg)
    return ServiceModel("svc", decider_spec(cfg, ann, cc), cc, timeout)


def run(arrivals, svc, service_time=1.0, startup=2.0, policy="kpa", duration=None, pools=None):
    arrivals = np.asarray(arrivals, dtype=float)
    end = duration if duration is not None else float(arrivals.max(initial=0)) + 60
    trace = Trace("t", arrivals, end)
    times = np.full(len(arrivals), service_time)
    sim = Simulation(
        trace, svc, policy, pools or parse_pools(None), times, parse_distribution(str(startup))
    )
    return sim.run()


def test_request_at_zero_pokes_and_waits_for_a_cold_start():
    result = run([0.5], service(), service_time=1.0, startup=2.0)
    assert result.cold.tolist() == [True] and result.cold_starts == 1
    # Poked at 0.5: a replica starts at once, is ready at 2.5, answers at 3.5.
    assert result.latency[0] == pytest.approx(3.0)


def test_container_concurrency_queues_requests():
    svc = service(cc=1, annotations={"autoscaling.knative.dev/max-scale": "1"})
    result = run([10.0, 10.0, 10.0], svc, service_time=1.0, startup=0.5, duration=60)
    # One replica (initial scale) is warm by then; CC=1 serves them one after another.
    assert result.cold.sum() == 0
    assert result.latency.tolist() == pytest.approx([1.0, 2.0, 3.0])


def test_timeout_fails_with_504_while_waiting_or_in_service():
    svc = service(timeout=2.0, annotations={"autoscaling.knative.dev/max-scale": "1"})
    waiting = run([0.5], svc, service_time=0.1, startup=5.0)
    assert waiting.status.tolist() == [504] and np.isnan(waiting.latency[0])
    serving = run([10.0], svc, service_time=5.0, startup=0.1)
    assert serving.status.tolist() == [504]


def test_a_burst_at_zero_waits_for_its_replica():
    # Scaled to zero, the activator is in the path and holds up to its queue depth (10,000):
    # a burst of 15 at CC 1 and one replica all wait for it, as in Knative.
    svc = service(cc=1, annotations={"autoscaling.knative.dev/max-scale": "1"})
    result = run([0.5] * 15, svc, service_time=0.1, startup=1.0)
    assert (result.status == 0).sum() == 15


def test_pending_cap_out_of_the_activators_path_rejects_with_503():
    # Target burst capacity 0 takes the activator out of the path once a replica is ready
    # (SKS Serve mode): the replica's queue-proxy holds 10 x CC; the rest get 503 at once.
    annotations = {
        "autoscaling.knative.dev/max-scale": "1",
        "autoscaling.knative.dev/min-scale": "1",
        "autoscaling.knative.dev/target-burst-capacity": "0",
    }
    result = run([10.0] * 15, service(cc=1, annotations=annotations), service_time=0.1)
    assert (result.status == 503).sum() == 4  # 1 in service, 10 waiting
    assert (result.status == 0).sum() == 11


def test_kpa_scales_to_zero_and_hpa_does_not():
    kpa = run([0.5], service(), service_time=0.1, startup=0.5, duration=120)
    assert kpa.ready.max() == 1 and kpa.ready[-1] == 0 and kpa.replicas[-1] == 0
    hpa = run([0.5], service(), service_time=0.1, startup=0.5, policy="hpa", duration=120)
    assert hpa.ready[-1] == 1


def test_replica_seconds_and_gpu_cost_by_pool():
    pools = parse_pools(
        [
            {"name": "gpu", "capacity": {"nvidia.com/gpu": [0]}, "price": {"gpuSecond": 2}},
            {"name": "spill", "startupDelay": "10s", "capacity": {"nvidia.com/gpu": [1]}},
        ]
    )
    svc = service(annotations={"autoscaling.knative.dev/min-scale": "2"})
    svc = ServiceModel(svc.name, svc.spec, demand=Demand(gpus=1))
    result = run([], svc, startup=0.0, duration=100, pools=pools)
    assert set(result.usage) == {"gpu", "spill"}
    assert result.usage["gpu"].gpu_seconds == pytest.approx(98.0)  # started at the first tick
    assert result.usage["gpu"].cost == pytest.approx(196.0)
    assert result.ready[20] == 2 and result.ready[5] == 1  # the spill pool starts 10 s later


@pytest.mark.parametrize("policy", POLICIES)
def test_each_policy_replays_a_synthetic_trace(policy):
    trace = synthetic_trace(days=0.25, mean_rps=2.0, seed=1)
    results = simulate(
        trace,
        service(cc=2),
        (policy,),
        parse_pools(None),
        parse_distribution("exp:0.3"),
        parse_distribution("5"),
    )
    m = summarize(results, slo_s=1.0)["policies"][policy]
    assert m["requests"] == len(trace)
    assert m["replica_seconds"] > 0 and m["latency_p50"] is not None
    assert m["failed_requests"] < 0.05 * len(trace)


def test_replay_is_deterministic():
    trace = synthetic_trace(days=0.05, mean_rps=3.0, seed=2)
    args = (trace, service(cc=1), ("kpa",), parse_pools(None), parse_distribution("exp:0.5"))
    a = simulate(*args, parse_distribution("alibaba-load"))["kpa"]
    b = simulate(*args, parse_distribution("alibaba-load"))["kpa"]
    assert np.array_equal(a.latency, b.latency, equal_nan=True)
    assert np.array_equal(a.replicas, b.replicas)


def test_cli_json_shape_and_report(tmp_path):
    doc = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "svc"},
        "spec": {"template": {"spec": {"containers": [{"command": ["python", "app.py"]}]}}},
    }
    manifest = tmp_path / "service.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    args = ["--trace", "synthetic", "--days", "0.1", "--rps", "1", "-f", str(manifest)]
    report = tmp_path / "report"
    out = CliRunner().invoke(
        simulate_command,
        [*args, "--policy", "kpa", "--policy", "peak", "-o", "json", "--report", str(report)],
    )
    assert out.exit_code == 0, out.output
    policies = json.loads(out.stdout)["policies"]
    assert set(policies) == {"kpa", "peak"}
    assert all(set(m) >= JSON_KEYS for m in policies.values())
    assert {p.name for p in report.iterdir()} >= {
        "load_replicas.png",
        "cold_starts.png",
        "cost_vs_cold_starts.png",
        "summary.md",
    }
    table = CliRunner().invoke(simulate_command, [*args, "--policy", "kpa"])
    assert table.exit_code == 0 and "kpa" in table.output


def test_cli_reports_bad_trace_lines(tmp_path):
    manifest = tmp_path / "service.yaml"
    manifest.write_text(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: s}\n"
        "spec: {template: {spec: {containers: [{command: [x]}]}}}\n"
    )
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp\n5\nfive past\n")
    out = CliRunner().invoke(simulate_command, ["--trace", str(trace), "-f", str(manifest)])
    assert out.exit_code != 0 and f"{trace}:3: bad timestamp 'five past'" in out.output


def test_start_up_times_follow_the_moment_of_the_start_not_how_many_came_before():
    """Common random numbers: an extra start earlier in the replay (here an extra lone request)
    leaves the start-up time of a later cold start at the same second unchanged, so two
    policies are compared on their decisions rather than on reshuffled draws."""
    svc = service()
    startup = "uniform:1,30"
    plain = run([100.5, 1000.5], svc, service_time=0.1, startup=startup)
    extra = run([100.5, 500.5, 1000.5], svc, service_time=0.1, startup=startup)
    assert plain.cold_starts == 2 and extra.cold_starts == 3
    assert extra.latency[2] == pytest.approx(plain.latency[1])
    # A start at another second draws another time (the draws are not all alike).
    later = run([100.5, 1001.5], svc, service_time=0.1, startup=startup)
    assert later.latency[1] != pytest.approx(plain.latency[1])


def test_start_up_samples_spread_evenly():
    size = 4096
    hits = np.bincount(
        [startup_sample(s, t, k, size) for s in range(20) for t in range(2_000) for k in range(3)],
        minlength=size,
    )
    # 120,000 draws over 4,096 samples: about 29 each, as a uniform draw would spread them.
    assert hits.min() >= 8 and hits.max() <= 60
    assert startup_sample(3, 10, 0, size) == startup_sample(3, 10, 0, size)


def test_predictive_note_says_how_much_history_it_had_and_needed():
    model = service()  # tidal.dev/min-history defaults to 2 days
    for days, had in ((1, "24.0 h"), (2, "48.0 h")):  # 2: enough only at the trace's very end
        note = policy_note("predictive", model, 0.0, 0.0, days * 86400.0)
        assert note == (
            f"observer (ran as kpa): {had} of history, 48.0 h needed before it plans; "
            "give --warmup DAYS or --history FILE"
        )
    note = policy_note("predictive", model, 0.0, 0.0, 3 * 86400.0)
    assert note.startswith("observer (ran as kpa) for the first 48.0 h scored")
    assert policy_note("predictive", model, 2 * 86400.0, 0.0, 86400.0) == ""
    assert policy_note("kpa", model, 0.0, 0.0, 86400.0) == ""
