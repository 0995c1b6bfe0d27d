"""Leader election: the pure decision, and two controllers racing for one Lease."""

from __future__ import annotations

import asyncio

from kubernetes.client import ApiClient

from tidal.controller.leader import (
    LeaderElector,
    LeaseLock,
    LeaseRecord,
    Observed,
    decide,
    from_lease,
    to_lease,
)


def test_no_lease_is_acquired() -> None:
    assert decide(None, "a", 100.0, 15) == LeaseRecord("a", 15, 100.0, 100.0)


def test_the_holder_renews_and_others_wait_until_it_expires() -> None:
    held = Observed(LeaseRecord("a", 15, 100.0, 100.0), at=100.0)
    assert decide(held, "a", 105.0, 15) == LeaseRecord("a", 15, 100.0, 105.0)
    assert decide(held, "b", 114.9, 15) is None
    assert decide(held, "b", 115.0, 15) == LeaseRecord("b", 15, 115.0, 115.0, transitions=1)


def test_expiry_counts_from_when_the_record_was_observed_not_its_renew_time() -> None:
    # The holder's clock runs an hour behind: its renewTime looks stale, but it renewed.
    skewed = Observed(LeaseRecord("a", 15, 0.0, 100.0 - 3600), at=100.0)
    assert decide(skewed, "b", 110.0, 15) is None


def test_a_released_lease_is_taken_at_once() -> None:
    released = Observed(LeaseRecord("", 15, 0.0, 100.0), at=100.0)
    assert decide(released, "b", 101.0, 15) is not None


def test_lease_spec_round_trip() -> None:
    record = LeaseRecord("a", 15, 1_700_000_000.25, 1_700_000_005.5, 2)
    spec = to_lease(record)
    assert spec["renewTime"] == "2023-11-14T22:13:25.500000Z"
    assert from_lease(spec) == record


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_two_controllers_one_leads_the_other_takes_over_when_it_stops(
    api: ApiClient,
) -> None:
    clock = Clock()
    a = LeaderElector(LeaseLock(api, "tidal-system", "tidal-controller"), "a", clock=clock)
    b = LeaderElector(LeaseLock(api, "tidal-system", "tidal-controller"), "b", clock=clock)
    results = await asyncio.gather(a.try_lead(), b.try_lead())
    assert sorted(results) == [False, True]  # exactly one leads, whoever wrote first
    leader, follower = (a, b) if a.is_leader else (b, a)

    clock.now += 10
    assert await leader.try_lead() is True  # renews
    assert await follower.try_lead() is False
    clock.now += 14  # 14 s since the follower saw the renewal: still live
    assert await follower.try_lead() is False
    clock.now += 2  # the leader stopped renewing 16 s ago
    assert await follower.try_lead() is True
    assert await leader.try_lead() is False  # the old leader sees it lost
    record = LeaseLock(api, "tidal-system", "tidal-controller").read()
    assert record is not None
    assert record[0].holder == follower.identity
    assert record[0].transitions == 1
