"""SPDY/3.1 frames as kubectl's port-forward sends and reads them (tidal.controller.kubeapi.spdy).
The client side here is written from the specification, independently of the module."""

from __future__ import annotations

import struct
import zlib

import pytest

from tidal.controller.kubeapi import spdy


class Client:
    """What kubectl's spdystream writes: its own header compression context."""

    def __init__(self) -> None:
        self.compress = zlib.compressobj(9, zdict=spdy.DICTIONARY)
        self.replies = zlib.decompressobj(zdict=spdy.DICTIONARY)

    def syn_stream(self, stream_id: int, headers: dict[str, str], fin: bool = False) -> bytes:
        block = struct.pack(">I", len(headers))
        for name, value in headers.items():
            block += struct.pack(">I", len(name)) + name.encode()
            block += struct.pack(">I", len(value)) + value.encode()
        compressed = self.compress.compress(block) + self.compress.flush(zlib.Z_SYNC_FLUSH)
        payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + compressed
        return struct.pack(">HHI", 0x8003, 1, int(fin) << 24 | len(payload)) + payload


def control(kind: int, payload: bytes, version: int = 3) -> bytes:
    return struct.pack(">HHI", 0x8000 | version, kind, len(payload)) + payload


def test_the_dictionary_is_the_specifications():
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=utf-8charset=iso-8859-1,utf-,*,enq=0.")


def test_frames_are_read_however_the_bytes_are_cut():
    client = Client()
    error = {"streamtype": "error", "port": "8080", "requestid": "0"}
    data = {**error, "streamtype": "data"}
    sent = (
        client.syn_stream(1, error)
        + client.syn_stream(3, data)  # the second block depends on the first's context
        + spdy.data(3, b"GET / HTTP/1.1\r\n")
        + spdy.data(3, b"", fin=True)
        + control(6, struct.pack(">I", 1))  # PING
        + control(9, struct.pack(">II", 3, 1024))  # WINDOW_UPDATE: read, ignored
        + control(4, struct.pack(">I", 0))  # SETTINGS: likewise
        + control(3, struct.pack(">II", 3, spdy.CANCEL))
        + control(7, struct.pack(">II", 3, 0))  # GOAWAY
    )
    expected = [
        spdy.SynStream(1, error, False),
        spdy.SynStream(3, data, False),
        spdy.Data(3, b"GET / HTTP/1.1\r\n", False),
        spdy.Data(3, b"", True),
        spdy.Ping(1),
        spdy.RstStream(3, spdy.CANCEL),
        spdy.GoAway(3),
    ]
    assert spdy.FrameReader().feed(sent) == expected
    reader = spdy.FrameReader()
    assert [frame for i in range(len(sent)) for frame in reader.feed(sent[i : i + 1])] == expected


def test_what_the_server_writes_is_what_a_client_reads():
    client, headers = Client(), spdy.HeaderCompressor()
    for stream_id in (1, 3):  # replies share one compression context, in order
        reply = spdy.syn_reply(headers, stream_id)
        first, flags_length, sid = struct.unpack_from(">III", reply)
        assert (first, sid, flags_length & spdy.MAX_FRAME) == (
            0x80030002,
            stream_id,
            len(reply) - 8,
        )
        assert client.replies.decompress(reply[12:]) == b"\x00\x00\x00\x00"  # no headers
    assert spdy.data(5, b"abc", fin=True) == struct.pack(">II", 5, 1 << 24 | 3) + b"abc"
    assert spdy.ping(7) == control(6, struct.pack(">I", 7))
    assert spdy.rst_stream(5, spdy.PROTOCOL_ERROR) == control(3, struct.pack(">II", 5, 1))
    big = spdy.data(1, b"x" * (spdy.MAX_FRAME + 5), fin=True)
    frames = spdy.FrameReader(max_frame=spdy.MAX_FRAME).feed(big)
    assert [(len(f.data), f.fin) for f in frames] == [(spdy.MAX_FRAME, False), (5, True)]


@pytest.mark.parametrize(
    ("sent", "problem"),
    [
        (control(6, struct.pack(">I", 1), version=2), "SPDY version 2, not 3"),
        (control(1, struct.pack(">IIBB", 1, 0, 0, 0) + b"not zlib"), "malformed control frame"),
        (control(3, b"\x00"), "malformed control frame"),
        (spdy.data(1, b"x" * (spdy.MAX_READ + 1)), "a frame of 1048577 bytes"),
    ],
)
def test_a_frame_that_breaks_the_protocol_is_an_error(sent, problem):
    with pytest.raises(spdy.SpdyError, match=problem):
        spdy.FrameReader().feed(sent)


def test_a_header_block_that_lies_about_its_lengths_is_an_error():
    with pytest.raises(spdy.SpdyError, match="malformed header block"):
        spdy.decode_headers(struct.pack(">II", 1, 99) + b"port")
