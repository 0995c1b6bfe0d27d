"""The admin API in this process, on a real Platform and SQLite store, with replicas that never
start (a runtime that only records), driven through aiohttp's test client from a sync test."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from tidal.api.config import load_config
from tidal.controller.admin import AdminSecurity, build_app, own_origins
from tidal.controller.platform import Platform
from tidal.runtime.base import Replica, ReplicaSpec

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
HELLO: dict[str, Any] = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "hello", "namespace": "default"},
    "spec": {"template": {"spec": {"containers": [{"command": ["python", "app.py"]}]}}},
}


def hello(name: str = "hello", **template_metadata: Any) -> dict[str, Any]:
    doc = copy.deepcopy(HELLO)
    doc["metadata"]["name"] = name
    if template_metadata:
        doc["spec"]["template"]["metadata"] = template_metadata
    return doc


class RecordingRuntime:
    """Replicas that stay Starting: the control plane runs, nothing is spawned."""

    requires_command = True
    keeps_log_files = True

    def __init__(self) -> None:
        self.started: list[str] = []

    async def start(self, spec: ReplicaSpec, on_change: Any) -> Replica:
        self.started.append(spec.replica_id)
        return Replica(spec=spec)

    async def stop(self, replica: Replica, grace_s: float) -> None:
        return None

    def log_tail(self, replica_spec: ReplicaSpec, lines: int) -> list[str]:
        return []

    async def close(self) -> None:
        return None


class AdminUnderTest:
    """A Platform and its admin app on a loop of their own; `call` runs one request."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.platform = Platform(load_config(None), data_dir, RecordingRuntime())
        security = AdminSecurity(TOKEN, own_origins("http", "127.0.0.1", 8081))
        app = build_app(self.platform, {"admin": "http://127.0.0.1:8081"}, security)
        self.client = TestClient(TestServer(app), loop=self.loop)
        self.loop.run_until_complete(self.client.start_server())

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """(status, JSON body or text) of one request; a non-bytes body is sent as JSON."""
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        sent = AUTH if headers is None else headers

        async def go() -> tuple[int, Any]:
            response = await self.client.request(method, path, data=data, headers=sent)
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

        return self.loop.run_until_complete(go())

    def apply(self, *docs: dict[str, Any]) -> tuple[int, Any]:
        return self.call("POST", "/apis/tidal.dev/v1/apply", {"items": list(docs)})

    def snapshot(self) -> tuple[Any, ...]:
        """Everything a user or the gateway sees: stored objects and the host table."""
        store = self.platform.store
        stored = tuple(
            json.dumps(store.list(kind), sort_keys=True)
            for kind in ("Service", "Revision", "Route", "ResourcePolicy")
        )
        hosts = {
            host: (r.revisions, r.cumulative) for host, r in self.platform.router.hosts.items()
        }
        return (*stored, json.dumps(hosts, sort_keys=True, default=list))

    def close(self) -> None:
        async def stop() -> None:
            await self.client.close()
            await self.platform.stop()

        self.loop.run_until_complete(stop())
        self.loop.close()
