"""DomainMappings through the Platform on a fake runtime: a mapped domain routes as its Service's
own host, a domain belongs to one namespace, and the mapping's status follows its Service
(docs/architecture.md#domain-mappings)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.controller.fakes import decide, make_platform, runtime_of, service
from tidal.api.config import load_config
from tidal.api.errors import InvalidSpec
from tidal.controller.platform import Platform

DOMAIN = "api.example.org"


def mapping(service_name: str = "hello", namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "serving.knative.dev/v1beta1",
        "kind": "DomainMapping",
        "metadata": {"name": DOMAIN, "namespace": namespace},
        "spec": {
            "ref": {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "name": service_name,
            }
        },
    }


def routed(platform: Platform, host: str) -> tuple[str, ...] | None:
    route = platform.router.hosts.get(host)
    return None if route is None else route.revisions


def ready(platform: Platform) -> tuple[str, str]:
    stored = platform.store.get("DomainMapping", "default", DOMAIN)
    (condition, _) = platform.live_domain_mapping(stored)["status"]["conditions"]
    return condition["status"], condition.get("reason", "")


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = make_platform(tmp_path)
    yield platform
    await platform.stop()


async def test_a_mapped_domain_routes_as_the_services_own_host(platform: Platform) -> None:
    platform.apply([service(), mapping()])
    own = routed(platform, "hello.default.example.com")
    assert own == ("default/hello-00001",)
    assert routed(platform, DOMAIN) == own
    assert ready(platform) == ("True", "")


async def test_a_mapping_moves_between_services_and_goes_when_deleted(platform: Platform) -> None:
    platform.apply([service(), service("other"), mapping()])
    platform.apply([mapping("other")])
    assert routed(platform, DOMAIN) == ("default/other-00001",)
    assert platform.delete_domain_mapping("default", DOMAIN)
    assert routed(platform, DOMAIN) is None
    assert routed(platform, "other.default.example.com") == ("default/other-00001",)
    assert not platform.delete_domain_mapping("default", DOMAIN)


async def test_a_mapping_to_a_missing_service_waits_for_it(platform: Platform) -> None:
    platform.apply([mapping()])
    assert routed(platform, DOMAIN) is None
    assert ready(platform) == ("False", "ResolveFailed")
    platform.apply([service()])
    assert routed(platform, DOMAIN) == ("default/hello-00001",)
    assert ready(platform) == ("True", "")
    platform.delete_service("default", "hello")
    assert routed(platform, DOMAIN) is None
    assert ready(platform) == ("False", "ResolveFailed")


async def test_a_domain_belongs_to_one_namespace(platform: Platform) -> None:
    platform.apply([service(), mapping()])
    other = service()
    other["metadata"]["namespace"] = "team"
    with pytest.raises(InvalidSpec, match="already mapped in namespace 'default'"):
        platform.apply([other, mapping(namespace="team")])
    assert platform.store.get("Service", "team", "hello") is None, "all or nothing"
    assert platform.store.get("DomainMapping", "team", DOMAIN) is None
    with pytest.raises(InvalidSpec, match="appears twice"):
        platform.apply([mapping(), mapping("other")])


async def test_mappings_are_routed_again_after_a_restart(tmp_path: Path) -> None:
    first = make_platform(tmp_path)
    first.apply([service(), mapping()])
    await decide(first)
    await first.stop()
    second = make_platform(tmp_path)
    try:
        second.restore()
        assert routed(second, DOMAIN) == ("default/hello-00001",)
        await decide(second)
        assert runtime_of(second).running(), "the service runs as before"
    finally:
        await second.stop()


async def test_a_stored_mapping_no_longer_valid_is_not_routed_and_says_why(tmp_path: Path) -> None:
    first = make_platform(tmp_path)
    first.apply([service(), mapping()])
    await first.stop()
    # the platform's domain is now the mapped one's parent: the mapping would shadow its hosts
    second = make_platform(tmp_path, replace(load_config(None), domain="example.org"))
    try:
        second.restore()
        assert routed(second, DOMAIN) is None
        stored = second.store.get("DomainMapping", "default", DOMAIN)
        (condition, _) = second.live_domain_mapping(stored)["status"]["conditions"]
        assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
        assert "under the platform's domain 'example.org'" in condition["message"]
        assert routed(second, "hello.default.example.org") == ("default/hello-00001",)
        assert second.delete_domain_mapping("default", DOMAIN)
    finally:
        await second.stop()
