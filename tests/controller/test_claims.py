"""PersistentVolumeClaims through the Platform (docs/containers.md#claims): applied with the
service that mounts them, a claim is its folder at once; it cannot be deleted while a replica
mounts it; deleted, its folder goes with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.test_claims import CLAIM
from tests.controller.fakes import decide, make_platform, runtime_of, settle
from tests.controller.test_volumes import with_volumes
from tidal.api.claims import ClaimInUse
from tidal.api.errors import InvalidSpec
from tidal.controller.platform import Platform

MOUNTED = {"name": "models", "persistentVolumeClaim": {"claimName": "model-cache"}}


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = make_platform(tmp_path)
    yield platform
    await platform.stop()


def in_default() -> dict[str, object]:
    doc = {**CLAIM, "metadata": {"name": "model-cache"}}
    return doc


async def test_a_claim_applied_with_its_service_is_a_folder_kept_until_deleted(
    platform: Platform,
) -> None:
    results = platform.apply_detailed([in_default(), with_volumes(MOUNTED)])
    assert [result for _, result in results] == ["created", "created"]
    folder = platform.data_dir / "claims" / "default" / "model-cache"
    assert folder.is_dir()
    (folder / "model.bin").write_text("weights")
    await decide(platform)
    [replica] = runtime_of(platform).running()
    assert platform.claim_users("default", "model-cache") == [replica]
    with pytest.raises(ClaimInUse, match=f"is in use by pod {replica}"):
        platform.delete_claim("default", "model-cache")
    assert (folder / "model.bin").exists()

    platform.delete_service("default", "hello")
    await settle()
    assert platform.claim_users("default", "model-cache") == []
    assert platform.delete_claim("default", "model-cache")
    assert not folder.exists() and platform.store.list("PersistentVolumeClaim") == []
    assert not platform.delete_claim("default", "model-cache")  # gone: nothing to delete


async def test_a_claim_that_shrinks_is_refused_and_nothing_changes(platform: Platform) -> None:
    platform.apply([in_default()])
    smaller = in_default()
    smaller["spec"] = {**CLAIM["spec"], "resources": {"requests": {"storage": "1Gi"}}}
    with pytest.raises(InvalidSpec, match="can not be less than previous value"):
        platform.apply([smaller])
    [stored] = platform.store.list("PersistentVolumeClaim")
    assert stored["spec"]["resources"]["requests"]["storage"] == "10Gi"
