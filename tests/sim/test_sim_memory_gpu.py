"""The simulator models memory and GPU use (docs/simulator.md#what-is-simulated), so `hpa`
and `predictive` on `metric: memory|gpu` compare in `tidal simulate` like the other metrics:
memory is each ready replica's own plus bytes per request in service, GPU the busy share."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.sim.test_metric_sim import model, replay
from tidal.api.autoscaling import GPU, MEMORY
from tidal.autoscaler.signals import MIB, MetricTarget
from tidal.sim.cli import simulate


def memory_model(per_replica_mib: float, per_request_mib: float, target_mib: float):
    svc = model(MetricTarget(MEMORY, target_mib * MIB), cc=4)
    return replace(
        svc, memory_per_replica=per_replica_mib * MIB, memory_per_request=per_request_mib * MIB
    )


def test_hpa_on_memory_counts_each_replicas_own_memory():
    """8 req/s of 100 ms: 0.8 requests in service at 100 MiB each, against 150 MiB per
    replica. Without a footprint of its own one replica holds it (80 MiB); with 100 MiB per
    replica, one is at 180 MiB and two at 140 MiB each: HPA settles on two."""
    light = replay(memory_model(0, 100, 150), "hpa")
    heavy = replay(memory_model(100, 100, 150), "hpa")
    assert light.replicas[60:120].max() == 1
    assert heavy.replicas[60:120].max() == 2 and heavy.replicas[100:120].min() == 2


def test_hpa_on_gpu_scales_on_the_busy_share_of_the_replicas_gpus():
    """0.8 requests in service, each keeping a GPU busy, against 50 %: two replicas (40 %
    each); at 30 % a request, one (24 %)."""
    svc = model(MetricTarget(GPU, 50.0), cc=4)
    busy = replay(svc, "hpa")
    assert busy.replicas[60:120].max() == 2 and busy.replicas[100:120].min() == 2
    light = replay(replace(svc, gpu_per_request=30.0), "hpa")
    assert light.replicas[60:120].max() == 1


def test_predictive_on_memory_runs_the_reactive_part_on_the_metric():
    """The predictive class (here without history: its KPA) reads memory in replica-equivalents
    as HPA does, but without HPA's 10 % tolerance: at two replicas the load's peaks ask for a
    third, and three (380 MiB over 150) hold. With no request in flight there is no load: it
    scales to zero."""
    result = replay(memory_model(100, 100, 150), "predictive")
    assert 2 <= result.replicas[60:120].max() <= 3
    assert result.replicas[-1] == 0


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "svc.yaml"
    path.write_text(
        """
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: holder}
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/class: hpa.autoscaling.knative.dev
        autoscaling.knative.dev/metric: memory
        autoscaling.knative.dev/target: "400"
    spec:
      containerConcurrency: 4
      containers:
      - command: [python, app.py]
"""
    )
    return str(path)


def test_tidal_simulate_takes_memory_from_options_and_says_when_it_has_none(manifest):
    args = ["--trace", "synthetic", "--days", "0.02", "-f", manifest, "--policy", "hpa"]
    args += ["--jobs", "1", "-o", "json"]
    refused = CliRunner().invoke(simulate, args)
    assert refused.exit_code != 0 and "--memory-per-request" in refused.output
    ran = CliRunner().invoke(simulate, [*args, "--memory-per-request", "100Mi"])
    assert ran.exit_code == 0, ran.output
    assert '"hpa"' in ran.output


def test_concurrency_history_is_refused_for_a_plan_on_another_metric(manifest, tmp_path):
    """`--history` is mean concurrency; predictive on memory plans on memory, so it learns
    from the replayed warm-up instead of mixing units."""
    history = tmp_path / "history.csv"
    history.write_text("timestamp,value\n1700000000,1\n")
    predictive = tmp_path / "predictive.yaml"
    text = Path(manifest).read_text()
    predictive.write_text(text.replace("hpa.autoscaling.knative.dev", "predictive.tidal.dev"))
    args = ["--trace", "synthetic", "--days", "0.02", "-f", str(predictive)]
    args += ["--policy", "predictive"]
    args += ["--memory-per-request", "100Mi", "--history", str(history)]
    refused = CliRunner().invoke(simulate, args)
    assert refused.exit_code != 0
    assert "predictive on metric memory" in refused.output and "--warmup" in refused.output
