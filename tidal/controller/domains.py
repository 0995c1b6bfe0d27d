"""DomainMappings (docs/architecture.md#domain-mappings): which domains route to which Service,
and what a mapping's status says.

A domain is claimed by one namespace at a time, as Knative's ClusterDomainClaim does: a mapping of
a domain that another namespace maps is refused. The routes add a service's mapped domains to its
main hosts (tidal.controller.routes), so a mapped domain splits traffic as the service's own
host does and, like it, is public even for a cluster-local service.
"""

from __future__ import annotations

from typing import Any

from tidal.api.domain_mapping import ValidDomainMapping
from tidal.api.errors import InvalidSpec


class DomainMappings:
    def __init__(self) -> None:
        self.by_domain: dict[str, ValidDomainMapping] = {}
        # (namespace, domain) → why a stored mapping is not routed (refused at restore)
        self.refused: dict[tuple[str, str], str] = {}

    def check_claim(self, mapping: ValidDomainMapping) -> None:
        """Refuse a domain that another namespace maps."""
        current = self.by_domain.get(mapping.domain)
        if current is not None and current.namespace != mapping.namespace:
            raise InvalidSpec(
                "metadata.name",
                f"domain {mapping.domain!r} is already mapped in namespace "
                f"{current.namespace!r} (to service {current.service!r})",
            )

    def add(self, mapping: ValidDomainMapping) -> ValidDomainMapping | None:
        """Record `mapping`; returns the mapping it replaces, if any."""
        previous = self.by_domain.get(mapping.domain)
        self.by_domain[mapping.domain] = mapping
        self.refused.pop((mapping.namespace, mapping.domain), None)
        return previous

    def remove(self, namespace: str, domain: str) -> ValidDomainMapping | None:
        self.refused.pop((namespace, domain), None)
        mapping = self.by_domain.get(domain)
        if mapping is None or mapping.namespace != namespace:
            return None
        return self.by_domain.pop(domain)

    def domains_of(self, namespace: str, service: str) -> list[str]:
        """The domains mapped to the service, sorted."""
        return sorted(
            m.domain
            for m in self.by_domain.values()
            if m.namespace == namespace and m.service == service
        )


def mapping_status(
    domain: str, service: str, service_exists: bool, refused: str | None = None
) -> dict[str, Any]:
    """Knative's DomainMapping status: its URL, and Ready once its reference resolves (tidal
    has no ingress or certificate to wait for: the gateway answers the domain at once).
    `refused`: why a stored mapping is not routed."""
    if refused is not None:
        resolved = {"type": "ReferenceResolved", "status": "Unknown"}
        ready = {"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": refused}
    elif service_exists:
        resolved = {"type": "ReferenceResolved", "status": "True"}
        ready = {"type": "Ready", "status": "True"}
    else:
        message = f'services.serving.knative.dev "{service}" not found'
        resolved = {
            "type": "ReferenceResolved",
            "status": "False",
            "reason": "ResolveFailed",
            "message": message,
        }
        ready = {**resolved, "type": "Ready"}
    return {
        "url": f"http://{domain}",
        "address": {"url": f"http://{domain}"},
        "conditions": [ready, resolved],
    }
