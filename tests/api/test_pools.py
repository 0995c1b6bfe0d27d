"""The `pools:` config section and GPU discovery."""

from __future__ import annotations

import copy
import subprocess
from typing import Any

import pytest

from tidal.api.errors import InvalidSpec
from tidal.api.pools import Pool, Price, discover_gpus, parse_pools

ISSUE_EXAMPLE: list[dict[str, Any]] = [
    {
        "name": "reserved",
        "kind": "reserved",
        "labels": {"tier": "ecs"},
        "capacity": {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": ["0", "1"], "replicas": 4},
        "startupDelay": "0s",
        "price": {"replicaSecond": 0.0002, "gpuSecond": 0.0008},
    },
    {
        "name": "elastic",
        "kind": "elastic",
        "labels": {"tier": "eci"},
        "startupDelay": "3s",
        "price": {"replicaSecond": 0.0005, "gpuSecond": 0.002},
    },
]


def test_the_issue_example_parses_and_a_missing_capacity_is_unbounded():
    reserved, elastic = parse_pools(copy.deepcopy(ISSUE_EXAMPLE))
    assert reserved == Pool(
        name="reserved",
        kind="reserved",
        labels={"tier": "ecs"},
        cpu=8.0,
        memory=16 * 2.0**30,
        gpus=("0", "1"),
        max_replicas=4,
        startup_delay_s=0.0,
        price=Price(0.0002, 0.0008),
    )
    assert elastic == Pool(
        "elastic", "elastic", {"tier": "eci"}, startup_delay_s=3.0, price=Price(0.0005, 0.002)
    )


def test_without_a_pools_section_there_is_one_unbounded_local_pool_with_every_found_gpu():
    assert parse_pools(None) == (Pool("local"),)
    assert parse_pools(None, gpus=["0", "1"]) == (Pool("local", gpus=("0", "1")),)


def test_configured_devices_must_exist_when_devices_were_found():
    assert parse_pools(copy.deepcopy(ISSUE_EXAMPLE), gpus=["0", "1", "2"])[0].gpus == ("0", "1")
    with pytest.raises(InvalidSpec) as err:
        parse_pools(copy.deepcopy(ISSUE_EXAMPLE), gpus=["0"])
    assert err.value.field == "pools[0].capacity.nvidia.com/gpu"
    assert "device '1' not found (found: 0)" in err.value.message


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ([{"name": "a"}, {"name": "b", "capacity": {"cpu": "x"}}], "pools[1].capacity.cpu",
         "invalid quantity"),
        ([{"name": "a", "capacity": {"memory": "-1Gi"}}], "pools[0].capacity.memory", "negative"),
        ([{"name": "a", "capacity": {"replicas": -1}}], "pools[0].capacity.replicas", "equal to 0"),
        ([{"name": "a", "kind": "spot"}], "pools[0].kind", "'reserved' or 'elastic'"),
        ([{"name": "a", "startupDelay": "soon"}], "pools[0].startupDelay", "invalid duration"),
        ([{"name": "a", "startupDelay": -1}], "pools[0].startupDelay", "negative"),
        ([{"name": "a", "price": {"gpuSecond": -1}}], "pools[0].price.gpuSecond", "equal to 0"),
        ([{"name": "A b"}], "pools[0].name", "DNS label"),
        ([{"kind": "reserved"}], "pools[0].name", "Field required"),
        ([{"name": "a", "size": 3}], "pools[0].size", "unknown field"),
        ([{"name": "a"}, {"name": "a"}], "pools[1].name", "declared twice"),
        (
            [{"name": "a", "capacity": {"nvidia.com/gpu": ["0"]}},
             {"name": "b", "capacity": {"nvidia.com/gpu": [0]}}],
            "pools[1].capacity.nvidia.com/gpu", "device '0' is already in 'a'",
        ),
        ([{"name": "a", "capacity": {"nvidia.com/gpu": 4}}], "pools[0].capacity.nvidia.com/gpu",
         "a list of GPU device ids"),
        ([], "pools", "at least one pool"),
        ({"name": "a"}, "pools", "valid list"),
    ],
)  # fmt: skip
def test_bad_pools_name_the_field(data, field, message):
    with pytest.raises(InvalidSpec) as err:
        parse_pools(data)
    assert err.value.field == field
    assert message in err.value.message
    assert not err.value.message.startswith("Value error")  # pydantic's wrapping, dropped


def completed(stdout: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess([], code, stdout=stdout, stderr="")


def test_discover_gpus_reads_nvidia_smi_indexes():
    calls = []

    def run(command: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(command)
        return completed("0\n1\n\n")

    assert discover_gpus(run, which=lambda name: f"/usr/bin/{name}") == ["0", "1"]
    assert calls == [["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"]]


def test_discover_gpus_is_none_without_nvidia_smi_or_when_it_fails():
    def never(*args: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
        raise AssertionError("not called")

    def broken(*args: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired("nvidia-smi", 10)

    found = lambda name: "/usr/bin/nvidia-smi"  # noqa: E731
    assert discover_gpus(never, which=lambda name: None) is None
    assert discover_gpus(lambda *a, **k: completed("", 9), which=found) is None
    assert discover_gpus(broken, which=found) is None
