"""Stopping a runtime's child replicas: each child is stopped once, however many callers ask
(a scale-in, a replace and `close()` can race), and every caller waits for that one stop."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from tidal.runtime.base import Replica


class StoppableChild(Protocol):
    replica: Replica
    stop_task: asyncio.Task[None] | None
    stopping: bool


class ChildStopping:
    """Mixin for runtimes that keep their replicas in `_children` by replica id and end one with
    `_terminate(child, grace_s)`."""

    _children: dict[str, Any]
    close_grace_s: float

    async def _terminate(self, child: Any, grace_s: float) -> None:
        raise NotImplementedError

    async def stop(self, replica: Replica, grace_s: float) -> None:
        child: StoppableChild | None = self._children.get(replica.replica_id)
        if child is None:
            return  # never started, or already exited
        if child.stop_task is None:
            child.stopping = True
            child.stop_task = asyncio.ensure_future(self._terminate(child, grace_s))
        await asyncio.shield(child.stop_task)

    async def stop_all(self) -> None:
        """Stop every child, each with the runtime's `close_grace_s`."""
        children = list(self._children.values())
        await asyncio.gather(*(self.stop(c.replica, self.close_grace_s) for c in children))
