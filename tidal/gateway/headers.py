"""Header rules both proxies keep: the headers that are about one connection, not the message
(hop by hop, RFC 9110 7.6.1), which never cross the gateway."""

from __future__ import annotations

HOP_BY_HOP = frozenset(
    (b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade")
)
_PLAIN_CONNECTION = frozenset((b"close", b"keep-alive"))


def listed(connection: bytes) -> frozenset[bytes]:
    """The header names a `Connection` header value lists (lower-cased), which are hop by hop
    too; `close` and `keep-alive` are options, not names."""
    if connection.lower() in _PLAIN_CONNECTION:  # nearly every request: no set to build
        return frozenset()
    return frozenset(t.strip().lower() for t in connection.split(b",")) - _PLAIN_CONNECTION
