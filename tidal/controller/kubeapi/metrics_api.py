"""The resource metrics API (`metrics.k8s.io/v1beta1`) for `kubectl top pod` on one machine
(docs/kubectl.md#pods): each replica's CPU and memory as tidal measures them for autoscaling
(tidal.runtime.resources), under the serving container, which is what is measured.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tidal.controller.kubeapi.pods import pods
from tidal.controller.kubeapi.selection import matcher
from tidal.controller.kubeapi.status import not_found
from tidal.controller.platform import Platform

GROUP = "metrics.k8s.io"
GROUP_VERSION = f"{GROUP}/v1beta1"
WINDOW = "10s"  # about how long each reading is averaged over (the sampler's period)


def group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": "v1beta1"}
    return {"name": GROUP, "versions": [version], "preferredVersion": version}


def resource_list() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": "pods",
                "singularName": "",
                "namespaced": True,
                "kind": "PodMetrics",
                "verbs": ["get", "list"],
            }
        ],
    }


def pod_metrics(platform: Platform, namespace: str | None) -> list[dict[str, Any]]:
    """A PodMetrics for each replica measured so far (a replica just started has none yet,
    as a pod has none before the metrics server's first scrape)."""
    measured = {
        (item["namespace"], item["name"]): item
        for item in platform.replicas(namespace)
        if item.get("cpuCores") is not None or item.get("memoryBytes") is not None
    }
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    found = []
    for pod in pods(platform.workloads.values(), namespace):
        meta = pod["metadata"]
        item = measured.get((meta["namespace"], meta["name"]))
        if item is None:
            continue
        usage = {
            "cpu": f"{round((item.get('cpuCores') or 0.0) * 1e9)}n",
            "memory": f"{(item.get('memoryBytes') or 0) // 1024}Ki",
        }
        container = pod["spec"]["containers"][0]["name"]  # the serving one: what is measured
        found.append(
            {
                "kind": "PodMetrics",
                "apiVersion": GROUP_VERSION,
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "labels": meta["labels"],
                    "creationTimestamp": meta.get("creationTimestamp", now),
                },
                "timestamp": now,
                "window": WINDOW,
                "containers": [{"name": container, "usage": usage}],
            }
        )
    return found


def add_metrics_routes(router: web.UrlDispatcher, platform: Platform) -> None:
    async def listed(request: web.Request) -> web.StreamResponse:
        match = matcher(request.query)
        items = [m for m in pod_metrics(platform, request.match_info.get("ns")) if match(m)]
        return web.json_response(
            {
                "kind": "PodMetricsList",
                "apiVersion": GROUP_VERSION,
                "metadata": {},
                "items": items,
            }
        )

    async def one(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        for item in pod_metrics(platform, request.match_info["ns"]):
            if item["metadata"]["name"] == name:
                return web.json_response(item)
        return not_found("pods.metrics.k8s.io", name).response()

    async def api_group(_: web.Request) -> web.StreamResponse:
        return web.json_response({"kind": "APIGroup", "apiVersion": "v1", **group()})

    async def resources(_: web.Request) -> web.StreamResponse:
        return web.json_response(resource_list())

    base = f"/apis/{GROUP_VERSION}"
    router.add_get(f"/apis/{GROUP}", api_group)
    router.add_get(base, resources)
    router.add_get(f"{base}/pods", listed)
    router.add_get(f"{base}/namespaces/{{ns}}/pods", listed)
    router.add_get(f"{base}/namespaces/{{ns}}/pods/{{name}}", one)
