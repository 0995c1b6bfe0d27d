"""The host names a service answers to (docs/architecture.md#hosts), as Knative names them.

A public service answers `NAME.NAMESPACE.DOMAIN`; every service also answers the cluster-local
names of Knative's local gateway: `NAME.NAMESPACE.svc.cluster.local`, `NAME.NAMESPACE.svc` and
`NAME.NAMESPACE`. A tag's hosts put `TAG-` before NAME. The label
`networking.knative.dev/visibility: cluster-local` makes a service private: it keeps only the
cluster-local names, and the gateway answers those only to clients in `gateway.cluster-networks`
(on one machine, the machine itself).
"""

from __future__ import annotations

CLUSTER_DOMAIN = "svc.cluster.local"


def request_host(host: bytes) -> str:
    """A Host header or `:authority` without its port or the trailing dot of a fully qualified
    name (`hello.default.example.com.` is the same host), lower-cased."""
    name = host.decode("latin-1").lower()
    if name.endswith("]"):  # IPv6 literal without a port
        return name
    head, colon, port = name.rpartition(":")
    return (head if colon and port.isdigit() else name).removesuffix(".")


def host_name(name: str, namespace: str, domain: str, tag: str | None = None) -> str:
    """The service's (or tag's) host under `domain`."""
    base = f"{tag}-{name}" if tag else name
    return f"{base}.{namespace}.{domain}"


def host_names(
    name: str, namespace: str, domain: str, tag: str | None = None, public: bool = True
) -> list[str]:
    """Every host of the service (or tag): the external one first, if public, then the
    cluster-local ones, the full name first. The first is the one its URL names."""
    local = host_name(name, namespace, CLUSTER_DOMAIN, tag)
    short = local.removesuffix(".cluster.local")
    names = [local, short, short.removesuffix(".svc")]
    return [host_name(name, namespace, domain, tag), *names] if public else names


def is_cluster_local(host: str) -> bool:
    """A cluster-local name: `x.ns`, `x.ns.svc` or `x.ns.svc.cluster.local`. No external host
    has that form: it has a domain after the namespace."""
    return host.endswith((".svc", f".{CLUSTER_DOMAIN}")) or host.count(".") == 1


def url(name: str, namespace: str, domain: str, tag: str | None = None, public: bool = True) -> str:
    """`status.url`: the external host of a public service, else its cluster-local one."""
    return f"http://{host_names(name, namespace, domain, tag, public)[0]}"


def address(name: str, namespace: str) -> str:
    """`status.address.url`: the cluster-local URL, which every service has (Knative's
    Addressable)."""
    return f"http://{host_name(name, namespace, CLUSTER_DOMAIN)}"
