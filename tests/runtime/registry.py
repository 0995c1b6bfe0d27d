"""A container registry for tests: the OCI distribution API's pull side (GET /v2/, manifests,
blobs), over HTTP on 127.0.0.1, behind HTTP basic authentication, serving one image saved from
the local engine as an OCI layout. No registry can be reached from the test machines, so this
is how a pull with credentials is exercised end to end."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import threading
from pathlib import Path

from aiohttp import web

from tidal.runtime.local import free_port


class Registry:
    """`with Registry(engine, image, tmp, "user", "password") as r:` serves `image` as
    `r.reference` (127.0.0.1:PORT/tidal/example:1) until the block ends."""

    repository, tag = "tidal/example", "1"

    def __init__(self, engine: str, image: str, folder: Path, user: str, password: str) -> None:
        self.layout = folder / "layout"
        subprocess.run(
            [engine, "save", "--format", "oci-dir", "-o", str(self.layout), image],
            check=True,
            capture_output=True,
        )
        self.credentials = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.reference = f"{self.address}/{self.repository}:{self.tag}"
        self.refused = 0  # requests without the right credentials
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def registries_conf(self, folder: Path) -> Path:
        """A registries.conf that lets the engine speak plain HTTP to this registry."""
        path = folder / "registries.conf"
        path.write_text(f'[[registry]]\nlocation = "{self.address}"\ninsecure = true\n')
        return path

    def __enter__(self) -> Registry:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app())
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def _blob(self, digest: str) -> bytes:
        return (self.layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()

    def _app(self) -> web.Application:
        manifest = json.loads((self.layout / "index.json").read_text())["manifests"][0]

        @web.middleware
        async def authenticate(request: web.Request, handler):  # type: ignore[no-untyped-def]
            if request.headers.get("Authorization") != self.credentials:
                self.refused += 1
                return web.json_response(
                    {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                    status=401,
                    headers={"WWW-Authenticate": 'Basic realm="tidal-test"'},
                )
            return await handler(request)

        async def version(_: web.Request) -> web.Response:
            return web.json_response({})

        async def manifests(request: web.Request) -> web.Response:
            if request.match_info["reference"] not in (self.tag, manifest["digest"]):
                return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
            return web.Response(
                body=self._blob(manifest["digest"]),
                headers={
                    "Content-Type": manifest["mediaType"],
                    "Docker-Content-Digest": manifest["digest"],
                },
            )

        async def blobs(request: web.Request) -> web.Response:
            digest = request.match_info["digest"]
            return web.Response(body=self._blob(digest), headers={"Docker-Content-Digest": digest})

        app = web.Application(middlewares=[authenticate])
        app.router.add_get("/v2/", version)
        app.router.add_get(f"/v2/{self.repository}/manifests/{{reference}}", manifests)
        app.router.add_get(f"/v2/{self.repository}/blobs/{{digest}}", blobs)
        return app
