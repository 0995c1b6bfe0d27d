"""A minimal keep-alive HTTP/1.1 server answering `200 ok` to everything (uvloop + httptools).

The benchmark's upstream when nginx is not installed: `python bench/upstream.py PORT`.
"""

from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop

_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class _Ok(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(_RESPONSE)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Ok, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
