"""Cost accounting: replica- and GPU-seconds per (service, revision, pool), priced by pool."""

from __future__ import annotations

import pytest

from tidal.api.pools import Pool, Price
from tidal.scheduler.cost import CostKey, CostLedger, Usage

POOLS = (
    Pool("reserved", price=Price(replica_second=0.0002, gpu_second=0.0008)),
    Pool("elastic", "elastic", price=Price(replica_second=0.0005, gpu_second=0.002)),
)
R1 = CostKey("svc", "svc-00001", "reserved")
E1 = CostKey("svc", "svc-00001", "elastic")
E2 = CostKey("svc", "svc-00002", "elastic")


@pytest.fixture
def ledger() -> CostLedger:
    ledger = CostLedger(POOLS)
    ledger.start("a", "svc", "svc-00001", "reserved", 1, at=0)
    ledger.start("b", "svc", "svc-00001", "elastic", 0, at=10)
    ledger.start("c", "svc", "svc-00002", "elastic", 2, at=20)
    ledger.stop("a", at=100)
    ledger.stop("b", at=30)
    return ledger


def test_usage_per_service_revision_and_pool_with_running_replicas_up_to_now(ledger):
    usage = ledger.usage(0, 1000, now=50)
    assert usage == {
        R1: Usage(100, 100, pytest.approx(100 * 0.0002 + 100 * 0.0008)),
        E1: Usage(20, 0, pytest.approx(20 * 0.0005)),
        E2: Usage(30, 60, pytest.approx(30 * 0.0005 + 60 * 0.002)),
    }


@pytest.mark.parametrize(
    ("start", "end", "now", "expected"),
    [
        (0, 10, 50, {R1: 10}),  # [start, end): b starts at 10, so it is not in
        (25, 40, 50, {R1: 15, E1: 5, E2: 15}),
        (90, 200, 120, {R1: 10, E2: 30}),  # c runs on, up to now
        (200, 300, 120, {}),  # nothing runs after `now`
        (100, 100, 120, {}),
    ],
)
def test_usage_clips_every_replica_to_the_range(ledger, start, end, now, expected):
    usage = ledger.usage(start, end, now)
    assert {key: u.replica_seconds for key, u in usage.items()} == expected


def test_gpu_seconds_count_every_device_held():
    ledger = CostLedger(POOLS)
    ledger.start("g", "llm", "llm-00001", "elastic", 4, at=0)
    (usage,) = ledger.usage(0, 10, now=10).values()
    assert usage.gpu_seconds == 40 and usage.cost == pytest.approx(10 * 0.0005 + 40 * 0.002)


def test_usages_add_up():
    assert Usage(1, 2, 3) + Usage(10, 20, 30) == Usage(11, 22, 33)


def test_a_restarted_replica_id_is_accounted_twice():
    ledger = CostLedger(POOLS)
    ledger.start("a", "svc", "svc-00001", "reserved", 0, at=0)
    ledger.stop("a", at=5)
    ledger.start("a", "svc", "svc-00001", "reserved", 0, at=10)
    assert ledger.usage(0, 100, now=12)[R1].replica_seconds == 7


def test_bad_events_are_refused():
    ledger = CostLedger(POOLS)
    with pytest.raises(ValueError, match="unknown pool 'gone'"):
        ledger.start("a", "svc", "svc-00001", "gone", 0, at=0)
    ledger.start("a", "svc", "svc-00001", "reserved", 0, at=5)
    with pytest.raises(ValueError, match="already running"):
        ledger.start("a", "svc", "svc-00001", "reserved", 0, at=6)
    with pytest.raises(ValueError, match="before it started"):
        ledger.stop("a", at=4)
    assert ledger.stop("unknown", at=10) is False
    assert ledger.stop("a", at=10) is True
    assert ledger.usage(0, 100, now=100)[R1].replica_seconds == 5
