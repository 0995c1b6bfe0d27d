"""Knative's `serving.knative.dev/v1beta1` DomainMapping: a domain of your own for a Service
(docs/architecture.md#domain-mappings).

The mapping's name is the domain; `spec.ref` names a Knative Service in the same namespace. The
rules follow Knative's webhook (domainmapping_validation.go), with three of tidal's own, each
saying why: the ref must be a Knative Service (tidal routes to nothing else), `spec.tls` is
refused (the gateway's own certificate, `tidal up --tls-cert`, serves every host), and the
domain needs three labels or more and must lie outside the platform's domain, where
`NAME.NAMESPACE` and `NAME.NAMESPACE.DOMAIN` are the services' own hosts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import field_validator

from tidal.api.errors import InvalidSpec
from tidal.api.manifest import parse_document
from tidal.api.service import DNS1123, KModel, ObjectMeta, dns_label
from tidal.gateway.hosts import CLUSTER_DOMAIN

API_VERSION = "serving.knative.dev/v1beta1"
KIND = "DomainMapping"
SERVICE_API_VERSION = "serving.knative.dev/v1"
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class DomainMeta(ObjectMeta):
    """A DomainMapping's name is a domain, not a DNS label (checked by `_check_domain`); this
    validator replaces ObjectMeta's, which checks both."""

    @field_validator("namespace")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        return dns_label(value)


class KReference(KModel):
    api_version: str
    kind: str
    name: str
    namespace: str | None = None


class DomainMappingSpec(KModel):
    ref: KReference
    tls: dict[str, Any] | None = None


class DomainMapping(KModel):
    api_version: Literal["serving.knative.dev/v1beta1"]
    kind: Literal["DomainMapping"]
    metadata: DomainMeta
    spec: DomainMappingSpec
    status: dict[str, Any] | None = None


@dataclass(frozen=True)
class ValidDomainMapping:
    domain: str
    namespace: str
    service: str
    doc: DomainMapping


def validate_domain_mapping(doc: dict[str, Any], platform_domain: str) -> ValidDomainMapping:
    """Check a DomainMapping document; raise InvalidSpec naming every problem."""
    mapping = parse_document(doc, API_VERSION, KIND, DomainMapping)
    namespace = mapping.metadata.namespace or "default"
    problems = [("metadata.name", p) for p in _check_domain(mapping.metadata.name, platform_domain)]
    ref = mapping.spec.ref
    if ref.api_version != SERVICE_API_VERSION or ref.kind != "Service":
        problems.append(
            (
                "spec.ref",
                f"tidal maps domains to Knative Services ({SERVICE_API_VERSION} Service), "
                f"got {ref.api_version} {ref.kind}",
            )
        )
    if ref.namespace is not None and ref.namespace != namespace:
        problems.append(
            ("spec.ref.namespace", f"must be the mapping's own namespace {namespace!r}")
        )
    if not DNS1123.match(ref.name) or len(ref.name) > 63:
        problems.append(("spec.ref.name", f"{ref.name!r} is not a Service name"))
    if mapping.spec.tls is not None:
        problems.append(
            (
                "spec.tls",
                "not supported: the gateway's certificate (tidal up --tls-cert) serves every "
                "host; leave tls out",
            )
        )
    if problems:
        raise InvalidSpec("", "", problems)
    return ValidDomainMapping(mapping.metadata.name or "", namespace, ref.name, mapping)


def _check_domain(domain: str | None, platform_domain: str) -> list[str]:
    """Knative's IsFullyQualifiedDomainName and cluster-domain rules, and tidal's two."""
    if not domain:
        return ["a DomainMapping needs a name: the domain it maps"]
    labels = domain.split(".")
    if len(domain) > 253 or not all(_LABEL.fullmatch(x) and len(x) <= 63 for x in labels):
        return [f"invalid name {domain!r}: must be a lower-case fully qualified domain name"]
    if len(labels) < 2:
        return [f"invalid name {domain!r}: should be a domain with at least two segments"]
    if domain.endswith(f".{CLUSTER_DOMAIN}") or domain.endswith(".svc"):
        return [f"invalid name {domain!r}: must not be a subdomain of {CLUSTER_DOMAIN!r}"]
    if len(labels) == 2:
        return [
            f"{domain!r}: tidal reads a two-label name as NAME.NAMESPACE, a cluster-local "
            "host; map a name of three labels or more (e.g. www." + domain + ")"
        ]
    if domain == platform_domain or domain.endswith("." + platform_domain):
        return [
            f"{domain!r} is under the platform's domain {platform_domain!r}, where the "
            "services' own hosts are"
        ]
    return []
