"""Where replicas run: pools chosen by ResourcePolicy, and which replicas leave first.

`place(request, pools, usage, now)` decides for one revision; `place_all` decides for many over
shared pools, taking each decision's starts out of the free capacity before the next. Both are
pure and deterministic: same input, same decision.

Scale-out (docs/pools.md#resourcepolicy, docs/pools.md#spill-policies). Each new replica walks
the policy's units in order:
- a unit whose `max` is reached is passed over (never exceeded);
- the first pool of the unit with room (cpu, memory, replicas, whole free GPUs) takes the replica;
- a unit without room passes the replica on or holds it Pending, by `whenTryNextUnits.policy`:
  `LackResourceOrExceedMax` passes on; `ExceedMax` holds it; `TimeoutOrExceedMax` holds it until
  it has been pending `timeout`; `LackResourceAndNoTerminating` holds it while a replica of the
  unit is terminating. A unit without `max` never holds a replica (docs/pools.md#spill-policies).
- after the last unit, `strategy: prefer` tries the pools that match no unit, in config order
  (KEP-594: nodes outside the units "will be considered after all nodes that match the units",
  docs/pools.md#units); `required` leaves the replica Pending.
Without a policy every pool is its own unit, in config order, without max: the first pool with
room takes the replica. A replica counts toward a unit's max when it belongs to the policy's group
(all replicas given, or with `matchLabelKeys` those with this revision's values), is not
terminating (unless `ignoreTerminatingPod: false`), runs in one of the unit's pools and carries the
unit's `podLabels` (docs/pools.md#units); it counts in the first such unit only.

Scale-in (WorkloadSpread order, docs/pools.md#scale-in-order): replicas above their unit's max go
first, then units from the last back to the first, replicas outside every unit before all of them.
Inside a unit: not-ready before ready, then newest first, then the highest id (the ReplicaSet rank
rules).

A stopped replica keeps its cpu, memory and devices until it has exited, so stops free nothing
here: the caller's `usage` drops the replica once it is gone.

Replicas held ahead of demand (`Request.ahead`: what prediction keeps warm or plans beyond the
count the revision's requests need) yield to those needs
(docs/pools.md#replicas-ahead-of-demand): `place_all` places every revision's needed replicas
first and its ahead ones only after, and while any revision has needed replicas pending for
lack of room it starts no replica ahead of demand and stops the ones running, so that a warm
replica never keeps a waiting request from a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain

from tidal.api.pools import GPU, Pool
from tidal.api.resource_policy import POOL_KIND, ResourcePolicy
from tidal.scheduler.devices import claim, free_devices, take

_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Demand:
    """What one replica of a revision needs: cores, bytes, whole GPU devices."""

    cpu: float = 0.0
    memory: float = 0.0
    gpus: int = 0


@dataclass(frozen=True, slots=True)
class Placed:
    """A replica that exists (starting, running or terminating)."""

    replica_id: str
    pool: str
    started_at: float
    devices: tuple[str, ...] = ()
    ready: bool = True
    terminating: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PoolUsage:
    """What the replicas in a pool hold, from every revision, terminating ones included."""

    cpu: float = 0.0
    memory: float = 0.0
    replicas: int = 0
    devices: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Request:
    """One revision to place.

    `replicas` are the revision's own, terminating included. `others` are the replicas of other
    revisions the policy selects (they count toward unit max). `labels` are the labels a new
    replica carries (`matchLabelKeys` reads them). `pending_since` are the times the replicas
    still pending became pending, oldest first: the previous decision's `Pending.since`.
    `ahead` of the `desired` replicas are held ahead of demand (prediction's, beyond what the
    revision's requests need): `place_all` gives them room only after every revision's needed
    replicas, and takes it back for them.
    """

    revision: str
    desired: int
    demand: Demand = Demand()
    replicas: Sequence[Placed] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    policy: ResourcePolicy | None = None
    others: Sequence[Placed] = ()
    pending_since: Sequence[float] = ()
    ahead: int = 0


@dataclass(frozen=True, slots=True)
class Start:
    """Start a replica in `pool` with these devices. `unit` is the index of the policy unit it
    fills (None without a policy or outside every unit); `labels` are that unit's podLabels, to
    put on the replica so that it counts toward the unit's max."""

    pool: str
    devices: tuple[str, ...] = ()
    unit: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pending:
    """A replica that could not be placed, why, and since when it has been pending. `room`:
    more free capacity would have placed it (not: every unit it may use is at its max, or the
    revision cannot be placed at all); `ahead`: one held ahead of demand (no request waits
    for it)."""

    reason: str
    since: float
    ahead: bool = False
    room: bool = True


@dataclass(frozen=True)
class Decision:
    """Replicas to start, replica ids to stop (in the order to stop them), replicas pending."""

    revision: str
    start: tuple[Start, ...] = ()
    stop: tuple[str, ...] = ()
    pending: tuple[Pending, ...] = ()


def tally(pools: Sequence[Pool], running: Iterable[tuple[Placed, Demand]]) -> dict[str, PoolUsage]:
    """Usage per pool from every replica that still holds resources, with its demand.

    Raises DeviceConflict when two replicas hold the same device."""
    totals = {pool.name: [0.0, 0.0, 0] for pool in pools}
    held: dict[str, set[str]] = {pool.name: set() for pool in pools}
    for replica, demand in running:
        if replica.pool not in totals:
            continue
        entry = totals[replica.pool]
        entry[0] += demand.cpu
        entry[1] += demand.memory
        entry[2] += 1
        claim(held[replica.pool], replica.devices, replica.pool)
    return {
        name: PoolUsage(cpu, memory, int(count), frozenset(held[name]))
        for name, (cpu, memory, count) in totals.items()
    }


def place(
    request: Request, pools: Sequence[Pool], usage: Mapping[str, PoolUsage], now: float
) -> Decision:
    """The decision for one revision. `usage` covers all revisions; missing pools are empty."""
    free = _free(pools, usage)
    return _decide(request, _units(request.policy, pools), free, now)


def room_for(demand: Demand, pools: Sequence[Pool], usage: Mapping[str, PoolUsage]) -> bool:
    """Whether some pool has room for one more replica needing `demand`. For a revision
    without a ResourcePolicy that wants more replicas than it has (terminating ones aside),
    `place` starts at least one exactly when this holds, and otherwise holds every missing
    replica pending: a caller that only needs to know whether it starts any can ask this
    instead, without building the decision and its reasons."""
    empty = PoolUsage()
    return any(_Room(pool, usage.get(pool.name, empty)).fits(demand) for pool in pools)


def never_fits(demand: Demand, pools: Sequence[Pool]) -> str:
    """Why no pool could hold one replica needing `demand` even with nothing running, or ''
    when one could. A revision that asks for this can never start a replica."""
    empty = PoolUsage()
    rooms = [_Room(pool, empty) for pool in pools]
    if any(room.fits(demand) for room in rooms):
        return ""
    lacks = "; ".join(room.lack(demand) for room in rooms) or "no pools"
    return f"no pool can hold one replica of {_describe(demand)} ({lacks})"


def place_all(
    requests: Iterable[Request], pools: Sequence[Pool], usage: Mapping[str, PoolUsage], now: float
) -> list[Decision]:
    """Decisions for many revisions in order, each seeing the capacity earlier ones took: first
    the replicas each needs (those it holds ahead of demand kept, none started), then, unless
    one of those is left pending for lack of room, the ones ahead of demand; if one is, every
    revision's replicas ahead of demand are stopped instead (see the module's docstring)."""
    requests = list(requests)
    free = _free(pools, usage)
    layouts: dict[int, _Layout] = {}
    decisions = []
    for request in requests:
        key = id(request.policy)
        if key not in layouts:
            layouts[key] = _units(request.policy, pools)
        part = _needed_part(request) if request.ahead else request
        decisions.append(_decide(part, layouts[key], free, now))
    waiting = [
        r.revision
        for r, d in zip(requests, decisions, strict=True)
        if any(p.room and not p.ahead for p in d.pending)
    ]
    for index, request in enumerate(requests):
        if request.ahead:
            layout = layouts[id(request.policy)]
            if waiting:
                decisions[index] = _yield_ahead(request, decisions[index], layout, now, waiting)
            else:
                decisions[index] = _add_ahead(request, decisions[index], layout, free, now)
    return decisions


def _live(request: Request) -> int:
    return sum(1 for r in request.replicas if not r.terminating)


def _needed(request: Request) -> int:
    """How many of the desired replicas the revision's requests need (the rest are ahead)."""
    return request.desired - min(request.ahead, request.desired)


def _needed_part(request: Request) -> Request:
    """`request` without its replicas ahead of demand that are not running: the needed ones
    and the running ones (stopping those is `_yield_ahead`'s call)."""
    return replace(request, desired=min(request.desired, max(_needed(request), _live(request))))


def _add_ahead(
    request: Request, decision: Decision, layout: _Layout, free: dict[str, _Room], now: float
) -> Decision:
    """`decision` (the needed part's) and the replicas ahead of demand, placed on what is left."""
    if decision.stop or decision.pending or request.desired <= _live(request) + len(decision.start):
        return decision
    started = [
        Placed(f"{request.revision}/new-{i}", s.pool, now, s.devices, False, labels=s.labels)
        for i, s in enumerate(decision.start)
    ]
    rest = _decide(replace(request, replicas=(*request.replicas, *started)), layout, free, now)
    pending = tuple(Pending(f"ahead of demand: {p.reason}", p.since, True) for p in rest.pending)
    return replace(decision, start=decision.start + rest.start, pending=pending)


def _yield_ahead(
    request: Request, decision: Decision, layout: _Layout, now: float, waiting: list[str]
) -> Decision:
    """While `waiting` revisions' requests wait for room: `decision` (the needed part's) with
    the replicas `request` runs ahead of demand stopped, and those it wants pending."""
    needed, live = _needed(request), _live(request)
    if live > needed:  # the needed part started nothing: stopping takes no room
        decision = _decide(replace(request, desired=needed), layout, {}, now)
    short = request.desired - max(needed, live - len(decision.stop))
    if short <= 0:
        return decision
    others = [revision for revision in waiting if revision != request.revision]
    if others:
        names = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        reason = f"ahead of demand: yields to {names}, whose requests wait for room"
    else:
        reason = "ahead of demand: after the replicas its own requests wait for"
    since = sorted(request.pending_since)[-short:] if request.pending_since else []
    since = [now] * (short - len(since)) + since
    ahead = tuple(Pending(reason, at, True) for at in since)
    return replace(decision, pending=decision.pending + ahead)


class _Room:
    """Free capacity of one pool, consumed as replicas are placed."""

    __slots__ = ("cpu", "devices", "memory", "pool", "replicas")

    def __init__(self, pool: Pool, usage: PoolUsage) -> None:
        self.pool = pool
        self.cpu = math.inf if pool.cpu is None else pool.cpu - usage.cpu
        self.memory = math.inf if pool.memory is None else pool.memory - usage.memory
        self.replicas = (
            math.inf if pool.max_replicas is None else pool.max_replicas - usage.replicas
        )
        self.devices = free_devices(pool, usage.devices)

    def fits(self, demand: Demand) -> bool:
        return (
            self.replicas >= 1
            and self.cpu + _EPSILON >= demand.cpu
            and self.memory + _EPSILON >= demand.memory
            and len(self.devices) >= demand.gpus
        )

    def take(self, demand: Demand) -> tuple[str, ...]:
        devices = take(self.devices, demand.gpus)
        assert devices is not None, "take() after fits()"
        self.cpu -= demand.cpu
        self.memory -= demand.memory
        self.replicas -= 1
        return devices

    def lack(self, demand: Demand) -> str:
        """Why the pool cannot take a replica, e.g. `elastic: 0 of 2 GPUs free`."""
        pool, parts = self.pool, []
        if self.replicas < 1:
            parts.append(f"{pool.max_replicas} of {pool.max_replicas} replicas")
        if self.cpu + _EPSILON < demand.cpu:
            parts.append(f"cpu {max(self.cpu, 0):g} of {pool.cpu:g} free")
        if self.memory + _EPSILON < demand.memory:
            total = _bytes(pool.memory or 0.0)
            parts.append(f"memory {_bytes(max(self.memory, 0.0))} of {total} free")
        if len(self.devices) < demand.gpus:
            parts.append(f"{len(self.devices)} of {len(pool.gpus)} GPUs free")
        return f"{pool.name}: {', '.join(parts)}"


@dataclass(frozen=True, slots=True)
class _Unit:
    index: int
    label: str
    pools: tuple[str, ...]
    max: int | None = None
    pod_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Layout:
    units: tuple[_Unit, ...]
    outside: tuple[str, ...]  # pools in no unit, tried last under `strategy: prefer`


def _free(pools: Sequence[Pool], usage: Mapping[str, PoolUsage]) -> dict[str, _Room]:
    empty = PoolUsage()
    return {pool.name: _Room(pool, usage.get(pool.name, empty)) for pool in pools}


def _units(policy: ResourcePolicy | None, pools: Sequence[Pool]) -> _Layout:
    if policy is None:
        return _Layout(tuple(_Unit(i, p.name, (p.name,)) for i, p in enumerate(pools)), ())
    units = []
    for index, unit in enumerate(policy.spec.units):
        kind = POOL_KIND[unit.resource]
        names = tuple(
            pool.name
            for pool in pools
            if pool.kind == kind
            and all(pool.labels.get(k) == v for k, v in unit.node_selector.items())
        )
        units.append(_Unit(index, f"units[{index}]", names, unit.max, unit.pod_labels))
    inside = {name for unit in units for name in unit.pools}
    return _Layout(tuple(units), tuple(p.name for p in pools if p.name not in inside))


def _unit_of(replica: Placed, units: Sequence[_Unit]) -> int | None:
    for unit in units:
        if replica.pool in unit.pools and (
            not unit.pod_labels
            or all(replica.labels.get(k) == v for k, v in unit.pod_labels.items())
        ):
            return unit.index
    return None


def _decide(request: Request, layout: _Layout, free: dict[str, _Room], now: float) -> Decision:
    policy = request.policy
    active = [r for r in request.replicas if not r.terminating]
    group, problem = _group(request)
    counts: dict[int | None, int] = {}
    terminating: set[int | None] = set()
    if policy is not None:
        ignore_terminating = policy.spec.ignore_terminating_pod
        for replica in group:
            unit = _unit_of(replica, layout.units)
            if replica.terminating:
                terminating.add(unit)
                if ignore_terminating:
                    continue
            counts[unit] = counts.get(unit, 0) + 1

    if request.desired < len(active):
        victims = _victims(active, layout.units, counts)
        return Decision(request.revision, stop=tuple(victims[: len(active) - request.desired]))
    missing = request.desired - len(active)
    since = sorted(request.pending_since)[:missing]
    since += [now] * (missing - len(since))
    starts: list[Start] = []
    for k in range(missing):
        if problem:
            pending = tuple(Pending(problem, at, room=False) for at in since[k:])
            return Decision(request.revision, start=tuple(starts), pending=pending)
        outcome = _place_one(request, layout, free, counts, terminating, since[k], now)
        if isinstance(outcome, tuple):
            reason, room = outcome
            pending = tuple(Pending(reason, at, room=room) for at in since[k:])
            return Decision(request.revision, start=tuple(starts), pending=pending)
        starts.append(outcome)
    return Decision(request.revision, start=tuple(starts))


def _group(request: Request) -> tuple[list[Placed], str | None]:
    """The replicas counted toward unit max, or a reason no replica can be placed
    (docs/pools.md#units: with matchLabelKeys, max applies per group of equal label values; pods
    lacking one are rejected)."""
    keys = request.policy.spec.match_label_keys if request.policy is not None else ()
    replicas = chain(request.replicas, request.others)
    if not keys:
        return list(replicas), None
    absent = [key for key in keys if key not in request.labels]
    if absent:
        assert request.policy is not None
        name = request.policy.metadata.name
        return [], f"replica labels lack {absent[0]!r}, a matchLabelKeys key of policy {name!r}"
    want = [(key, request.labels[key]) for key in keys]
    return [r for r in replicas if all(r.labels.get(k) == v for k, v in want)], None


def _place_one(
    request: Request,
    layout: _Layout,
    free: dict[str, _Room],
    counts: dict[int | None, int],
    terminating: set[int | None],
    since: float,
    now: float,
) -> Start | tuple[str, bool]:
    """A Start for one more replica, or why it stays pending and whether more free capacity
    would have placed it (not when every unit it may use is at its max)."""
    demand, policy = request.demand, request.policy
    short = False  # a unit it may use lacked room
    for unit in layout.units:
        if unit.max is not None and counts.get(unit.index, 0) >= unit.max:
            continue
        short = short or bool(unit.pools)
        for name in unit.pools:
            room = free[name]
            if room.fits(demand):
                counts[unit.index] = counts.get(unit.index, 0) + 1
                if policy is None:
                    return Start(name, room.take(demand))
                return Start(name, room.take(demand), unit.index, unit.pod_labels)
        hold = _hold(policy, unit, unit.index in terminating, now - since)
        if hold:
            return f"waiting for room in {_note(unit, policy, free, counts, demand)}: {hold}", True
    tried = [_note(unit, policy, free, counts, demand) for unit in layout.units]
    if policy is not None and policy.spec.strategy == "prefer" and layout.outside:
        for name in layout.outside:
            if free[name].fits(demand):
                return Start(name, free[name].take(demand))
        lacks = "; ".join(free[name].lack(demand) for name in layout.outside)
        tried.append(f"pools outside units ({lacks})")
        short = True
    reason = f"no pool with room for {_describe(demand)} among {', '.join(tried) or 'no pools'}"
    return reason, short


def _note(
    unit: _Unit,
    policy: ResourcePolicy | None,
    free: dict[str, _Room],
    counts: dict[int | None, int],
    demand: Demand,
) -> str:
    """Why a unit took no replica, for a Pending reason (built only once placement failed)."""
    if unit.max is not None and counts.get(unit.index, 0) >= unit.max:
        return f"{unit.label} (max {unit.max} reached)"
    lacks = "; ".join(free[name].lack(demand) for name in unit.pools) or "no pool matches"
    return f"{unit.label} ({lacks})" if policy is not None else lacks


def _hold(policy: ResourcePolicy | None, unit: _Unit, terminating: bool, waited: float) -> str:
    """Why a unit without room keeps the replica rather than passing it on, or ''
    (docs/pools.md#spill-policies)."""
    if policy is None:
        return ""
    when = policy.spec.when_try_next_units
    if when.policy == "LackResourceAndNoTerminating":
        return (
            "a replica of the unit is terminating (LackResourceAndNoTerminating)"
            if terminating
            else ""
        )
    if unit.max is None or when.policy == "LackResourceOrExceedMax":
        return ""
    if when.policy == "ExceedMax":
        return f"ExceedMax passes on only at max {unit.max}"
    timeout = when.timeout_s
    if waited >= timeout:
        return ""
    return f"TimeoutOrExceedMax passes on after {timeout:g}s, pending {waited:g}s"


def _victims(
    active: list[Placed], units: Sequence[_Unit], counts: dict[int | None, int]
) -> list[str]:
    """This revision's replicas in the order to stop them (WorkloadSpread order,
    docs/pools.md#scale-in-order)."""
    inner = sorted(active, key=lambda r: r.replica_id, reverse=True)
    inner.sort(key=lambda r: (r.ready, -r.started_at))
    last = len(units)
    index = {r.replica_id: _unit_of(r, units) for r in inner}
    excess = {u.index: counts.get(u.index, 0) - u.max for u in units if u.max is not None}
    above = set()
    for replica in inner:
        unit = index[replica.replica_id]
        if excess.get(unit, 0) > 0:
            excess[unit] -= 1
            above.add(replica.replica_id)

    def rank(item: tuple[int, Placed]) -> tuple[bool, int, int]:
        position, replica = item
        unit = index[replica.replica_id]
        return replica.replica_id not in above, -(last if unit is None else unit), position

    return [r.replica_id for _, r in sorted(enumerate(inner), key=rank)]


def _describe(demand: Demand) -> str:
    parts = []
    if demand.cpu:
        parts.append(f"cpu {demand.cpu:g}")
    if demand.memory:
        parts.append(f"memory {_bytes(demand.memory)}")
    if demand.gpus:
        parts.append(f"{demand.gpus} {GPU}")
    return ", ".join(parts) or "a replica"


def _bytes(amount: float) -> str:
    for suffix, size in (("Gi", 2.0**30), ("Mi", 2.0**20), ("Ki", 2.0**10)):
        if amount >= size:
            return f"{amount / size:.4g}{suffix}"
    return f"{amount:g}"
