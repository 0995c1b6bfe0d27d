"""`tidal simulate` at fleet scale: per-service replays sharing pools, --services, --sweep
frontiers, --warmup/--history for predictive, and the errors for bad combinations."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from tidal.sim.cli import build_jobs, load_any_trace, load_platform, service_model
from tidal.sim.cli import simulate as simulate_command

SERVICE = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "model"},
    "spec": {
        "template": {
            "spec": {
                "containerConcurrency": 2,
                "containers": [{"command": ["x"], "resources": {"limits": {"nvidia.com/gpu": 1}}}],
            }
        }
    },
}
POOLS = {
    "pools": [
        {"name": "reserved", "capacity": {"nvidia.com/gpu": [0, 1]}, "price": {"gpuSecond": 1}},
        {
            "name": "elastic",
            "startupDelay": "20s",
            "capacity": {"nvidia.com/gpu": ["e0", "e1", "e2"]},
            "price": {"gpuSecond": 2},
        },
    ]
}


@pytest.fixture
def files(tmp_path):
    manifest, pools = tmp_path / "service.yaml", tmp_path / "tidal.yaml"
    manifest.write_text(yaml.safe_dump(SERVICE))
    pools.write_text(yaml.safe_dump(POOLS))
    return ["-f", str(manifest), "--pools", str(pools)]


def invoke(args):
    out = CliRunner().invoke(simulate_command, args)
    assert out.exit_code == 0, out.output
    return out


def fleet_csv(tmp_path):
    rng = np.random.default_rng(3)
    rows = ["timestamp,service"]
    ids = ["Chat_7B", "chat-7b", "Embed", "rare"]
    for t in np.sort(rng.uniform(0, 4 * 3600, 600)):
        rows.append(f"{1_700_000_000 + t:.3f},{rng.choice(ids, p=[0.5, 0.3, 0.15, 0.05])}")
    path = tmp_path / "fleet.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_per_service_replays_each_service_on_shared_pools(tmp_path, files):
    trace = fleet_csv(tmp_path)
    args = ["--trace", str(trace), *files, "--per-service", "--policy", "kpa", "--policy", "peak"]
    doc = json.loads(invoke([*args, "-o", "json", "--jobs", "2"]).stdout)
    kpa = doc["policies"]["kpa"]
    assert set(kpa["services"]) == {"chat-7b", "chat-7b-2", "embed", "rare"}
    assert sum(m["requests"] for m in kpa["services"].values()) == kpa["requests"] == 600
    assert sum(m["cold_starts"] for m in kpa["services"].values()) == kpa["cold_starts"]
    # Four always-on services need four GPUs: two reserved, the rest spill to elastic.
    peak = doc["policies"]["peak"]
    assert set(peak["pools"]) == {"reserved", "elastic"} and peak["max_replicas"] >= 4
    total = sum(m["gpu_seconds"] for m in peak["services"].values())
    assert total == pytest.approx(peak["gpu_seconds"], abs=1.0)  # each rounded to 0.1 s

    two = json.loads(invoke([*args, "--services", "2", "-o", "json"]).stdout)
    assert set(two["policies"]["kpa"]["services"]) == {"chat-7b", "chat-7b-2"}
    table = invoke([*args, "--services", "3"]).output
    assert "services with the most cold-start requests (kpa)" in table


def test_sweep_reports_a_frontier_per_policy_and_draws_it(tmp_path, files):
    report = tmp_path / "report"
    args = ["--trace", "synthetic", "--shape", "sparse", "--days", "0.5", "--rps", "0.05"]
    out = invoke(
        [
            *args,
            *files,
            "--policy",
            "keepalive",
            "--policy",
            "kpa",
            "--sweep",
            "-o",
            "json",
            "--report",
            str(report),
            "--jobs",
            "2",
        ]
    )
    doc = json.loads(out.stdout)
    fronts = doc["frontiers"]
    assert set(fronts) == {"keepalive", "kpa"}
    keepalive = fronts["keepalive"]
    assert [p["setting"] for p in keepalive][:2] == ["default", "keep_alive_s=30"]
    assert any(p["pareto_optimal"] for p in keepalive)
    # Longer keep-alive: fewer cold starts, more GPU time.
    short, long = keepalive[1], keepalive[-1]
    assert long["cold_start_requests"] <= short["cold_start_requests"]
    assert long["cost"] > short["cost"]
    for points in fronts.values():
        for p in points:
            assert {"setting", "cold_start_requests", "replica_seconds", "cost"} <= set(p)
            dominated = any(
                q["cold_start_requests"] <= p["cold_start_requests"]
                and q["cost"] <= p["cost"]
                and (q["cold_start_requests"], q["cost"]) != (p["cold_start_requests"], p["cost"])
                for q in points
            )
            assert p["pareto_optimal"] == (not dominated)
    # The KPA's default window is 60 s: that point is the default's replay, run once.
    kpa = {p["setting"]: p for p in fronts["kpa"]}
    assert [p["setting"] for p in fronts["kpa"]][:5] == [
        "default",
        "window=10s",
        "window=30s",
        "window=60s",
        "window=180s",
    ]
    assert {**kpa["window=60s"], "setting": "default"} == kpa["default"]
    assert (report / "frontiers.png").stat().st_size > 10_000


def test_sweep_points_at_the_defaults_are_not_replayed_again(tmp_path, files):
    config, _ = load_platform(files[3])
    trace = load_any_trace("synthetic", 0.01, 0.05, 0, "sparse", None)
    policies = ("kpa", "predictive", "hpa", "ray", "keepalive", "hybrid-histogram", "peak")

    def sweep(doc):
        jobs, same = build_jobs(
            doc, config, service_model(doc, config), trace, policies, False, True
        )
        return {(job.policy, job.label) for job in jobs}, same

    jobs, same = sweep(SERVICE)
    assert same == {
        "kpa": ["window=60s"],
        "hpa": ["down_stabilization_s=300"],
        "ray": ["downscale_delay_s=600"],
        "keepalive": ["keep_alive_s=600"],
        "hybrid-histogram": ["tail=0.99"],
    }
    assert len(jobs) == 39 - 5 and ("kpa", "window=60s") not in jobs
    assert sum(policy == "predictive" for policy, _ in jobs) == 7  # `auto` is no swept price
    # A manifest's own window is the default there.
    doc = json.loads(json.dumps(SERVICE))
    doc["spec"]["template"]["metadata"] = {"annotations": {"autoscaling.knative.dev/window": "30s"}}
    jobs, same = sweep(doc)
    assert same["kpa"] == ["window=30s"] and ("kpa", "window=60s") in jobs


def test_predictive_notes_observer_until_it_has_history(tmp_path, files):
    doc = json.loads(json.dumps(SERVICE))
    doc["spec"]["template"]["metadata"] = {"annotations": {"tidal.dev/min-history": "6h"}}
    (tmp_path / "service.yaml").write_text(yaml.safe_dump(doc))
    args = ["--trace", "synthetic", "--days", "0.4", "--rps", "0.05", *files]
    args += ["--policy", "predictive", "-o", "json"]
    plain = json.loads(invoke(args).stdout)["policies"]["predictive"]
    assert plain["note"].startswith("observer (ran as kpa)")
    warm = json.loads(invoke([*args, "--warmup", "0.3"]).stdout)["policies"]["predictive"]
    assert "note" not in warm
    assert warm["requests"] < plain["requests"]  # only the last 0.1 d is scored

    # Six hours given as a history file instead.
    history = tmp_path / "history.csv"
    start = 1704067200 - 6 * 3600  # before the synthetic trace's Monday, 00:00 UTC
    minutes = np.arange(6 * 60)
    values = 0.3 + 0.25 * np.sin(2 * np.pi * minutes / 1440)
    history.write_text(
        "timestamp,value\n"
        + "\n".join(f"{start + 60 * m},{v:.3f}" for m, v in zip(minutes, values, strict=True))
    )
    given = json.loads(invoke([*args, "--history", str(history)]).stdout)["policies"]
    assert "note" not in given["predictive"]
    assert given["predictive"]["requests"] == plain["requests"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--per-service"], "has one service"),
        (["--warmup", "5"], "leaves nothing of the trace to score"),
        (["--slo", "nan"], "'nan' is not a finite number"),
        (["--rps", "0"], "0.0 is not in the range x>0"),
        (["--rps", "1e9"], "the simulator replays at most 20,000,000"),
        (["--service-time", "tokens"], "has no token columns"),
        (["--seed", "-1"], "'--seed': -1 is not in the range x>=0"),
    ],
)
def test_bad_combinations_are_named(files, extra, message):
    out = CliRunner().invoke(
        simulate_command, ["--trace", "synthetic", "--days", "0.1", *files, *extra]
    )
    assert out.exit_code != 0 and message in out.output


def test_a_service_no_pool_can_hold_is_refused(tmp_path, files):
    pools = tmp_path / "cpu.yaml"
    pools.write_text(yaml.safe_dump({"pools": [{"name": "cpu", "capacity": {"cpu": 8}}]}))
    args = ["--trace", "synthetic", "--days", "0.1", "-f", files[1]]
    for extra, where in (
        (["--pools", str(pools)], f"in the pools of {pools}"),
        ([], "in the default pool (no --pools)"),
    ):
        out = CliRunner().invoke(simulate_command, [*args, *extra])
        assert out.exit_code != 0
        assert "no pool can hold one replica of 1 nvidia.com/gpu" in out.output
        assert where in out.output


def test_services_needs_a_fleet_trace(tmp_path, files):
    trace = tmp_path / "one.csv"
    trace.write_text("timestamp\n1\n2\n3\n")
    out = CliRunner().invoke(simulate_command, ["--trace", str(trace), *files, "--services", "2"])
    assert out.exit_code != 0 and "needs a trace with several services" in out.output


def test_a_knative_manifest_with_an_image_and_its_secrets_simulates(tmp_path, files):
    """As a cluster takes it: an image and no command (the simulator runs nothing), in a file
    that also holds the Secret its volumes read."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf"}, "data": {}}
    service = json.loads(json.dumps(SERVICE))
    container = service["spec"]["template"]["spec"]["containers"][0]
    container.pop("command")
    container["image"] = "ghcr.io/acme/model:1"
    container["volumeMounts"] = [{"name": "hf", "mountPath": "/etc/hf", "readOnly": True}]
    service["spec"]["template"]["spec"]["volumes"] = [
        {"name": "hf", "secret": {"secretName": "hf"}}
    ]
    manifest = tmp_path / "service.yaml"
    manifest.write_text(yaml.safe_dump_all([secret, service]))
    pools = files[2:]
    args = ["--trace", "synthetic", "-f", str(manifest), *pools, "--policy", "kpa", "-o", "json"]
    out = invoke(args)
    assert json.loads(out.output)["policies"]["kpa"]["requests"] > 0
