"""Registry credentials from a revision's imagePullSecrets, read as the kubelet reads them
(docs/containers.md#private-registries).

A Secret of type kubernetes.io/dockerconfigjson holds a Docker config.json under
`.dockerconfigjson` (`{"auths": {registry: {"auth": ...}}}`, what `kubectl create secret
docker-registry` makes); the older kubernetes.io/dockercfg holds the `auths` part alone under
`.dockercfg`. For a registry named by several Secrets the first one counts. A Secret that is
missing or unreadable is skipped, as the kubelet skips it, so an image that is already here
still starts; the pull that then fails says why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tidal.api.config_objects import SECRET, contents_of
from tidal.api.service import LocalObjectReference
from tidal.controller.environment import Lookup
from tidal.runtime.base import RegistryAuth

DOCKER_CONFIG_JSON = ".dockerconfigjson"
DOCKER_CFG = ".dockercfg"


def read_registry_auth(
    secrets: Sequence[LocalObjectReference], namespace: str, lookup: Lookup
) -> RegistryAuth:
    auths: dict[str, Any] = {}
    problems: list[str] = []
    for ref in secrets:
        where = f'imagePullSecrets: secret "{ref.name}"'
        obj = lookup(SECRET, namespace, ref.name)
        if obj is None:
            problems.append(f"{where} not found")
            continue
        entries = _entries(contents_of(obj))
        if entries is None:
            problems.append(
                f"{where} holds no registry credentials ({DOCKER_CONFIG_JSON} with an auths "
                f"object, or {DOCKER_CFG})"
            )
            continue
        for registry, entry in entries.items():
            auths.setdefault(registry, entry)
    return RegistryAuth(auths, tuple(problems))


def _entries(contents: dict[str, bytes]) -> dict[str, Any] | None:
    """The per-registry entries of a Secret, or None when it has none that can be read."""
    try:
        if DOCKER_CONFIG_JSON in contents:
            entries = json.loads(contents[DOCKER_CONFIG_JSON]).get("auths")
        elif DOCKER_CFG in contents:
            entries = json.loads(contents[DOCKER_CFG])
        else:
            return None
    except (ValueError, AttributeError):
        return None
    if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
        return None
    return entries
