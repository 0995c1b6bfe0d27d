"""Which old revisions to delete, by Knative's rules (pkg/reconciler/gc,
docs/architecture.md#revisions-traffic-and-rollout)."""

from __future__ import annotations

from dataclasses import dataclass

from tidal.api.config import GCConfig


@dataclass(frozen=True)
class RevisionAge:
    name: str
    created: float  # epoch seconds
    last_active: float  # epoch seconds the revision last stopped being routed (or created)
    active: bool  # routed, the latest ready revision, or marked no-gc


def revisions_to_collect(revisions: list[RevisionAge], config: GCConfig, now: float) -> list[str]:
    minimum, maximum = config.min_non_active_revisions, config.max_non_active_revisions
    if len(revisions) <= minimum or (
        maximum is None
        and config.retain_since_create_time_s is None
        and config.retain_since_last_active_time_s is None
    ):
        return []
    candidates = sorted((r for r in revisions if not r.active), key=lambda r: r.last_active)
    doomed: list[str] = []
    remaining = len(candidates)
    kept: list[RevisionAge] = []
    for index, revision in enumerate(candidates):
        if remaining <= minimum:
            kept.extend(candidates[index:])
            break
        if _stale(revision, config, now):
            doomed.append(revision.name)
            remaining -= 1
        else:
            kept.append(revision)
    if maximum is not None and len(kept) > maximum:
        doomed.extend(r.name for r in kept[: len(kept) - maximum])
    return doomed


def _stale(revision: RevisionAge, config: GCConfig, now: float) -> bool:
    if (
        config.retain_since_create_time_s is not None
        and now - revision.created < config.retain_since_create_time_s
    ):
        return False
    return not (
        config.retain_since_last_active_time_s is not None
        and now - revision.last_active < config.retain_since_last_active_time_s
    )
