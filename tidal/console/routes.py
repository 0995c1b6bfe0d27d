"""The console's routes on the admin app.

Pages and assets under /console/ hold no data and need no token (a page without the session
cookie redirects to the login page); everything they show comes from JSON under
/apis/tidal.dev/v1/console/ and the rest of the admin API, which the admin guard protects: the
bearer token, or the console's HttpOnly SameSite=Strict cookie (docs/console.md#security).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from tidal.console.sampler import Sampler
from tidal.console.views import WINDOWS, history_series, live_series, service_detail, service_rows
from tidal.controller.admin import (
    CONSOLE_COOKIE,
    TIDAL,
    AdminSecurity,
    authenticated,
    error,
    read_json,
)

STATIC = Path(str(resources.files("tidal.console") / "static"))
API = f"{TIDAL}/console"
COOKIE_MAX_AGE_S = 7 * 86400
EVENT_PERIOD_S = 1.0
PAGE_HEADERS = {
    # Every script and style is a file of the package; no page may frame the console.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
PAGES = ("/console/", "/console/pools", "/console/cost", "/console/services/{ns}/{name}")


def _file(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers=PAGE_HEADERS)


def mount(app: web.Application, platform: Any, security: AdminSecurity) -> None:
    """Register the console on the admin app `app` of `platform`."""
    sampler = Sampler(platform)
    stopping = asyncio.Event()

    async def start(_: web.Application) -> None:
        sampler.start()

    async def stop(_: web.Application) -> None:
        stopping.set()  # open event streams end, so shutdown does not wait for browsers
        await sampler.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)

    async def root(_: web.Request) -> web.Response:
        raise web.HTTPFound("/console/")

    async def page(request: web.Request) -> web.StreamResponse:
        if not authenticated(request, security):
            raise web.HTTPFound("/console/login")
        return _file("page.html")

    async def login_page(_: web.Request) -> web.StreamResponse:
        return _file("login.html")

    async def login(request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
            token = str(body["token"]).strip()
        except (ValueError, KeyError, TypeError):
            return error(400, 'body must be {"token": "..."}')
        if not hmac.compare_digest(token.encode(), security.token.encode()):
            return error(401, "wrong token: it is the file admin-token in the platform's data dir")
        response = web.json_response({"kind": "Status", "status": "Success"})
        response.set_cookie(
            CONSOLE_COOKIE,
            token,
            max_age=COOKIE_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )
        return response

    async def logout(_: web.Request) -> web.Response:
        response = web.json_response({"kind": "Status", "status": "Success"})
        response.del_cookie(CONSOLE_COOKIE, path="/")
        return response

    async def services(_: web.Request) -> web.Response:
        return web.json_response({"items": service_rows(platform, sampler)})

    async def service(request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        detail = service_detail(platform, sampler, ns, name)
        if detail is None:
            return error(404, f'services "{name}" not found in {ns}')
        return web.json_response(detail)

    async def series(request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        detail = service_detail(platform, sampler, ns, name)
        if detail is None:
            return error(404, f'services "{name}" not found in {ns}')
        window = request.query.get("window", "hour")
        revisions = [r["name"] for r in detail["revisions"]]
        if window == "hour":
            return web.json_response(live_series(sampler, ns, revisions, 3600))
        if window not in WINDOWS:
            return error(400, f"window must be one of hour, {', '.join(WINDOWS)}; not {window!r}")
        return web.json_response(history_series(platform, sampler, ns, name, revisions, window))

    async def events(request: web.Request) -> web.StreamResponse:
        """Server-sent events: the services table each second and, with ?service=NS/NAME,
        that service's newest per-second point."""
        ns, _, name = request.query.get("service", "").partition("/")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        while not stopping.is_set():
            event: dict[str, Any] = {"services": service_rows(platform, sampler)}
            if name:
                detail = service_detail(platform, sampler, ns, name)
                if detail is not None:
                    revisions = [r["name"] for r in detail["revisions"]]
                    event["point"] = live_series(sampler, ns, revisions, 2)
                    event["revisions"] = detail["revisions"]
            try:
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            except ConnectionResetError:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), EVENT_PERIOD_S)
        return response

    app.router.add_get("/", root)
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/console/login", login_page)
    app.router.add_post("/console/session", login)
    app.router.add_delete("/console/session", logout)
    app.router.add_static("/console/static", STATIC)
    app.router.add_get(f"{API}/services", services)
    app.router.add_get(f"{API}/services/{{ns}}/{{name}}", service)
    app.router.add_get(f"{API}/services/{{ns}}/{{name}}/series", series)
    app.router.add_get(f"{API}/events", events)
