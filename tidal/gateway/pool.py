"""Idle keep-alive connections to replicas, per (host, port): the HTTP/1.1 proxy's, and the
HTTP/2 proxy's to replicas that serve HTTP/1.1 (tidal.gateway.h2_http1)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

MAX_IDLE = 256  # idle connections kept per upstream


class PooledConnection(Protocol):
    key: tuple[str, int]
    idle: bool  # in the pool
    transport: asyncio.Transport


C = TypeVar("C", bound=PooledConnection)


class IdlePool(Generic[C]):
    """Idle connections per (host, port), most recently used first. `make(pool, key)` builds
    the protocol of a new connection, which gives itself back (`give`) when a response is
    complete and the connection may carry another, and is forgotten when it closes."""

    def __init__(self, make: Callable[[IdlePool[C], tuple[str, int]], C]) -> None:
        self._make = make
        self._idle: dict[tuple[str, int], list[C]] = {}

    def take(self, host: str, port: int) -> C | None:
        conns = self._idle.get((host, port))
        if not conns:
            return None
        conn = conns.pop()
        conn.idle = False
        return conn

    async def connect(self, host: str, port: int) -> C:
        loop = asyncio.get_running_loop()
        key = (host, port)
        _, conn = await loop.create_connection(lambda: self._make(self, key), host, port)
        return conn

    def give(self, conn: C) -> None:
        conns = self._idle.setdefault(conn.key, [])
        if len(conns) >= MAX_IDLE:
            conn.transport.close()
        else:
            conn.idle = True
            conns.append(conn)

    def forget(self, conn: C) -> None:
        if conn.idle:
            conn.idle = False
            self._idle[conn.key].remove(conn)

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.idle = False
                conn.transport.close()
        self._idle.clear()
