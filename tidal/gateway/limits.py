"""Caps on open connections, per listener and for the whole process.

Each listener counts its own connections; a `ConnectionBudget` adds up every listener of the
process. A connection over either cap is answered `503` with `Connection: close` at once and
closed, so a flood of idle sockets on one listener cannot take the file descriptors another
listener (or the replicas' upstream connections) needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: 21\r\nX-Tidal-Error: too many connections\r\nConnection: close\r\n\r\n"
    b"too many connections\n"
)


class ConnectionBudget:
    """The total cap over all listeners of one process; each listener registers a counter."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counters: list[Callable[[], int]] = []
        self.refused = 0

    def register(self, counter: Callable[[], int]) -> None:
        self._counters.append(counter)

    def unregister(self, counter: Callable[[], int]) -> None:
        if counter in self._counters:
            self._counters.remove(counter)

    def open(self) -> int:
        return sum(counter() for counter in self._counters)

    def full(self) -> bool:
        return self.open() >= self.limit


class Refuse(asyncio.Protocol):
    """Answers 503 (too many connections) and closes, without reading the request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(REFUSAL)  # type: ignore[attr-defined]
        transport.close()

    def data_received(self, data: bytes) -> None:
        pass


def capped(
    factory: Callable[[], asyncio.BaseProtocol],
    open_count: Callable[[], int],
    limit: int,
    budget: ConnectionBudget | None,
) -> Callable[[], asyncio.BaseProtocol]:
    """A protocol factory that gives `Refuse` instead once the listener (`open_count()` against
    `limit`) or the process (`budget`) is full."""

    def make() -> asyncio.BaseProtocol:
        if open_count() >= limit or (budget is not None and budget.full()):
            if budget is not None:
                budget.refused += 1
            return Refuse()
        return factory()

    return make
