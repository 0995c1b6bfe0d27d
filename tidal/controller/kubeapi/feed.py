"""Store changes, fanned out to watches and the event recorder as they commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Change = tuple[str, dict[str, Any]]  # ("ADDED" | "MODIFIED" | "DELETED", object)


@dataclass(eq=False)
class Subscription:
    kind: str
    queue: asyncio.Queue[Change] = field(default_factory=asyncio.Queue)


class ChangeFeed:
    def __init__(self) -> None:
        self.subscriptions: set[Subscription] = set()
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []

    def publish(self, event: str, obj: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(event, obj)
        for subscription in self.subscriptions:
            if subscription.kind == obj.get("kind"):
                subscription.queue.put_nowait((event, obj))

    def subscribe(self, kind: str) -> Subscription:
        subscription = Subscription(kind)
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)
