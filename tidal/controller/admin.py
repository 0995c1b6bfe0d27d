"""The admin API: the Kubernetes API for tidal's kinds (tidal.controller.kubeapi, which serves
Services, Revisions, Routes, Configurations, DomainMappings, ResourcePolicies and Events at their
Kubernetes paths, docs/kubectl.md), tidal's own paths, /metrics and /healthz.

tidal's own paths:
  POST   /apis/tidal.dev/v1/apply[?dryRun=true]       body: {"items": [Service, ...]}
  GET    /apis/tidal.dev/v1[/namespaces/{ns}]/replicas
  GET    /apis/tidal.dev/v1/namespaces/{ns}/services/{name}/logs[?revision=R&tail=N&follow=true]
  GET    /apis/tidal.dev/v1/namespaces/{ns}/services/{name}/forecast
  POST   /apis/tidal.dev/v1/namespaces/{ns}/services/{name}/history
         body: {"timestamps": [epoch, ...], "values": [...], "field": "avg_concurrency"}
  GET    /apis/tidal.dev/v1/gateway/state[?epoch=E&since=V&wait=S]
                                                        routing state for gateway processes
                                                        (what changed since V; a long poll)
  POST   /apis/tidal.dev/v1/gateway/stats              their per-second stats
  POST   /apis/tidal.dev/v1/gateway/poke               a first request at zero, or a replica
                                                        that refused a connection
  GET    /apis/tidal.dev/v1/pools
  GET    /apis/tidal.dev/v1/cost[?start=EPOCH&end=EPOCH]
  GET    /apis/tidal.dev/v1/info

Every path but /healthz (and /metrics, unless configured otherwise) needs the platform's bearer
token; a request from a browser page of another origin, or a mutating call whose body is not
JSON (or kubectl's YAML apply patch), is refused before any handler runs (docs/security.md).
Errors are JSON `Status` objects with a message that says what failed, never a bare "Internal
Server Error".
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tidal.api.errors import InvalidSpec
from tidal.api.limits import MAX_BODY_BYTES, check_metadata, parse_json
from tidal.controller.kubeapi import server as kubeapi
from tidal.controller.kubeapi.protobuf import CONTENT_TYPE as PROTOBUF
from tidal.controller.kubeapi.status import NO_SUCH_PATH, reason_for
from tidal.controller.logstream import follow_logs, follow_pod_logs
from tidal.controller.platform import Platform
from tidal.gateway.feed import feed_of
from tidal.runtime.base import FollowsLogs
from tidal.security.credentials import TOKEN_HEADER, local_urls
from tidal.store.sqlite import Conflict, StoreError

TIDAL = "/apis/tidal.dev/v1"


MUTATING = ("POST", "PUT", "PATCH", "DELETE")
# kubectl's server-side apply body; the JSON kinds (merge, JSON and strategic merge patches)
# match `application/*+json`. A browser page can send none of them cross-site without a CORS
# preflight, unlike text/plain, forms and multipart (the CSRF that the 415 keeps out).
APPLY_PATCH_YAML = "application/apply-patch+yaml"
CONSOLE_COOKIE = "tidal_console"  # the web console's session: the token, HttpOnly, SameSite=Strict
CONSOLE_PAGES = "/console/"  # the console's pages and assets: no data, no token (docs/console.md)
log = logging.getLogger("tidal.admin")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class AdminSecurity:
    """Who may call the admin API: holders of `token`, from no browser origin but `origins`."""

    token: str
    origins: frozenset[str] = frozenset()
    open_paths: frozenset[str] = field(default_factory=lambda: frozenset({"/healthz", "/metrics"}))


def own_origins(scheme: str, host: str, port: int) -> frozenset[str]:
    """The browser origins of an admin API listening on host:port (its own pages, if any)."""
    return frozenset(local_urls(scheme, host, port))


def error(
    status: int, message: str, field: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "reason": reason_for(status),
        "code": status,
        "message": message,
        "field": field,
    }
    return web.json_response(body, status=status, headers=headers)


def _bearer(request: web.Request) -> str:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    return request.headers.get(TOKEN_HEADER, "").strip()


def body_type_allowed(content_type: str) -> bool:
    """Whether a mutating call may carry a body of this (parameterless, lower-case) type: JSON,
    kubectl's YAML apply patch, or the protobuf of kubectl's typed commands. None is a type a
    web page's form can send."""
    kind, _, subtype = content_type.partition("/")
    return kind == "application" and (
        subtype == "json"
        or subtype.endswith("+json")
        or content_type in (APPLY_PATCH_YAML, PROTOBUF)
    )


def authenticated(request: web.Request, security: AdminSecurity) -> bool:
    """The bearer token, or the console's cookie. A mutating call is taken on the cookie only
    with this admin API's own Origin (browsers send it; another site's page cannot), so a
    cookie never makes a cross-site request count (docs/console.md#security)."""
    supplied = _bearer(request)
    origin = request.headers.get("Origin", "").rstrip("/")
    if not supplied and (request.method not in MUTATING or origin in security.origins):
        supplied = request.cookies.get(CONSOLE_COOKIE, "")
    return bool(supplied) and hmac.compare_digest(supplied.encode(), security.token.encode())


def guard(security: AdminSecurity) -> Any:
    """Refuse foreign browser origins (403), missing or wrong tokens (401) and mutating calls
    whose body is not JSON, kubectl's YAML apply patch or its protobuf (415), in that order."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") not in security.origins:
            return error(
                403,
                f"cross-origin request refused: Origin {origin!r} is not this admin API's own; "
                "web pages may not call the admin API",
            )
        public = request.path in security.open_paths or request.path == "/"
        if not (public or request.path.startswith(CONSOLE_PAGES)) and not authenticated(
            request, security
        ):
            return error(
                401,
                "unauthorized: the admin API needs its bearer token (Authorization: Bearer ...). "
                "A CLI on the machine that ran `tidal up` finds it by itself; elsewhere pass "
                "--token or TIDAL_TOKEN (the token is the file admin-token in the platform's data "
                "dir)",
                headers={"WWW-Authenticate": 'Bearer realm="tidal"'},
            )
        # A bodiless DELETE, or a protocol upgrade (kubectl exec's SPDY POST, which exec
        # answers itself; a browser cannot set Upgrade), carries nothing to check.
        upgrade = "Upgrade" in request.headers
        has_body = request.body_exists or not (request.method == "DELETE" or upgrade)
        if request.method in MUTATING and has_body and not body_type_allowed(request.content_type):
            return error(
                415,
                f"unsupported content type {request.headers.get('Content-Type', '(none)')!r}: "
                "calls that change state take application/json (or application/*+json, "
                f"{APPLY_PATCH_YAML})",
            )
        return await handler(request)

    return middleware


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as a JSON Status that says what failed."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:  # no route: Kubernetes' words, which kubectl users know
            return error(404, f"{NO_SUCH_PATH} ({request.method} {request.path})")
        return error(exc.status, exc.text or exc.reason)
    except StoreError as exc:
        log.error("%s %s: %s", request.method, request.path, exc)
        return error(507 if exc.full else 503, str(exc))
    except InvalidSpec as exc:
        return error(422, str(exc), exc.field)
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")


async def read_json(request: web.Request) -> Any:
    """The body as JSON within tidal's limits; InvalidSpec (not JSON, too deep) otherwise."""
    try:
        return parse_json(await request.read())
    except ValueError as exc:
        if isinstance(exc, InvalidSpec):
            raise InvalidSpec("", f"body refused: {exc}") from None
        raise InvalidSpec("", "body is not JSON") from None


def build_app(platform: Platform, info: dict[str, Any], security: AdminSecurity) -> web.Application:
    closing = asyncio.Event()  # set at shutdown: log streams end

    def as_list(items: list[dict[str, Any]]) -> web.Response:
        return web.json_response({"apiVersion": "v1", "kind": "List", "items": items})

    async def apply(request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
        except InvalidSpec as exc:
            return error(400, str(exc))
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return error(400, 'body must be {"items": [object, ...]}')
        query = request.query
        try:
            for index, item in enumerate(items):
                try:
                    check_metadata(item)
                except InvalidSpec as exc:
                    where = f"document {index + 1}: {exc.field}" if len(items) > 1 else exc.field
                    raise InvalidSpec(where, exc.message) from None
            applied = platform.apply_detailed(
                items, query.get("dryRun") == "true", query.get("force") == "true"
            )
        except InvalidSpec as exc:
            return error(422, str(exc), exc.field)
        except Conflict as exc:
            return error(409, str(exc))
        # `results[i]` says what happened to `items[i]`: created, configured or unchanged.
        return web.json_response(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [d for d, _ in applied],
                "results": [r for _, r in applied],
            }
        )

    async def replicas(request: web.Request) -> web.Response:
        return as_list(platform.replicas(request.match_info.get("ns")))

    async def logs(request: web.Request) -> web.StreamResponse:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if platform.store.get("Service", ns, name) is None:
            return error(404, f'services "{name}" not found in {ns}')
        try:
            tail = int(request.query.get("tail", "100"))
        except ValueError:
            tail = -1
        if tail < 0:
            return error(400, "tail must be a whole number >= 0")
        revision = request.query.get("revision")
        if request.query.get("follow") in ("true", "1"):
            if platform.runtime.keeps_log_files:
                follow = follow_logs
            elif isinstance(platform.runtime, FollowsLogs):  # pods, followed as they write
                follow = follow_pod_logs
            else:
                return error(
                    501,
                    "following logs needs the replicas' log files, or a runtime that follows "
                    "its pods' logs: "
                    f"kubectl logs -f -l serving.knative.dev/service={name} -n {ns}",
                )
            return await follow(request, platform, (ns, name), revision, tail, closing)
        text = await platform.logs(ns, name, revision, tail)
        return web.Response(text=text + "\n" if text else "")

    async def forecast(request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if platform.store.get("Service", ns, name) is None:
            return error(404, f'services "{name}" not found in {ns}')
        try:
            return web.json_response(await platform.forecast(ns, name))
        except InvalidSpec as exc:
            return error(409, str(exc))

    async def import_history(request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        try:
            body = await read_json(request)
        except InvalidSpec as exc:
            return error(400, str(exc))
        if not isinstance(body, dict) or not {"timestamps", "values"} <= body.keys():
            return error(400, "bad history: expected an object with timestamps and values lists")
        try:
            imported = platform.import_history(
                ns, name, body["timestamps"], body["values"], body.get("field", "avg_concurrency")
            )
        except InvalidSpec as exc:
            return error(404, str(exc))
        except (ValueError, TypeError) as exc:
            return error(400, f"bad history: {exc}")
        first, last = imported.bounds() or (None, None)
        return web.json_response(
            {
                "kind": "Status",
                "status": "Success",
                "minutes": imported.minutes,
                "tooOld": imported.too_old,
                "from": first,
                "to": last,
            }
        )

    async def gateway_state(request: web.Request) -> web.Response:
        query = request.query
        try:
            since = int(query.get("since", "0"))
            wait_s = min(max(float(query.get("wait", "0")), 0.0), 60.0)
        except ValueError:
            return error(400, "since must be an integer and wait a number of seconds")
        return web.json_response(
            await platform.gateway_state(
                query.get("epoch", ""), since, wait_s, query.get("gateway", "")
            )
        )

    async def gateway_stats(request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
            platform.gateway_stats(str(body["gateway"]), dict(body["revisions"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return error(400, f"bad stats: {exc}")
        return web.json_response({"kind": "Status", "status": "Success"})

    async def gateway_poke(request: web.Request) -> web.Response:
        try:
            body = await read_json(request)
            unreachable = body.get("unreachable")
            platform.gateway_poke(
                str(body["revision"]), None if unreachable is None else str(unreachable)
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return error(400, f"bad poke: {exc}")
        return web.json_response({"kind": "Status", "status": "Success"})

    async def pools(_: web.Request) -> web.Response:
        return as_list(platform.pool_usage())

    async def cost(request: web.Request) -> web.Response:
        try:
            now = time.time()
            start = float(request.query.get("start", 0))
            end = float(request.query.get("end", now))
        except ValueError:
            return error(400, "start and end must be epoch seconds")
        return as_list(platform.cost(start, end, now))

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def get_info(_: web.Request) -> web.Response:
        return web.json_response(info)

    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[json_errors, guard(security)]
    )
    kubeapi.add_routes(app, platform)  # first: the Kubernetes API answers its standard paths
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get(f"{TIDAL}/info", get_info)
    app.router.add_post(f"{TIDAL}/apply", apply)
    app.router.add_get(f"{TIDAL}/replicas", replicas)
    app.router.add_get(f"{TIDAL}/namespaces/{{ns}}/replicas", replicas)
    app.router.add_get(f"{TIDAL}/namespaces/{{ns}}/services/{{name}}/logs", logs)
    app.router.add_get(f"{TIDAL}/namespaces/{{ns}}/services/{{name}}/forecast", forecast)
    app.router.add_post(f"{TIDAL}/namespaces/{{ns}}/services/{{name}}/history", import_history)
    app.router.add_get(f"{TIDAL}/gateway/state", gateway_state)
    app.on_shutdown.append(lambda _: _release_long_polls(platform, closing))
    app.router.add_post(f"{TIDAL}/gateway/stats", gateway_stats)
    app.router.add_post(f"{TIDAL}/gateway/poke", gateway_poke)
    app.router.add_get(f"{TIDAL}/pools", pools)
    app.router.add_get(f"{TIDAL}/cost", cost)
    from tidal.console.routes import mount  # the web console (it imports this module)

    mount(app, platform, security)
    return app


async def _release_long_polls(platform: Platform, closing: asyncio.Event) -> None:
    """Shutdown: answer the gateways' waiting polls, and end log streams, now rather than wait
    them out."""
    feed_of(platform.router).release()
    closing.set()
