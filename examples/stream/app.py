"""A token-streaming text model for tidal: a word bigram model, aiohttp and numpy.

    PORT=8000 python examples/stream/app.py

It stands in for an LLM server: at start it learns which word follows which from the text below
(no download), sleeps MODEL_LOAD_DELAY seconds (default 1) as if loading weights, then
listens. Each token (one word) takes TOKEN_DELAY_MS (default 20) of simulated compute, so a
completion streams for a while, as real ones do.

POST /v1/completions  {"prompt": "...", "max_tokens": 64, "stream": false}
                      -> {"text": "...", "tokens": N}; with "stream": true, server-sent events:
                      `data: {"token": "word "}` per token, then `data: [DONE]`
GET  /v1/stream       WebSocket: send {"prompt": "...", "max_tokens": 64}, receive
                      {"token": "word "} per token and then {"done": true, "tokens": N}; as many
                      prompts as you like on one connection
GET  /                model info        GET /healthz  200 (the server listens once loaded)
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

CORPUS = """\
a model is loaded once and then it answers many requests. the first request after a quiet night
waits for the weights to load, and every request after it is quick. a serverless platform keeps
no replica when nobody asks, starts one when somebody does, and starts it early when it knows
that somebody will. tokens stream back one at a time, so the reader sees the answer grow while
the model is still thinking about the rest of it. the cheapest replica is the one that is not
running; the fastest is the one that is already warm.
"""
MAX_TOKENS = 512
REVISION = os.environ.get("K_REVISION", "standalone")


class BigramModel:
    """Which word follows which in CORPUS, by counting; a token is a word and its space."""

    def __init__(self, text: str) -> None:
        words = text.split()
        self.vocabulary = sorted(set(words))
        self.index = {w: i for i, w in enumerate(self.vocabulary)}
        counts = np.full((len(self.vocabulary), len(self.vocabulary)), 1e-3)  # never stuck
        codes = [self.index[w] for w in words]
        np.add.at(counts, (codes[:-1], codes[1:]), 1.0)
        self.probabilities = counts / counts.sum(axis=1, keepdims=True)

    def tokens(self, prompt: str, count: int) -> Iterator[str]:
        """`count` words continuing `prompt`; the same prompt always gives the same text."""
        rng = np.random.default_rng(zlib.crc32(prompt.encode()))
        last_word = prompt.split()[-1].lower() if prompt.split() else ""
        last = self.index.get(last_word, self.index["the"])
        for _ in range(count):
            last = int(rng.choice(len(self.vocabulary), p=self.probabilities[last]))
            yield self.vocabulary[last] + " "


class BadRequest(Exception):
    pass


def parse_prompt(payload: Any) -> tuple[str, int]:
    if not isinstance(payload, dict) or not isinstance(payload.get("prompt"), str):
        raise BadRequest('send an object with a "prompt" string')
    count = payload.get("max_tokens", 64)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_TOKENS:
        raise BadRequest(f'"max_tokens" must be an integer from 1 to {MAX_TOKENS}')
    return payload["prompt"], count


class Server:
    def __init__(self, model: BigramModel, token_delay_s: float, info: dict[str, Any]) -> None:
        self.model = model
        self.token_delay_s = token_delay_s
        self.info = info

    async def generate(self, prompt: str, count: int) -> AsyncIterator[str]:
        for token in self.model.tokens(prompt, count):
            await asyncio.sleep(self.token_delay_s)  # the model "thinking"
            yield token

    async def completions(self, request: web.Request) -> web.StreamResponse:
        try:
            payload = json.loads(await request.read())
            prompt, count = parse_prompt(payload)
        except (ValueError, BadRequest) as err:
            return web.json_response({"error": str(err)}, status=400)
        if not payload.get("stream"):
            text = "".join([t async for t in self.generate(prompt, count)])
            return web.json_response({"text": text, "tokens": count, "revision": REVISION})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for token in self.generate(prompt, count):
            await response.write(b"data: %s\n\n" % json.dumps({"token": token}).encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30)
        await ws.prepare(request)
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                prompt, count = parse_prompt(json.loads(message.data))
            except (ValueError, BadRequest) as err:
                await ws.send_json({"error": str(err)})
                continue
            async for token in self.generate(prompt, count):
                await ws.send_json({"token": token})
            await ws.send_json({"done": True, "tokens": count, "revision": REVISION})
        return ws

    async def root(self, request: web.Request) -> web.Response:
        return web.json_response(self.info)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")


def main() -> None:
    started = time.monotonic()
    model = BigramModel(CORPUS)
    time.sleep(float(os.environ.get("MODEL_LOAD_DELAY", "1")))
    info = {
        "model": "word bigram",
        "vocabulary": len(model.vocabulary),
        "revision": REVISION,
        "load_seconds": round(time.monotonic() - started, 3),
    }
    server = Server(model, float(os.environ.get("TOKEN_DELAY_MS", "20")) / 1000, info)
    app = web.Application()
    app.router.add_post("/v1/completions", server.completions)
    app.router.add_get("/v1/stream", server.stream)
    app.router.add_get("/", server.root)
    app.router.add_get("/healthz", server.healthz)
    port = int(os.environ.get("PORT", "8080"))
    print(f"stream model ({REVISION}) listening on 127.0.0.1:{port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, shutdown_timeout=5)


if __name__ == "__main__":
    main()
