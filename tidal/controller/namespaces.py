"""Namespaces on one machine (docs/kubectl.md#namespaces): one comes into being when something is
first applied in it, and a deleted one takes everything in it along, as Kubernetes' namespace
controller empties a namespace before the namespace itself goes.

Deleting marks the namespace Terminating (stored, so a restart finishes the job);
`finish_terminating`, run every second, deletes its content once a grace of a second has
passed, and retries what cannot go yet (a claim a draining replica still mounts) until nothing
is left and the namespace is removed. The grace is for `kubectl delete -f bundle.yaml`: a
bundle that starts with its Namespace has its other objects deleted one by one right after, and
on a cluster, where a namespace's content goes in the background, they are still there then.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tidal.api.claims import CLAIM, ClaimInUse
from tidal.api.config_objects import KINDS as CONFIG_KINDS
from tidal.api.domain_mapping import KIND as DOMAIN_MAPPING
from tidal.api.errors import InvalidSpec
from tidal.api.namespaces import (
    CLUSTER_SCOPE,
    NAMESPACE,
    TERMINATING,
    UNDELETABLE,
    NamespaceForbidden,
    implied_namespace,
    is_terminating,
)
from tidal.api.resource_policy import KIND as RESOURCE_POLICY
from tidal.api.service_accounts import SERVICE_ACCOUNT
from tidal.store.sqlite import Store, now_rfc3339

log = logging.getLogger("tidal.controller")
# What a namespace holds, in the order it is deleted: mappings before the services they route
# to, services (and with them their revisions and routes) before the claims their replicas mount.
CONTENT = (DOMAIN_MAPPING, "Service", RESOURCE_POLICY, *CONFIG_KINDS, SERVICE_ACCOUNT, CLAIM)
Deleter = Callable[[str, str], bool]  # (namespace, name) -> whether it was there
GRACE_S = 1.0


class NamespaceLifecycle:
    def __init__(
        self,
        store: Store,
        deleters: Mapping[str, Deleter],
        grace_s: float = GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.deleters = deleters
        self.grace_s = grace_s
        self.clock = clock
        self.terminating: dict[str, float] = {}  # name -> when its content may be deleted

    def restore(self) -> None:
        """Every namespace in use has its object (stores written before namespaces were kept
        have none), `default` always; a deletion a restart interrupted goes on."""
        for name in self.missing({"default", *self.store.namespaces()} - {CLUSTER_SCOPE}):
            self.store.put(implied_namespace(name))
        self.terminating = {
            ns["metadata"]["name"]: 0.0 for ns in self.store.list(NAMESPACE) if is_terminating(ns)
        }

    def missing(self, namespaces: Iterable[str]) -> list[str]:
        """Those of `namespaces` that have no Namespace object yet, in order."""
        return sorted(
            ns for ns in set(namespaces) if self.store.get(NAMESPACE, CLUSTER_SCOPE, ns) is None
        )

    def check_writable(self, namespace: str, kind: str, creating: bool) -> None:
        """A terminating namespace takes no new content, nor a new version of itself (which
        would undo its deletion): InvalidSpec in the API server's words."""
        if kind == NAMESPACE and namespace in self.terminating:
            raise InvalidSpec(
                "metadata.name",
                f"namespace {namespace!r} is being terminated: wait until it is gone, then "
                "apply it again",
            )
        if creating and namespace in self.terminating:
            raise InvalidSpec(
                "metadata.namespace",
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def delete(self, name: str) -> bool:
        """Mark `name` Terminating, to be emptied and removed after the grace; False if there
        is no such namespace. NamespaceForbidden for the ones Kubernetes keeps."""
        if name in UNDELETABLE:
            raise NamespaceForbidden(
                f'namespaces "{name}" is forbidden: this namespace may not be deleted'
            )
        stored = self.store.get(NAMESPACE, CLUSTER_SCOPE, name)
        if stored is None:
            return False
        if not is_terminating(stored):
            stored["metadata"]["deletionTimestamp"] = now_rfc3339()
            stored["status"] = {"phase": TERMINATING}
            self.store.put(stored)
            self.terminating[name] = self.clock() + self.grace_s
        return True

    def finish_terminating(self) -> None:
        """Empty the namespaces being deleted whose grace has passed; remove those now empty."""
        now = self.clock()
        for name, due in sorted(self.terminating.items()):
            if now >= due:
                self._empty(name)

    def _empty(self, name: str) -> None:
        left = []
        for kind in CONTENT:
            for obj in self.store.list(kind, name):
                try:
                    self.deleters[kind](name, obj["metadata"]["name"])
                except ClaimInUse:  # its replicas are still draining: next time
                    left.append(f"{kind} {obj['metadata']['name']}")
        if left:
            log.debug("namespace %s keeps %s for now", name, ", ".join(left))
            return
        self.store.delete(NAMESPACE, CLUSTER_SCOPE, name)
        del self.terminating[name]


def namespace_of(doc: dict[str, Any]) -> str:
    """The namespace a planned document is written in (a Namespace: its own name)."""
    meta = doc["metadata"]
    return str(meta["name"] if doc["kind"] == NAMESPACE else meta["namespace"])
