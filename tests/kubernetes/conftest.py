from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from tests.kubernetes.controllers import Controllers
from tests.kubernetes.emulator import FakeCluster, ThreadedEmulator


@pytest.fixture
def emulator() -> Iterator[ThreadedEmulator]:
    with ThreadedEmulator() as emulator:
        yield emulator


@pytest.fixture
def api(emulator: ThreadedEmulator) -> Iterator[ApiClient]:
    api = emulator.api_client()
    yield api
    api.close()


@pytest.fixture
def cluster(api: ApiClient) -> Iterator[FakeCluster]:
    with FakeCluster(api) as cluster:
        yield cluster


@pytest.fixture
async def controllers(api: ApiClient, tmp_path: Path) -> AsyncIterator[Controllers]:
    controllers = Controllers(api, tmp_path)
    yield controllers
    for platform in list(controllers.running):
        await controllers.stop(platform)
