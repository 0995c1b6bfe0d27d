"""Placement by ResourcePolicy (docs/pools.md#resourcepolicy), as tables of cases."""

from __future__ import annotations

from typing import Any

import pytest

from tidal.api.pools import Pool
from tidal.api.resource_policy import ResourcePolicy, validate_resource_policy
from tidal.scheduler.devices import DeviceConflict
from tidal.scheduler.placement import (
    Decision,
    Demand,
    Placed,
    PoolUsage,
    Request,
    place,
    place_all,
    room_for,
    tally,
)

GI = 2.0**30
RESERVED = Pool("reserved", "reserved", {"tier": "ecs"}, cpu=8, memory=16 * GI, max_replicas=4)
ELASTIC = Pool("elastic", "elastic", {"tier": "eci"})
POOLS = (RESERVED, ELASTIC)
ECS_ECI = [{"resource": "ecs", "nodeSelector": {"tier": "ecs"}, "max": 2}, {"resource": "eci"}]
NOW = 1000.0
NO_DEMAND = Demand()


def policy(units: list[dict[str, Any]] | None = None, **spec: Any) -> ResourcePolicy:
    body = {"selector": {"serving.knative.dev/service": "svc"}, "units": units or ECS_ECI}
    return validate_resource_policy(
        {
            "apiVersion": "scheduling.alibabacloud.com/v1alpha1",
            "kind": "ResourcePolicy",
            "metadata": {"name": "svc"},
            "spec": body | spec,
        }
    )


def replica(rid: str, pool: str, at: float = 0.0, **kw: Any) -> Placed:
    return Placed(rid, pool, at, **kw)


def decide(
    desired: int,
    replicas: tuple[Placed, ...] = (),
    pol: ResourcePolicy | None = None,
    pools: tuple[Pool, ...] = POOLS,
    demand: Demand = NO_DEMAND,
    **kw: Any,
) -> Decision:
    request = Request("svc-00001", desired, demand, replicas, policy=pol, **kw)
    usage = tally(pools, ((r, demand) for r in (*replicas, *kw.get("others", ()))))
    return place(request, pools, usage, NOW)


def started(decision: Decision) -> list[str]:
    return [start.pool for start in decision.start]


# -- scale-out ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "existing", "expected"),
    [
        (1, (), ["reserved"]),
        (2, (), ["reserved", "reserved"]),
        (5, (), ["reserved", "reserved", "elastic", "elastic", "elastic"]),
        (4, ("reserved",), ["reserved", "elastic", "elastic"]),
        (4, ("reserved", "reserved"), ["elastic", "elastic"]),
        (3, ("elastic",), ["reserved", "reserved"]),  # a freed reserved slot is filled first
        (2, ("reserved", "elastic"), []),
    ],
)
def test_scale_out_fills_reserved_up_to_max_then_elastic(desired, existing, expected):
    replicas = tuple(replica(f"r{i}", pool) for i, pool in enumerate(existing))
    decision = decide(desired, replicas, policy())
    assert started(decision) == expected
    assert decision.stop == () and decision.pending == ()
    assert [s.unit for s in decision.start] == [0 if p == "reserved" else 1 for p in expected]


@pytest.mark.parametrize(
    ("desired", "expected"),
    [(1, ["small"]), (3, ["small", "small", "big"]), (4, ["small", "small", "big", "big"])],
)
def test_without_policy_the_first_pool_with_room_takes_the_replica(desired, expected):
    pools = (Pool("small", cpu=2), Pool("big", "elastic"))
    assert started(decide(desired, pol=None, pools=pools, demand=Demand(cpu=1))) == expected


def test_without_policy_a_full_platform_leaves_replicas_pending_with_a_reason():
    pools = (Pool("local", cpu=2, memory=4 * GI),)
    decision = decide(3, pools=pools, demand=Demand(cpu=1, memory=GI))
    assert started(decision) == ["local", "local"]
    assert decision.pending[0].reason == (
        "no pool with room for cpu 1, memory 1Gi among local: cpu 0 of 2 free"
    )
    assert decision.pending[0].since == NOW


# Reserved has room for one replica only (capacity.replicas 1) while its unit max is 3: the unit
# lacks resources before it reaches max, which is where the spill policies differ
# (docs/pools.md#spill-policies).
FULL = (Pool("reserved", "reserved", {"tier": "ecs"}, max_replicas=1), ELASTIC)
MAX3 = [{"resource": "ecs", "nodeSelector": {"tier": "ecs"}, "max": 3}, {"resource": "eci"}]
NO_MAX = [{"resource": "ecs", "nodeSelector": {"tier": "ecs"}}, {"resource": "eci"}]


TIMEOUT_1M = {"policy": "TimeoutOrExceedMax", "timeout": "1m"}
SPILLED = ["elastic", "elastic"]


@pytest.mark.parametrize(
    ("units", "when", "pending_since", "expected"),
    [
        (MAX3, {}, (), SPILLED),
        (MAX3, {"policy": "LackResourceOrExceedMax"}, (), SPILLED),
        (MAX3, {"policy": "ExceedMax"}, (), []),
        (NO_MAX, {"policy": "ExceedMax"}, (), SPILLED),  # a unit without max never holds
        (MAX3, TIMEOUT_1M, (), []),
        (MAX3, TIMEOUT_1M, (NOW - 60, NOW - 60), SPILLED),
        (MAX3, TIMEOUT_1M, (NOW - 30, NOW - 90), ["elastic"]),
        (MAX3, {"policy": "TimeoutOrExceedMax"}, (NOW - 600,), []),  # default 15m
        (MAX3, {"policy": "TimeoutOrExceedMax"}, (NOW - 900, NOW - 900), SPILLED),
        (NO_MAX, {"policy": "TimeoutOrExceedMax"}, (), SPILLED),
    ],
)
def test_spill_policy_decides_when_a_unit_without_room_passes_the_replica_on(
    units, when, pending_since, expected
):
    existing = (replica("r0", "reserved"),)
    pol = policy(units, whenTryNextUnits=when)
    decision = decide(3, existing, pol, pools=FULL, pending_since=pending_since)
    assert started(decision) == expected
    assert len(decision.pending) == 2 - len(expected)


def test_timeout_keeps_the_oldest_pending_times_and_reports_the_wait():
    pol = policy(MAX3, whenTryNextUnits={"policy": "TimeoutOrExceedMax", "timeout": "1m"})
    existing = (replica("r0", "reserved"),)
    decision = decide(3, existing, pol, pools=FULL, pending_since=(NOW - 90, NOW - 30))
    assert started(decision) == ["elastic"]  # waited 90 s >= 60 s
    (pending,) = decision.pending
    assert pending.since == NOW - 30
    assert pending.reason == (
        "waiting for room in units[0] (reserved: 1 of 1 replicas): "
        "TimeoutOrExceedMax passes on after 60s, pending 30s"
    )


def test_exceed_max_reason_names_the_unit_and_the_rule():
    decision = decide(2, pol=policy(MAX3, whenTryNextUnits={"policy": "ExceedMax"}), pools=FULL)
    assert decision.pending[0].reason == (
        "waiting for room in units[0] (reserved: 1 of 1 replicas): "
        "ExceedMax passes on only at max 3"
    )


@pytest.mark.parametrize(("terminating", "expected"), [(False, ["elastic"]), (True, [])])
def test_lack_resource_and_no_terminating_holds_while_the_unit_drains(terminating, expected):
    pol = policy(MAX3, whenTryNextUnits={"policy": "LackResourceAndNoTerminating"})
    old = replica("old", "reserved", terminating=terminating)
    existing = (old,) if terminating else (replica("r0", "reserved"),)
    desired = 1 if terminating else 2
    decision = decide(desired, existing, pol, pools=FULL)
    assert started(decision) == expected
    assert len(decision.pending) == (1 if terminating else 0)


@pytest.mark.parametrize(
    ("strategy", "pools", "expected", "pending"),
    [
        ("prefer", POOLS, ["reserved", "elastic", "elastic"], 0),
        ("required", POOLS, ["reserved"], 2),
        ("prefer", (RESERVED,), ["reserved"], 2),  # prefer never goes past a unit's max
    ],
)
def test_prefer_uses_pools_outside_the_units_after_them_and_required_does_not(
    strategy, pools, expected, pending
):
    units = [{"resource": "ecs", "nodeSelector": {"tier": "ecs"}, "max": 1}]
    decision = decide(3, pol=policy(units, strategy=strategy), pools=pools)
    assert started(decision) == expected
    assert len(decision.pending) == pending
    assert [s.unit for s in decision.start] == [0] + [None] * (len(expected) - 1)


def test_required_reason_lists_every_unit():
    units = [{"resource": "ecs", "nodeSelector": {"tier": "ecs"}, "max": 1}, {"resource": "acs"}]
    decision = decide(2, pol=policy(units, strategy="required"), pools=(RESERVED,))
    assert decision.pending[0].reason == (
        "no pool with room for a replica among units[0] (max 1 reached), units[1] (no pool matches)"
    )


def test_unit_resource_selects_pools_by_kind_and_node_selector_by_labels():
    pools = (
        Pool("spot", "elastic", {"tier": "ecs"}),
        Pool("ecs-b", "reserved", {"tier": "ecs", "zone": "b"}),
        Pool("ecs-a", "reserved", {"tier": "ecs", "zone": "a"}),
    )
    units = [{"resource": "ecs", "nodeSelector": {"zone": "a"}, "max": 1}, {"resource": "ecs"}]
    decision = decide(3, pol=policy(units, strategy="required"), pools=pools)
    assert started(decision) == ["ecs-a", "ecs-b", "ecs-b"]


@pytest.mark.parametrize(("ignore", "expected"), [(True, ["reserved"]), (False, ["elastic"])])
def test_ignore_terminating_pod_decides_whether_draining_replicas_count(ignore, expected):
    existing = (replica("r0", "reserved"), replica("gone", "reserved", terminating=True))
    decision = decide(2, existing, policy(ignoreTerminatingPod=ignore))
    assert started(decision) == expected


REV = "serving.knative.dev/revision"


@pytest.mark.parametrize(
    ("keys", "expected"), [([], ["elastic", "elastic"]), ([REV], ["reserved"] * 2)]
)
def test_match_label_keys_applies_max_per_revision_during_a_rollout(keys, expected):
    old = tuple(replica(f"old{i}", "reserved", labels={REV: "svc-00001"}) for i in range(2))
    request = Request(
        "svc-00002", 2, labels={REV: "svc-00002"}, policy=policy(matchLabelKeys=keys), others=old
    )
    decision = place(request, POOLS, tally(POOLS, ((r, Demand()) for r in old)), NOW)
    assert started(decision) == expected


def test_match_label_keys_rejects_a_replica_without_the_label():
    decision = decide(1, pol=policy(matchLabelKeys=["pod-template-hash"]))
    assert decision.pending[0].reason == (
        "replica labels lack 'pod-template-hash', a matchLabelKeys key of policy 'svc'"
    )


def test_pod_labels_are_stamped_and_only_replicas_carrying_them_count_toward_max():
    units = [
        {"resource": "ecs", "nodeSelector": {"tier": "ecs"}, "max": 1, "podLabels": {"u": "0"}},
        {"resource": "eci"},
    ]
    decision = decide(1, pol=policy(units))
    assert decision.start[0].labels == {"u": "0"}
    unlabelled = (replica("before", "reserved"),)  # predates the policy: does not count
    assert started(decide(2, unlabelled, policy(units))) == ["reserved"]
    labelled = (replica("r0", "reserved", labels={"u": "0"}),)
    assert started(decide(2, labelled, policy(units))) == ["elastic"]


# -- scale-in -------------------------------------------------------------------------------------

SPREAD_POOLS = (
    Pool("a", "reserved", {"unit": "a"}),
    Pool("b", "reserved", {"unit": "b"}),
    Pool("c", "elastic", {"unit": "c"}),
)
SPREAD = [
    {"resource": "ecs", "nodeSelector": {"unit": "a"}, "max": 2},
    {"resource": "ecs", "nodeSelector": {"unit": "b"}, "max": 2},
    {"resource": "eci"},
]


@pytest.mark.parametrize(
    ("replicas", "pol", "pools", "desired", "expected"),
    [
        # 2 reserved + 3 elastic, desired 2: the elastic ones go, newest first.
        (
            [("r1", "reserved", 1), ("r2", "reserved", 2), ("e1", "elastic", 3),
             ("e2", "elastic", 4), ("e3", "elastic", 5)],
            policy(), POOLS, 2, ["e3", "e2", "e1"],
        ),
        # Then the reserved ones, newest first.
        (
            [("r1", "reserved", 1), ("r2", "reserved", 2), ("e1", "elastic", 3)],
            policy(), POOLS, 0, ["e1", "r2", "r1"],
        ),
        # Above the unit max goes first: max 2 with 3 reserved (the policy was tightened).
        (
            [("r1", "reserved", 1), ("r2", "reserved", 2), ("r3", "reserved", 3),
             ("e1", "elastic", 9)],
            policy(), POOLS, 3, ["r3"],
        ),
        # WorkloadSpread's example (max a/b/c = 2/2/nil, 3 pods each): b's and a's excess, then
        # c, then b, then a.
        (
            [(f"{u}{i}", u, i) for u in "abc" for i in range(3)],
            policy(SPREAD), SPREAD_POOLS, 0,
            ["b2", "a2", "c2", "c1", "c0", "b1", "b0", "a1", "a0"],
        ),
        # Without a policy: the last pool first.
        (
            [("r1", "reserved", 5), ("e1", "elastic", 1)], None, POOLS, 1, ["e1"],
        ),
        # Outside every unit (placed under prefer, or before the policy) goes before the units.
        (
            [("r1", "reserved", 5), ("x1", "other", 1), ("e1", "elastic", 2)],
            policy(), (*POOLS, Pool("other")), 2, ["x1"],
        ),
    ],
)  # fmt: skip
def test_scale_in_order(replicas, pol, pools, desired, expected):
    existing = tuple(replica(rid, pool, at) for rid, pool, at in replicas)
    decision = decide(desired, existing, pol, pools=pools)
    assert list(decision.stop) == expected
    assert decision.start == () and decision.pending == ()


def test_scale_in_inside_a_unit_takes_not_ready_then_newest_then_highest_id():
    existing = (
        replica("e1", "elastic", 1, ready=False),
        replica("e2", "elastic", 5),
        replica("e3", "elastic", 5),
        replica("e4", "elastic", 3),
    )
    assert list(decide(0, existing, policy()).stop) == ["e1", "e3", "e2", "e4"]


def test_terminating_replicas_are_neither_counted_as_running_nor_stopped_again():
    existing = (replica("r1", "reserved"), replica("r2", "reserved", terminating=True))
    assert decide(1, existing, policy()) == Decision("svc-00001")
    assert decide(0, existing, policy()).stop == ("r1",)


# -- GPUs -----------------------------------------------------------------------------------------

GPU_POOLS = (Pool("reserved", "reserved", {"tier": "ecs"}, gpus=("0", "1", "2")), ELASTIC)
ONE_GPU = Demand(cpu=1, gpus=1)


def test_each_replica_gets_whole_devices_of_its_pool_never_shared():
    decision = decide(3, pol=None, pools=GPU_POOLS, demand=ONE_GPU)
    assert [(s.pool, s.devices) for s in decision.start] == [
        ("reserved", ("0",)),
        ("reserved", ("1",)),
        ("reserved", ("2",)),
    ]
    holding = (replica("g0", "reserved", devices=("0",)),)
    decision = decide(3, holding, None, pools=GPU_POOLS, demand=Demand(gpus=2))
    assert [(s.pool, s.devices) for s in decision.start] == [("reserved", ("1", "2"))]
    assert len(decision.pending) == 1


def test_devices_return_to_the_pool_when_the_replica_stops():
    holding = replica("g0", "reserved", devices=("0", "1", "2"))
    request = Request("svc-00002", 1, ONE_GPU)
    while_running = tally(GPU_POOLS, [(holding, Demand(gpus=3))])
    assert place(request, GPU_POOLS, while_running, NOW).start == ()
    after_stop = tally(GPU_POOLS, [])
    assert place(request, GPU_POOLS, after_stop, NOW).start[0].devices == ("0",)


def test_a_replica_without_devices_anywhere_the_policy_allows_is_pending_with_a_reason():
    pools = (Pool("reserved", "reserved", {"tier": "ecs"}, gpus=("0", "1")), ELASTIC)
    decision = decide(3, pol=policy(), pools=pools, demand=Demand(gpus=1))
    assert [s.devices for s in decision.start] == [("0",), ("1",)]
    assert decision.pending[0].reason == (
        "no pool with room for 1 nvidia.com/gpu among units[0] (max 2 reached), "
        "units[1] (elastic: 0 of 0 GPUs free)"
    )


def test_tally_refuses_a_device_held_twice():
    twice = [(replica("a", "reserved", devices=("0",)), ONE_GPU)] * 2
    with pytest.raises(DeviceConflict, match="device '0' of pool 'reserved'"):
        tally(GPU_POOLS, twice)


def test_tally_sums_every_replica_and_ignores_unknown_pools():
    running = [
        (replica("a", "reserved", devices=("1",)), Demand(cpu=0.5, memory=GI, gpus=1)),
        (replica("b", "reserved"), Demand(cpu=0.25)),
        (replica("c", "gone"), Demand(cpu=4)),
    ]
    usage = tally(GPU_POOLS, running)
    assert usage["reserved"] == PoolUsage(0.75, GI, 2, frozenset({"1"}))
    assert usage["elastic"] == PoolUsage()


# -- batch ----------------------------------------------------------------------------------------


def test_place_all_takes_each_start_out_of_the_shared_capacity():
    pools = (Pool("reserved", "reserved", {"tier": "ecs"}, cpu=3), ELASTIC)
    requests = [Request(f"svc-0000{i}", 2, Demand(cpu=1), policy=policy()) for i in (1, 2)]
    first, second = place_all(requests, pools, {}, NOW)
    assert started(first) == ["reserved", "reserved"]
    assert started(second) == ["reserved", "elastic"]
    assert place_all(requests, pools, {}, NOW) == [first, second]  # deterministic


def test_fewer_desired_drops_the_newest_pending_first():
    pol = policy(MAX3, whenTryNextUnits={"policy": "ExceedMax"})
    existing = (replica("r0", "reserved"),)
    decision = decide(2, existing, pol, pools=FULL, pending_since=(NOW - 5, NOW - 50, NOW - 1))
    assert [p.since for p in decision.pending] == [NOW - 50]


def test_room_for_says_whether_place_starts_a_replica_without_a_policy():
    """`room_for` stands in for `place` (the simulator asks it first): without a policy, a
    revision short of replicas gets at least one started exactly when it says so, and
    otherwise every missing replica pending."""
    gpu_pools = (
        Pool("a", cpu=4, memory=8 * GI, gpus=("0", "1"), max_replicas=3),
        Pool("b", "elastic", cpu=2, gpus=("e0",)),
    )
    demands = (Demand(cpu=1), Demand(cpu=1, memory=3 * GI, gpus=1), Demand(cpu=2, gpus=2))
    usages = [
        {
            "a": PoolUsage(cpu_a, memory_a * GI, replicas_a, frozenset(devices_a)),
            "b": PoolUsage(cpu_b, 0.0, 1, frozenset(devices_b)),
        }
        for cpu_a in (0.0, 2.5, 4.0)
        for memory_a in (0.0, 6.0)
        for replicas_a in (0, 3)
        for devices_a in ((), ("1",), ("0", "1"))
        for cpu_b in (0.0, 1.0, 2.0)
        for devices_b in ((), ("e0",))
    ]
    mine = (replica("r1", "a"), replica("r2", "b", terminating=True))
    seen = set()
    for demand in demands:
        for usage in usages:
            room = room_for(demand, gpu_pools, usage)
            seen.add(room)
            for desired in (2, 3):
                decision = place(Request("svc", desired, demand, mine), gpu_pools, usage, NOW)
                assert bool(decision.start) == room
                if not room:
                    assert not decision.stop and len(decision.pending) == desired - 1
    assert seen == {True, False}


# -- replicas ahead of demand (docs/pools.md#replicas-ahead-of-demand) ---------------------------

TWO_GPUS = (Pool("gpu", gpus=("0", "1")),)
ONE_GPU = Demand(gpus=1)


def gpu_replica(rid: str, device: str, at: float = 0.0) -> Placed:
    return Placed(rid, "gpu", at, (device,))


def gpu_usage(*replicas: Placed) -> dict[str, PoolUsage]:
    return tally(TWO_GPUS, ((r, ONE_GPU) for r in replicas))


def test_replicas_ahead_of_demand_are_placed_after_every_revisions_needed_ones():
    """`warm` asks first, for two replicas of which one is ahead of demand; `busy`'s request
    needs one: the needed ones get the two GPUs, the replica ahead of demand waits."""
    warm = Request("warm", 2, ONE_GPU, ahead=1)
    busy = Request("busy", 1, ONE_GPU)
    first, second = place_all([warm, busy], TWO_GPUS, {}, NOW)
    assert len(first.start) == 1 and len(second.start) == 1
    assert [p.ahead for p in first.pending] == [True]
    assert first.pending[0].reason.startswith("ahead of demand: no pool with room")
    # With room for all, the replica ahead of demand is placed too.
    roomy = (Pool("gpu", gpus=("0", "1", "2")),)
    assert [len(d.start) for d in place_all([warm, busy], roomy, {}, NOW)] == [2, 1]


def test_a_revision_whose_requests_wait_takes_room_back_from_replicas_ahead_of_demand():
    """Both GPUs are held: one by `warm` ahead of demand (its requests need none), one by
    `other`. `busy` needs one: warm's replica is stopped (it frees its GPU once it exits), and
    warm's wish for it stays pending, saying whom it yields to."""
    held = gpu_replica("w0", "0")
    warm = Request("warm", 1, ONE_GPU, (held,), ahead=1)
    other = Request("other", 1, ONE_GPU, (gpu_replica("o0", "1"),))
    busy = Request("busy", 1, ONE_GPU)
    usage = gpu_usage(held, gpu_replica("o0", "1"))
    warm_d, other_d, busy_d = place_all([warm, other, busy], TWO_GPUS, usage, NOW)
    assert warm_d.stop == ("w0",) and not warm_d.start
    assert [(p.ahead, p.reason) for p in warm_d.pending] == [
        (True, "ahead of demand: yields to busy, whose requests wait for room")
    ]
    assert other_d == Decision("other")  # needed replicas are never taken
    assert not busy_d.start and [p.ahead for p in busy_d.pending] == [False]
    # Once w0 has exited, busy gets its GPU and warm's replica ahead of demand waits.
    warm = Request("warm", 1, ONE_GPU, ahead=1, pending_since=(NOW,))
    usage = gpu_usage(gpu_replica("o0", "1"))
    warm_d, _, busy_d = place_all([warm, other, busy], TWO_GPUS, usage, NOW + 5)
    assert len(busy_d.start) == 1
    assert not warm_d.start and [p.ahead for p in warm_d.pending] == [True]


def test_replicas_ahead_of_demand_yield_only_to_needed_replicas():
    """A revision whose own replicas ahead of demand find no room takes nothing back, and
    without `ahead` nothing changes: the same decisions as placing each in turn."""
    held = gpu_replica("w0", "0")
    warm = Request("warm", 1, ONE_GPU, (held,), ahead=1)
    other = Request("other", 2, ONE_GPU, (gpu_replica("o0", "1"),), ahead=1)
    usage = gpu_usage(held, gpu_replica("o0", "1"))
    warm_d, other_d = place_all([warm, other], TWO_GPUS, usage, NOW)
    assert warm_d == Decision("warm")
    assert not other_d.start and [p.ahead for p in other_d.pending] == [True]
    plain = [Request("a", 1, ONE_GPU, (held,)), Request("b", 2, ONE_GPU)]
    assert place_all(plain, TWO_GPUS, gpu_usage(held), NOW) == [
        place(plain[0], TWO_GPUS, gpu_usage(held), NOW),
        place(plain[1], TWO_GPUS, gpu_usage(held), NOW),
    ]


def test_a_replica_held_by_its_units_max_takes_nothing_back():
    """`capped` needs a second replica, but its policy's only unit allows one: more room would
    not place it, so `warm` keeps its replica ahead of demand."""
    pol = policy([{"resource": "ecs", "max": 1}])
    held, capped_one = gpu_replica("w0", "0"), gpu_replica("c0", "1")
    warm = Request("warm", 1, ONE_GPU, (held,), ahead=1)
    capped = Request("capped", 2, ONE_GPU, (capped_one,), policy=pol)
    warm_d, capped_d = place_all([warm, capped], TWO_GPUS, gpu_usage(held, capped_one), NOW)
    assert [p.room for p in capped_d.pending] == [False]
    assert warm_d == Decision("warm")


def test_a_revision_whose_own_requests_wait_places_its_replicas_ahead_of_demand_last():
    """Both GPUs are taken by others' needed replicas; `both` wants one needed and one ahead:
    the needed one waits, and the one ahead of demand waits behind it, yielding to no one."""
    taken = (gpu_replica("a0", "0"), gpu_replica("b0", "1"))
    both = Request("both", 2, ONE_GPU, ahead=1)
    (decision,) = place_all([both], TWO_GPUS, gpu_usage(*taken), NOW)
    assert not decision.start
    assert [(p.ahead, p.reason.startswith("ahead of demand")) for p in decision.pending] == [
        (False, False),
        (True, True),
    ]
    assert (
        decision.pending[1].reason
        == "ahead of demand: after the replicas its own requests wait for"
    )
