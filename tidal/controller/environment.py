"""A container's environment with its Secret and ConfigMap references filled in, as the kubelet
fills them in when it starts a container (docs/architecture.md#secrets-and-configmaps).

`envFrom` comes first, in order, then `env`, so an `env` entry wins over a key of the same name.
An `env` value's `$(NAME)` references are expanded with the variables defined before it
(tidal.runtime.expansion).
A reference that is not `optional` must find its object (and key); an `optional` one that does
not leaves its variables unset. (Every key of a Secret or ConfigMap, after a valid prefix, is a
valid variable name under Kubernetes' relaxed rule, so none is skipped.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tidal.api.config_objects import CONFIG_MAP, SECRET, values_of
from tidal.api.service import Container, KeySelector, ObjectRef
from tidal.runtime.expansion import expand

# (kind, namespace, name) -> the stored object, or None
Lookup = Callable[[str, str, str], dict[str, Any] | None]


class UnresolvedReference(Exception):
    """A reference (of the environment or of a volume) that is not optional names a missing
    object or key; says which, in the kubelet's words."""


def resolve_env(container: Container, namespace: str, lookup: Lookup) -> dict[str, str]:
    """The container's environment; raise UnresolvedReference for the first reference that
    cannot be filled in."""
    env, problems = _resolve(container, namespace, lookup)
    if problems:
        raise UnresolvedReference(problems[0])
    return env


def missing_references(container: Container, namespace: str, lookup: Lookup) -> list[str]:
    """Why each reference that is not optional cannot be filled in now; empty when all can."""
    return _resolve(container, namespace, lookup)[1]


def _resolve(
    container: Container, namespace: str, lookup: Lookup
) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    problems: list[str] = []
    for source in container.env_from:
        kind, ref = _whole(source.secret_ref, source.config_map_ref)
        obj = lookup(kind, namespace, ref.name)
        if obj is None:
            if not ref.optional:
                problems.append(f'envFrom: {kind.lower()} "{ref.name}" not found')
            continue
        for key, value in values_of(obj).items():
            env[source.prefix + key] = value
    for var in container.env:
        if var.value_from is None:
            env[var.name] = expand(var.value, env)
            continue
        kind, selector = _keyed(var.value_from.secret_key_ref, var.value_from.config_map_key_ref)
        obj = lookup(kind, namespace, selector.name)
        values = values_of(obj) if obj is not None else {}
        if selector.key in values:
            env[var.name] = values[selector.key]
        elif selector.optional:
            continue
        elif obj is None:
            problems.append(f'env {var.name}: {kind.lower()} "{selector.name}" not found')
        else:
            problems.append(
                f"env {var.name}: couldn't find key {selector.key} in {kind} "
                f"{namespace}/{selector.name}"
            )
    return env, problems


def _keyed(secret: KeySelector | None, config_map: KeySelector | None) -> tuple[str, KeySelector]:
    return (SECRET, secret) if secret is not None else (CONFIG_MAP, config_map)  # type: ignore[return-value]


def _whole(secret: ObjectRef | None, config_map: ObjectRef | None) -> tuple[str, ObjectRef]:
    return (SECRET, secret) if secret is not None else (CONFIG_MAP, config_map)  # type: ignore[return-value]
