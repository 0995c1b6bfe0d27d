"""Resolving a Service's traffic block into revisions and per-host splits
(docs/architecture.md#revisions-traffic-and-rollout)."""

from __future__ import annotations

from dataclasses import dataclass

from tidal.api.errors import InvalidSpec
from tidal.api.service import TrafficTarget
from tidal.gateway.hosts import host_names


@dataclass(frozen=True)
class ResolvedTarget:
    revision: str
    percent: int
    tag: str | None
    latest: bool


def resolve_traffic(
    targets: list[TrafficTarget], latest: str, known_revisions: set[str]
) -> list[ResolvedTarget]:
    """Targets with revision names filled in; an empty block means 100% to the latest.

    Raises InvalidSpec when a named revision does not exist. Targets with the same revision and
    tag are merged by summing their percents, as Knative does.
    """
    if not targets:
        return [ResolvedTarget(latest, 100, None, True)]
    merged: dict[tuple[str, str | None, bool], int] = {}
    for index, target in enumerate(targets):
        is_latest = target.revision_name is None
        revision = latest if is_latest else target.revision_name
        assert revision is not None
        if not is_latest and revision not in known_revisions:
            known = ", ".join(sorted(known_revisions)) or "none"
            raise InvalidSpec(
                f"spec.traffic[{index}].revisionName",
                f"revision {revision!r} does not exist (known: {known})",
            )
        key = (revision, target.tag, is_latest)
        merged[key] = merged.get(key, 0) + (target.percent or 0)
    return [ResolvedTarget(rev, pct, tag, lt) for (rev, tag, lt), pct in merged.items()]


def host_table(
    name: str,
    namespace: str,
    domain: str,
    targets: list[ResolvedTarget],
    latest_split: list[tuple[str, int]] | None = None,
    public: bool = True,
    mapped: list[str] | None = None,
) -> dict[str, list[tuple[str, int]]]:
    """Host → [(revision, percent)], for each of the service's host names (`host_names`: the
    cluster-local ones, and the external one if `public`) and its `mapped` domains (from
    DomainMappings), which are main hosts too. The main hosts split by percent;
    each tag's hosts send 100% to its target. `latest_split` (from a gradual rollout) replaces
    the latest target's revision on the main hosts by several revisions sharing its percent."""
    main: dict[str, int] = {}
    table: dict[str, list[tuple[str, int]]] = {}
    for target in targets:
        if target.latest and latest_split:
            for revision, percent in latest_split:
                main[revision] = main.get(revision, 0) + percent
        elif target.percent:
            main[target.revision] = main.get(target.revision, 0) + target.percent
        if target.tag:
            for host in host_names(name, namespace, domain, target.tag, public):
                table[host] = [(target.revision, 100)]
    for host in [*host_names(name, namespace, domain, public=public), *(mapped or [])]:
        table[host] = list(main.items())
    return table
