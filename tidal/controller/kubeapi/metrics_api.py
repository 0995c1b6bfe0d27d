"""The resource metrics API (`metrics.k8s.io/v1beta1`) for `kubectl top pod` and `kubectl top
node` on one machine (docs/kubectl.md#pods): each replica's CPU and memory as tidal measures
them for autoscaling (tidal.runtime.resources), under the serving container, which is what is
measured; a node's (a pool's, docs/kubectl.md#nodes) is the sum over the replicas placed on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
            },
            {
                "name": "nodes",
                "singularName": "",
                "namespaced": False,
                "kind": "NodeMetrics",
                "verbs": ["get", "list"],
            },
        ],
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _usage(cpu_cores: float, memory_bytes: int) -> dict[str, str]:
    return {"cpu": f"{round(cpu_cores * 1e9)}n", "memory": f"{memory_bytes // 1024}Ki"}


def node_metrics(platform: Platform) -> list[dict[str, Any]]:
    """A NodeMetrics for each pool: what its measured replicas use together."""
    totals = {pool["name"]: [0.0, 0] for pool in platform.pool_usage()}
    for item in platform.replicas():
        if item.get("pool") in totals:
            total = totals[item["pool"]]
            total[0] += item.get("cpuCores") or 0.0
            total[1] += item.get("memoryBytes") or 0
    now = _now()
    return [
        {
            "kind": "NodeMetrics",
            "apiVersion": GROUP_VERSION,
            "metadata": {"name": name, "creationTimestamp": now},
            "timestamp": now,
            "window": WINDOW,
            "usage": _usage(cpu, memory),
        }
        for name, (cpu, memory) in totals.items()
    ]


def pod_metrics(platform: Platform, namespace: str | None) -> list[dict[str, Any]]:
    """A PodMetrics for each replica measured so far (a replica just started has none yet,
    as a pod has none before the metrics server's first scrape)."""
    measured = {
        (item["namespace"], item["name"]): item
        for item in platform.replicas(namespace)
        if item.get("cpuCores") is not None or item.get("memoryBytes") is not None
    }
    now = _now()
    found = []
    for pod in pods(platform.workloads.values(), namespace):
        meta = pod["metadata"]
        item = measured.get((meta["namespace"], meta["name"]))
        if item is None:
            continue
        usage = _usage(item.get("cpuCores") or 0.0, item.get("memoryBytes") or 0)
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
    async def api_group(_: web.Request) -> web.StreamResponse:
        return web.json_response({"kind": "APIGroup", "apiVersion": "v1", **group()})

    async def resources(_: web.Request) -> web.StreamResponse:
        return web.json_response(resource_list())

    base = f"/apis/{GROUP_VERSION}"
    router.add_get(f"/apis/{GROUP}", api_group)
    router.add_get(base, resources)
    pods = _Served("pods", "PodMetrics", lambda ns: pod_metrics(platform, ns))
    router.add_get(f"{base}/pods", pods.listed)
    router.add_get(f"{base}/namespaces/{{ns}}/pods", pods.listed)
    router.add_get(f"{base}/namespaces/{{ns}}/pods/{{name}}", pods.one)
    nodes = _Served("nodes", "NodeMetrics", lambda _: node_metrics(platform))
    router.add_get(f"{base}/nodes", nodes.listed)
    router.add_get(f"{base}/nodes/{{name}}", nodes.one)


@dataclass(frozen=True)
class _Served:
    """The list and the item endpoints of one kind of metrics; `items(namespace)` measures."""

    plural: str
    kind: str
    items: Callable[[str | None], list[dict[str, Any]]]

    async def listed(self, request: web.Request) -> web.StreamResponse:
        match = matcher(request.query)
        items = [m for m in self.items(request.match_info.get("ns")) if match(m)]
        return web.json_response(
            {
                "kind": f"{self.kind}List",
                "apiVersion": GROUP_VERSION,
                "metadata": {},
                "items": items,
            }
        )

    async def one(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        for item in self.items(request.match_info.get("ns")):
            if item["metadata"]["name"] == name:
                return web.json_response(item)
        return not_found(f"{self.plural}.{GROUP}", name).response()
