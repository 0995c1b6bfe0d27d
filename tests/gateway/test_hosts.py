"""Which hosts are cluster-local, and which clients may call them (tidal.gateway.hosts,
docs/architecture.md#hosts); the proxy's refusal is in test_proxy.py."""

from __future__ import annotations

import ipaddress

import pytest

from tidal.api.config import GatewayLimits
from tidal.gateway.hosts import address, host_names, is_cluster_local, url
from tidal.gateway.proxy import in_networks


@pytest.mark.parametrize(
    ("peer", "inside"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.1.2.3", False),
        ("fe80::1%eth0", False),
        ("", False),
        ("/run/tidal.sock", False),
    ],
)
def test_who_counts_as_a_cluster_client(peer: str, inside: bool) -> None:
    assert in_networks(peer, GatewayLimits()) is inside


def test_cluster_local_names_are_told_from_external_ones() -> None:
    for host in ("hello.default", "hello.default.svc", "tag-hello.ns.svc.cluster.local"):
        assert is_cluster_local(host), host
    for host in ("hello.default.example.com", "hello.default.localhost", "127.0.0.1", ""):
        assert not is_cluster_local(host), host


def test_a_private_service_is_named_by_its_cluster_local_url() -> None:
    assert url("hello", "ml", "example.com") == "http://hello.ml.example.com"
    assert url("hello", "ml", "example.com", "v2", public=False) == (
        "http://v2-hello.ml.svc.cluster.local"
    )
    assert address("hello", "ml") == "http://hello.ml.svc.cluster.local"
    assert all(is_cluster_local(h) for h in host_names("hello", "ml", "x.io", public=False))


def test_networks_survive_the_trip_to_a_gateway_worker() -> None:
    limits = GatewayLimits(
        drain_timeout_s=3.0, cluster_networks=(ipaddress.ip_network("10.0.0.0/8"),)
    )
    assert GatewayLimits.from_json(limits.to_json()) == limits
