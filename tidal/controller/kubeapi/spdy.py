"""SPDY/3.1 frames, as far as `kubectl port-forward` needs them (docs/kubectl.md#port-forward).

kubectl 1.31 and newer tunnel a SPDY/3.1 connection through a WebSocket: the binary messages
carry a plain byte stream of SPDY frames, cut anywhere. The client opens streams (SYN_STREAM,
headers compressed with zlib and SPDY's dictionary, one compression context per direction for
the whole connection), the server answers each (SYN_REPLY) before it sends data on it, and
either side ends its half of a stream with a FIN flag or the whole stream with RST_STREAM.
Like the spdystream library kubectl uses, there is no flow control: WINDOW_UPDATE and SETTINGS
are read and ignored.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

PROTOCOL = "SPDY/3.1+portforward.k8s.io"  # the WebSocket subprotocol of kubectl's tunnel
CHUNK = 256 * 1024  # the most of a forwarded connection's bytes one DATA frame carries here
VERSION = 3
FLAG_FIN = 0x01
SYN_STREAM, SYN_REPLY, RST_STREAM, PING, GOAWAY = 1, 2, 3, 6, 7
CANCEL = 5  # a RST_STREAM status
PROTOCOL_ERROR = 1
MAX_FRAME = (1 << 24) - 1  # a frame's length field has 24 bits
# The longest frame read: kubectl writes a connection's bytes 32 KiB at a time, so a longer
# frame is refused rather than buffered (a peer could otherwise hold 16 MiB per frame).
MAX_READ = 1 << 20

# The header compression dictionary of the SPDY/3 specification (section 2.6.10.1): these
# names, each after its length as 4 bytes, then the text below.
# fmt: off
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type", "date",
    "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
    "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
    "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after", "server", "te",
    "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
    "public", "set-cookie", "keep-alive", "origin",
)
# fmt: on
_DICTIONARY_TEXT = (
    b"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    b"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
    b"Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
    b"Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
    b"Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    b"application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    b"gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = (
    b"".join(struct.pack(">I", len(word)) + word.encode() for word in _DICTIONARY_WORDS)
    + _DICTIONARY_TEXT
)


class SpdyError(ValueError):
    """The peer broke the protocol; the connection cannot go on."""


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: dict[str, str]
    fin: bool


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_stream_id: int


Frame = SynStream | Data | RstStream | Ping | GoAway


def encode_headers(headers: dict[str, str]) -> bytes:
    """A header block before compression: the count, then each name and value after its
    length (4 bytes each); several values of one name are joined by NUL."""
    block = [struct.pack(">I", len(headers))]
    for name, value in headers.items():
        for text in (name.lower().encode(), value.encode()):
            block.append(struct.pack(">I", len(text)) + text)
    return b"".join(block)


def decode_headers(block: bytes) -> dict[str, str]:
    try:
        (count,), offset = struct.unpack_from(">I", block), 4
        headers = {}
        for _ in range(count):
            texts = []
            for _ in range(2):
                (length,) = struct.unpack_from(">I", block, offset)
                texts.append(block[offset + 4 : offset + 4 + length].decode())
                offset += 4 + length
            headers[texts[0]] = texts[1]
    except (struct.error, UnicodeDecodeError) as exc:
        raise SpdyError(f"a malformed header block: {exc}") from None
    return headers


class HeaderCompressor:
    """One direction's header compression context: it lasts as long as the connection."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zdict=DICTIONARY)

    def compress(self, headers: dict[str, str]) -> bytes:
        return self._zlib.compress(encode_headers(headers)) + self._zlib.flush(zlib.Z_SYNC_FLUSH)


class FrameReader:
    """Frames from the bytes a peer sends, however they were cut into messages."""

    def __init__(self, max_frame: int = MAX_READ) -> None:
        self._buffer = bytearray()
        self._headers = zlib.decompressobj(zdict=DICTIONARY)
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[Frame]:
        """The frames `data` completes, in order; SpdyError when they break the protocol."""
        self._buffer += data
        frames = []
        while len(self._buffer) >= 8:
            first, flags_length = struct.unpack_from(">II", self._buffer)
            length = flags_length & MAX_FRAME
            if length > self._max_frame:
                raise SpdyError(f"a frame of {length} bytes (at most {self._max_frame} are read)")
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            fin = bool(flags_length >> 24 & FLAG_FIN)
            if not first & 0x80000000:
                frames.append(Data(first, payload, fin))
            elif (frame := self._control(first, payload, fin)) is not None:
                frames.append(frame)
        return frames

    def _control(self, first: int, payload: bytes, fin: bool) -> Frame | None:
        version, kind = first >> 16 & 0x7FFF, first & 0xFFFF
        if version != VERSION:
            raise SpdyError(f"SPDY version {version}, not {VERSION}")
        try:
            if kind == SYN_STREAM:
                (stream_id,) = struct.unpack_from(">I", payload)
                block = self._headers.decompress(payload[10:])
                return SynStream(stream_id & 0x7FFFFFFF, decode_headers(block), fin)
            if kind == RST_STREAM:
                stream_id, status = struct.unpack_from(">II", payload)
                return RstStream(stream_id & 0x7FFFFFFF, status)
            if kind == PING:
                return Ping(struct.unpack_from(">I", payload)[0])
            if kind == GOAWAY:
                return GoAway(struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF)
        except (struct.error, zlib.error) as exc:
            raise SpdyError(f"a malformed control frame of type {kind}: {exc}") from None
        return None  # SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY: nothing a server acts on


def _control_frame(kind: int, payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, flags << 24 | len(payload)) + payload


def syn_stream(compressor: HeaderCompressor, stream_id: int, headers: dict[str, str]) -> bytes:
    """Opens a stream (a client's: `tidal port-forward`), priority 0."""
    payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + compressor.compress(headers)
    return _control_frame(SYN_STREAM, payload)


def syn_reply(compressor: HeaderCompressor, stream_id: int) -> bytes:
    """Accepts a stream the peer opened, with no headers."""
    return _control_frame(SYN_REPLY, struct.pack(">I", stream_id) + compressor.compress({}))


def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
    """One or more DATA frames carrying `payload`; the last ends the stream when `fin`."""
    chunks = [payload[i : i + MAX_FRAME] for i in range(0, len(payload), MAX_FRAME)] or [b""]
    return b"".join(
        struct.pack(
            ">II", stream_id, (FLAG_FIN if fin and i == len(chunks) - 1 else 0) << 24 | len(chunk)
        )
        + chunk
        for i, chunk in enumerate(chunks)
    )


def rst_stream(stream_id: int, status: int) -> bytes:
    return _control_frame(RST_STREAM, struct.pack(">II", stream_id, status))


def ping(ping_id: int) -> bytes:
    return _control_frame(PING, struct.pack(">I", ping_id))
