"""The response of a watch (`?watch=true`): one JSON event a line (`{"type": ADDED|MODIFIED|
DELETED, "object": ...}`, the object as a table row when kubectl asked for tables), until the
client's `timeoutSeconds` (30 minutes unless it says) is up."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from tidal.controller.kubeapi.resources import Resource
from tidal.controller.kubeapi.tables import table

WATCH_TIMEOUT_S = 1800.0


class WatchStream:
    def __init__(self, request: web.Request, resource: Resource, as_table: bool) -> None:
        self.resource = resource
        self.as_table = as_table
        self.include = request.query.get("includeObject", "Metadata")
        try:
            timeout = float(request.query.get("timeoutSeconds", WATCH_TIMEOUT_S))
        except ValueError:
            timeout = WATCH_TIMEOUT_S
        self.deadline = time.monotonic() + timeout
        self.response = web.StreamResponse(headers={"Content-Type": "application/json"})

    async def open(self, request: web.Request) -> WatchStream:
        await self.response.prepare(request)
        return self

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def send(self, event: str, obj: dict[str, Any]) -> None:
        payload = table(self.resource, [obj], self.include, headers=False) if self.as_table else obj
        await self.response.write((json.dumps({"type": event, "object": payload}) + "\n").encode())
