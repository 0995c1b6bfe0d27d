"""Header rules both proxies keep: the headers that are about one connection, not the message
(hop by hop, RFC 9110 7.6.1), which never cross the gateway; and the reason phrase of the
HTTP/1.1 status lines the gateway writes."""

from __future__ import annotations

from http import HTTPStatus

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


def status_phrase(status: int) -> bytes:
    """`Not Found` for 404; empty for a status without a standard phrase."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
