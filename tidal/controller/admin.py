"""The admin API: Kubernetes-style paths and objects over HTTP, plus /metrics and /healthz.

Paths:
  GET    /apis/serving.knative.dev/v1[/namespaces/{ns}]/{services|revisions|routes}[/{name}]
  DELETE /apis/serving.knative.dev/v1/namespaces/{ns}/services/{name}
  POST   /apis/tidal.dev/v1/apply[?dryRun=true]       body: {"items": [Service, ...]}
  GET    /apis/tidal.dev/v1[/namespaces/{ns}]/replicas
  GET    /apis/tidal.dev/v1/namespaces/{ns}/services/{name}/logs[?revision=R&tail=N]
  GET    /apis/scheduling.alibabacloud.com/v1alpha1[/namespaces/{ns}]/resourcepolicies[/{name}]
  DELETE /apis/scheduling.alibabacloud.com/v1alpha1/namespaces/{ns}/resourcepolicies/{name}
  GET    /apis/tidal.dev/v1/namespaces/{ns}/services/{name}/forecast
  POST   /apis/tidal.dev/v1/namespaces/{ns}/services/{name}/history
         body: {"timestamps": [epoch, ...], "values": [...], "field": "avg_concurrency"}
  GET    /apis/tidal.dev/v1/gateway/state              routing state for gateway processes
  POST   /apis/tidal.dev/v1/gateway/stats              their per-second stats
  POST   /apis/tidal.dev/v1/gateway/poke               a first request at zero
  GET    /apis/tidal.dev/v1/pools
  GET    /apis/tidal.dev/v1/cost[?start=EPOCH&end=EPOCH]
  GET    /apis/tidal.dev/v1/info
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tidal.api.errors import InvalidSpec
from tidal.controller import kubeapi
from tidal.controller.platform import Platform
from tidal.store.sqlite import Conflict

KINDS = {
    "services": "Service",
    "revisions": "Revision",
    "routes": "Route",
    "resourcepolicies": "ResourcePolicy",
}
KNATIVE = "/apis/serving.knative.dev/v1"
SCHEDULING = "/apis/scheduling.alibabacloud.com/v1alpha1"
TIDAL = "/apis/tidal.dev/v1"


def error(status: int, message: str, field: str = "") -> web.Response:
    return web.json_response(
        {"kind": "Status", "status": "Failure", "code": status, "message": message, "field": field},
        status=status,
    )


def build_app(platform: Platform, info: dict[str, Any]) -> web.Application:
    def as_list(items: list[dict[str, Any]]) -> web.Response:
        return web.json_response({"apiVersion": "v1", "kind": "List", "items": items})

    def view(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        return platform.live_revision(obj) if kind == "Revision" else obj

    async def list_objects(request: web.Request) -> web.Response:
        kind = KINDS.get(request.match_info["plural"])
        if kind is None:
            return error(404, f"unknown resource {request.match_info['plural']!r}")
        namespace = request.match_info.get("ns")
        return as_list([view(kind, o) for o in platform.store.list(kind, namespace)])

    async def get_object(request: web.Request) -> web.Response:
        kind = KINDS.get(request.match_info["plural"])
        if kind is None:
            return error(404, f"unknown resource {request.match_info['plural']!r}")
        ns, name = request.match_info["ns"], request.match_info["name"]
        obj = platform.store.get(kind, ns, name)
        if obj is None:
            return error(404, f'{request.match_info["plural"]} "{name}" not found in {ns}')
        return web.json_response(view(kind, obj))

    async def delete_object(request: web.Request) -> web.Response:
        plural = request.match_info["plural"]
        deleters = {"services": platform.delete_service, "resourcepolicies": platform.delete_policy}
        if plural not in deleters:
            return error(405, f"{plural} cannot be deleted; revisions and routes follow services")
        ns, name = request.match_info["ns"], request.match_info["name"]
        if not deleters[plural](ns, name):
            return error(404, f'{plural} "{name}" not found in {ns}')
        return web.json_response({"kind": "Status", "status": "Success"})

    async def apply(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return error(400, "body is not JSON")
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return error(400, 'body must be {"items": [object, ...]}')
        try:
            applied = platform.apply(items, dry_run=request.query.get("dryRun") == "true")
        except InvalidSpec as exc:
            return error(422, str(exc), exc.field)
        except Conflict as exc:
            return error(409, str(exc))
        return as_list(applied)

    async def replicas(request: web.Request) -> web.Response:
        return as_list(platform.replicas(request.match_info.get("ns")))

    async def logs(request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        if platform.store.get("Service", ns, name) is None:
            return error(404, f'services "{name}" not found in {ns}')
        try:
            tail = int(request.query.get("tail", "100"))
        except ValueError:
            return error(400, "tail must be an integer")
        text = platform.logs(ns, name, request.query.get("revision"), tail)
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
            body = await request.json()
            timestamps, values = body["timestamps"], body["values"]
            field = body.get("field", "avg_concurrency")
            if len(timestamps) != len(values):
                raise ValueError("timestamps and values differ in length")
            minutes = platform.import_history(ns, name, timestamps, values, field)
        except InvalidSpec as exc:
            return error(404, str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            return error(400, f"bad history: {exc}")
        return web.json_response({"kind": "Status", "status": "Success", "minutes": minutes})

    async def gateway_state(_: web.Request) -> web.Response:
        return web.json_response(platform.gateway_state())

    async def gateway_stats(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            platform.gateway_stats(str(body["gateway"]), dict(body["revisions"]))
        except (ValueError, KeyError, TypeError) as exc:
            return error(400, f"bad stats: {exc}")
        return web.json_response({"kind": "Status", "status": "Success"})

    async def gateway_poke(request: web.Request) -> web.Response:
        try:
            platform.gateway_poke(str((await request.json())["revision"]))
        except (ValueError, KeyError, TypeError) as exc:
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

    app = web.Application(client_max_size=16 * 1024 * 1024)
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
    app.router.add_post(f"{TIDAL}/gateway/stats", gateway_stats)
    app.router.add_post(f"{TIDAL}/gateway/poke", gateway_poke)
    app.router.add_get(f"{TIDAL}/pools", pools)
    app.router.add_get(f"{TIDAL}/cost", cost)
    for group in (KNATIVE, SCHEDULING):
        app.router.add_get(f"{group}/{{plural}}", list_objects)
        app.router.add_get(f"{group}/namespaces/{{ns}}/{{plural}}", list_objects)
        app.router.add_get(f"{group}/namespaces/{{ns}}/{{plural}}/{{name}}", get_object)
        app.router.add_delete(f"{group}/namespaces/{{ns}}/{{plural}}/{{name}}", delete_object)
    return app
