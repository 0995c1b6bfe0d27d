"""A container replica's CPU and memory come from the engine's stats (podman or docker), shown
in `get replicas` like a process's (docs/autoscaling.md#metrics-and-classes)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.harness import Platform, wait_until
from tests.integration.test_containers import image, image_service  # noqa: F401 (fixture)
from tests.runtime.test_container import ENGINE

pytestmark = pytest.mark.skipif(
    ENGINE is None, reason="no container engine: podman is not installed, docker has no daemon"
)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Any:
    p = Platform(tmp_path_factory.mktemp("container-metrics")).start()
    yield p
    p.stop()


def measured(platform: Platform) -> list[dict[str, Any]]:
    code, body = platform.api("GET", "/apis/tidal.dev/v1/namespaces/default/replicas")
    assert code == 200
    items = [r for r in json.loads(body)["items"] if r["service"] == "boxed"]
    return [r for r in items if r["cpuCores"] is not None and r["memoryBytes"]]


def test_container_replica_use_from_the_engine_stats(platform: Platform, image: str) -> None:  # noqa: F811
    annotations = {"autoscaling.knative.dev/min-scale": "1"}
    doc = image_service("boxed", image, annotations=annotations)
    doc["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}
    platform.apply(doc)
    platform.wait_ready("boxed", timeout=60)
    [replica] = wait_until(lambda: measured(platform), 30, "engine stats for the replica")
    assert 0 <= replica["cpuCores"] < 2 and replica["cpuPercentOfRequest"] is not None
    assert 100_000 < replica["memoryBytes"] < 2**30
