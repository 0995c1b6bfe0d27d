"""Bad input changes nothing; state survives restarts (clean and kill -9); gradual rollout."""

from __future__ import annotations

import copy
import json
import time

import pytest
import yaml

from tests.integration.harness import (
    FAST_AUTOSCALER,
    Platform,
    hello_service,
    host,
    process_alive,
    wait_until,
)

BAD_CASES = [
    (
        "unknown field",
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(portz=1),
        "spec.template.spec.containers[0].portz: unknown field",
    ),
    (
        "bad type",
        lambda d: d["spec"]["template"]["spec"].update(containerConcurrency="x"),
        "spec.template.spec.containerConcurrency",
    ),
    (
        "bad annotation",
        lambda d: d["spec"]["template"]["metadata"]["annotations"].update(
            {"autoscaling.knative.dev/max-scale": "-3"}
        ),
        "autoscaling.knative.dev/max-scale",
    ),
    (
        "traffic sum",
        lambda d: d["spec"].update(traffic=[{"latestRevision": True, "percent": 90}]),
        "percentages must sum to 100, got 90",
    ),
    (
        "unknown revision",
        lambda d: d["spec"].update(traffic=[{"revisionName": "state-00042", "percent": 100}]),
        "revision 'state-00042' does not exist",
    ),
    (
        "neither image nor command",
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(command=[]),
        "a container needs an image or a command",
    ),
]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("state")).start()
    yield p
    p.stop()


def snapshot(platform: Platform) -> str:
    """What users stored: each object's identity, generation and spec (not live status)."""
    return json.dumps(
        [
            [
                (
                    o["metadata"]["name"],
                    o["metadata"]["uid"],
                    o["metadata"].get("generation"),
                    o["spec"],
                )
                for o in platform.get_json(kind, "-A")["items"]
            ]
            for kind in ("services", "revisions", "routes")
        ],
        sort_keys=True,
    )


@pytest.mark.parametrize(("case", "mutate", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_rejected_and_changes_nothing(platform, case, mutate, message):
    good = hello_service("state", env={"TARGET": "v1"})
    platform.apply(good)
    before = snapshot(platform)
    bad = copy.deepcopy(good)
    mutate(bad)
    result = platform.apply(bad, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    # A good document next to a bad one is not stored either.
    other = hello_service("state-other")
    result = platform.apply(other, bad, check=False)
    assert result.returncode != 0 and "document 2" in result.stderr
    assert snapshot(platform) == before


def test_invalid_yaml_and_unknown_kind(platform, tmp_path):
    before = snapshot(platform)
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: serving.knative.dev/v1\nkind: [Service\n")
    result = platform.cli("apply", "-f", str(broken), check=False)
    assert result.returncode != 0 and "invalid YAML" in result.stderr
    result = platform.apply(
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}}, check=False
    )
    assert result.returncode != 0 and "unsupported kind 'Deployment'" in result.stderr
    assert snapshot(platform) == before


def test_malformed_http_request_gets_400(platform):
    import socket

    with socket.create_connection(("127.0.0.1", platform.port), timeout=5) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: state.default.example.com\r\nContent-Length: x\r\n\r\n"
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 400")


def replica_seconds(platform: Platform, revision: str) -> float:
    items = json.loads(platform.cli("cost", "-o", "json").stdout)["items"]
    return sum(i["replicaSeconds"] for i in items if i["revision"] == revision)


def test_restart_keeps_state_and_replicas(tmp_path):
    config = {"autoscaler": {**FAST_AUTOSCALER, "min-scale": 0}}
    platform = Platform(tmp_path, config).start()
    try:
        platform.apply(
            hello_service("keep", annotations={"autoscaling.knative.dev/min-scale": "2"})
        )
        wait_until(lambda: platform.ready_replicas("keep") == 2, 30, "2 replicas")
        platform.apply(
            hello_service(
                "keep",
                env={"TARGET": "v2"},
                annotations={"autoscaling.knative.dev/min-scale": "2"},
                traffic=[{"revisionName": "keep-00001", "percent": 100}],
            )
        )
        before = snapshot(platform)
        # keep-00002's replicas may still be starting (no process yet): the ones running.
        old_pids = [r["pid"] for r in platform.replicas("keep") if r["pid"] is not None]
        cost_before = replica_seconds(platform, "keep-00001")
        assert cost_before > 0

        platform.stop()  # clean stop: replicas are stopped with it
        assert not any(process_alive(pid) for pid in old_pids)
        platform.start()
        assert snapshot(platform) == before
        # What the replicas cost before the restart is still accounted after it.
        assert replica_seconds(platform, "keep-00001") >= cost_before
        route = platform.get_json("routes", "keep")
        assert route["status"]["traffic"][0]["revisionName"] == "keep-00001"
        wait_until(
            lambda: platform.ready_replicas("keep", "keep-00001") == 2,
            30,
            "keep-00001 replicas back after restart",
        )
        assert platform.request(host("keep"))[1]["X-Tidal-Revision"] == "keep-00001"

        pids = [r["pid"] for r in platform.replicas("keep") if r["pid"] is not None]
        platform.stop(kill=True)  # kill -9: replicas die with the platform
        wait_until(lambda: not any(process_alive(pid) for pid in pids), 10, "orphans to die")
        platform.start()
        wait_until(
            lambda: platform.ready_replicas("keep", "keep-00001") == 2,
            30,
            "replicas back after kill -9",
        )
        assert platform.request(host("keep"))[0] == 200
    finally:
        platform.stop()


def test_up_f_keeps_changes_made_since_and_applies_a_changed_file(tmp_path):
    manifest = tmp_path / "upf.yaml"
    manifest.write_text(yaml.safe_dump(hello_service("upf")))
    platform = Platform(tmp_path, {"autoscaler": FAST_AUTOSCALER}, args=("-f", str(manifest)))
    kept = "-f: Service default/upf unchanged since the last start"

    def tags() -> list[str]:
        traffic = platform.get_json("routes", "upf")["status"]["traffic"]
        return [t["tag"] for t in traffic if "tag" in t]

    try:
        platform.start()
        platform.wait_ready("upf")
        platform.cli("traffic", "upf", "--to", "upf-00001=100", "--tag", "upf-00001=stable")
        platform.stop()
        platform.start()  # the same file: the tag set since stays
        wait_until(lambda: kept in platform.log_path.read_text(), 30, "the kept line")
        assert tags() == ["stable"]
        manifest.write_text(yaml.safe_dump(hello_service("upf", env={"TARGET": "v2"})))
        platform.stop()
        platform.start()  # a changed file is applied, as `tidal apply -f` would
        platform.wait_ready("upf")
        assert tags() == []
        assert platform.get_json("services", "upf")["status"]["latestCreatedRevisionName"] == (
            "upf-00002"
        )
        assert platform.log_path.read_text().count(kept) == 1
    finally:
        platform.stop()


def test_gradual_rollout_moves_traffic_in_steps(tmp_path):
    platform = Platform(
        tmp_path, {"autoscaler": FAST_AUTOSCALER, "network": {"rollout-duration": "4s"}}
    ).start()
    try:
        platform.apply(hello_service("roll", env={"TARGET": "v1"}))
        platform.wait_ready("roll")
        platform.apply(hello_service("roll", env={"TARGET": "v2"}))

        def rolling():
            rollout = platform.get_json("routes", "roll")["status"].get("rollout")
            return (
                rollout
                if rollout and 0 < dict(rollout["split"]).get("roll-00002", 0) < 100
                else None
            )

        rollout = wait_until(rolling, 20, "a rollout in progress", period=0.05)
        assert dict(rollout["split"])["roll-00001"] > 0
        wait_until(
            lambda: "rollout" not in platform.get_json("routes", "roll")["status"],
            20,
            "the rollout to finish",
        )
        traffic = platform.get_json("routes", "roll")["status"]["traffic"]
        assert traffic == [{"revisionName": "roll-00002", "percent": 100, "latestRevision": True}]
        assert platform.request(host("roll"))[1]["X-Tidal-Revision"] == "roll-00002"
    finally:
        platform.stop()


def test_old_revisions_are_garbage_collected(tmp_path):
    gc = {
        "retain-since-create-time": "disabled",
        "retain-since-last-active-time": "disabled",
        "min-non-active-revisions": 1,
        "max-non-active-revisions": 1,
    }
    platform = Platform(tmp_path, {"autoscaler": FAST_AUTOSCALER, "gc": gc}).start()
    try:
        for version in ("v1", "v2", "v3"):
            platform.apply(hello_service("old", env={"TARGET": version}))
            platform.wait_ready("old")

        def names():
            return sorted(
                r["metadata"]["name"]
                for r in platform.get_json("revisions")["items"]
                if r["metadata"]["labels"]["serving.knative.dev/service"] == "old"
            )

        # v3 is the latest ready (active); of v1 and v2 one non-active revision is kept.
        wait_until(lambda: names() == ["old-00002", "old-00003"], 20, "old-00001 to be collected")
        assert not [r for r in platform.replicas("old") if r["revision"] == "old-00001"]
    finally:
        platform.stop()


def test_autoscaler_class_chooses_a_baseline_live(platform):
    hpa = {"autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"}
    platform.apply(hello_service("hpa", hpa))
    platform.wait_ready("hpa")
    time.sleep(12)  # past the 6 s window and 1 s grace that take a KPA service to zero
    assert platform.ready_replicas("hpa") == 1  # HPA-like: no scale to zero
    result = platform.apply(
        hello_service("odd", {"autoscaling.knative.dev/class": "odd.example.com"}), check=False
    )
    assert result.returncode != 0
    assert "annotations[autoscaling.knative.dev/class]" in result.stderr
    assert "odd.example.com" in result.stderr
