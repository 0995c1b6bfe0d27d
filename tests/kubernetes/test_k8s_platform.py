"""The real controller (Platform) on the Kubernetes store and runtime, against the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes import client
from kubernetes.client import ApiClient

from tests.kubernetes.controllers import KEY, POLICY, SERVICE, Controllers, ready_all, replicas
from tests.kubernetes.emulator import FakeCluster, eventually
from tidal.controller import logstream
from tidal.controller.admin import AdminSecurity, build_app
from tidal.controller.platform import Platform


async def test_apply_stores_crs_and_creates_the_deployment(
    api: ApiClient, controllers: Controllers, cluster: FakeCluster
) -> None:
    platform = await controllers.start()
    platform.apply([copy.deepcopy(SERVICE)])
    crs = client.CustomObjectsApi(api)
    stored = crs.get_namespaced_custom_object(
        "serving.tidal.dev", "v1", "default", "services", "hello"
    )
    template = stored["spec"]["template"]  # the user's Knative spec, with Knative's defaults
    assert template["metadata"]["annotations"] == {"autoscaling.knative.dev/min-scale": "1"}
    assert template["spec"]["containers"][0]["image"] == "ghcr.io/example/hello:1"
    assert template["spec"]["timeoutSeconds"] == 300
    revision = crs.get_namespaced_custom_object(
        "serving.tidal.dev", "v1", "default", "revisions", "hello-00001"
    )
    deployment = await eventually(lambda: cluster.deployments().get("hello-00001-ecs"))
    await eventually(lambda: replicas(cluster) == {"hello-00001-ecs": 1})
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["serving.knative.dev/revision"] == "hello-00001"
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == revision["metadata"]["uid"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/example/hello:1"


async def test_knative_yaml_with_only_an_image_is_accepted_unchanged(
    controllers: Controllers, cluster: FakeCluster
) -> None:
    platform = await controllers.start()
    service = copy.deepcopy(SERVICE)
    del service["spec"]["template"]["spec"]["containers"][0]["command"]
    platform.apply([service])
    deployment = await eventually(lambda: cluster.deployments().get("hello-00001-ecs"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/example/hello:1" and "command" not in container


async def test_scale_out_fills_units_in_policy_order_and_scale_in_removes_elastic_first(
    controllers: Controllers, cluster: FakeCluster
) -> None:
    platform = await controllers.start()
    platform.apply([copy.deepcopy(POLICY), copy.deepcopy(SERVICE)])
    workload = platform.workloads[KEY]
    await eventually(lambda: replicas(cluster) == {"hello-00001-ecs": 1})
    # The test plays the autoscaler: the KPA's own first decision (min-scale 1) must not land
    # in the middle of it, whenever its first tick comes.
    platform.scaling.remove(KEY)
    workload.set_desired(4)
    await eventually(
        lambda: replicas(cluster) == {"hello-00001-ecs": 2, "hello-00001-eci": 2},
        message="2 on the reserved unit (its max), 2 on the elastic one",
    )
    eci = cluster.deployments()["hello-00001-eci"]["spec"]["template"]["spec"]
    assert eci["nodeSelector"] == {"type": "virtual-kubelet"}
    assert eci["tolerations"][0]["key"] == "virtual-kubelet.io/provider"
    await eventually(lambda: len(cluster.pods()) == 4)
    ready_all(cluster)
    await eventually(lambda: workload.ready_count() == 4, message="4 ready")

    workload.set_desired(3)
    await eventually(
        lambda: replicas(cluster) == {"hello-00001-ecs": 2, "hello-00001-eci": 1},
        message="the elastic unit shrinks first",
    )
    workload.set_desired(1)
    await eventually(
        lambda: replicas(cluster) == {"hello-00001-ecs": 1, "hello-00001-eci": 0},
        message="elastic empty before reserved shrinks",
    )


async def test_pods_marked_ready_become_gateway_endpoints_and_pending_ones_do_not(
    controllers: Controllers, cluster: FakeCluster
) -> None:
    platform = await controllers.start()
    platform.apply([copy.deepcopy(SERVICE)])
    workload = platform.workloads[KEY]
    workload.set_desired(2)
    await eventually(lambda: len(cluster.pods()) == 2)
    first, second = cluster.pods()
    cluster.set_status(
        second,
        {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
        },
    )
    cluster.ready(first, ip="10.9.8.7")
    throttler = platform.router.throttlers[KEY]
    await eventually(lambda: throttler.endpoints, message="an endpoint")
    assert [(e.host, e.port) for e in throttler.endpoints] == [("10.9.8.7", 9000)]
    assert workload.failed_reason is None  # the pending pod does not fail the revision
    assert workload.ready_count() == 1


async def test_a_restarted_controller_recovers_from_the_custom_resources(
    controllers: Controllers, cluster: FakeCluster
) -> None:
    first = await controllers.start()
    first.apply([copy.deepcopy(SERVICE)])
    first.workloads[KEY].set_desired(2)
    await eventually(lambda: len(cluster.pods()) == 2)
    ready_all(cluster)
    await eventually(lambda: first.workloads[KEY].ready_count() == 2)
    pods_before = sorted(p["metadata"]["name"] for p in cluster.pods())
    await controllers.stop(first)

    second = await controllers.start()  # a new process: nothing in memory
    assert "default/hello" in second.services
    workload = await eventually(lambda: second.workloads.get(KEY), message="workload restored")
    await eventually(lambda: workload.ready_count() == 2, message="pods adopted")
    assert sorted(p["metadata"]["name"] for p in cluster.pods()) == pods_before  # no new pods
    throttler = second.router.throttlers[KEY]
    assert sorted(e.host for e in throttler.endpoints) == ["10.0.0.1", "10.0.0.2"]


async def test_each_service_gets_its_cluster_local_name_and_a_users_service_is_left_alone(
    api: ApiClient, controllers: Controllers
) -> None:
    core = client.CoreV1Api(api)
    theirs = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "other", "namespace": "default"},
        "spec": {"selector": {"app": "other"}, "ports": [{"port": 80}]},
    }
    core.create_namespaced_service("default", theirs)
    platform = await controllers.start()
    other = copy.deepcopy(SERVICE)
    other["metadata"]["name"] = "other"
    platform.apply([copy.deepcopy(SERVICE), other])
    name = core.read_namespaced_service("hello", "default")
    assert name.spec.type == "ExternalName"
    assert name.spec.external_name == "tidal-gateway.tidal-system.svc.cluster.local"
    assert core.read_namespaced_service("other", "default").spec.type != "ExternalName"
    core.delete_namespaced_service("hello", "default")  # lost while no controller ran
    await controllers.stop(platform)
    platform = await controllers.start()
    assert core.read_namespaced_service("hello", "default").spec.type == "ExternalName"
    platform.delete_service("default", "hello")
    platform.delete_service("default", "other")
    names = [s.metadata.name for s in core.list_namespaced_service("default").items]
    assert names == ["other"], "tidal removes its own names only"


async def serving_pod(
    controllers: Controllers, cluster: FakeCluster
) -> tuple[Platform, dict[str, Any], str]:
    """hello's one replica, Ready, its pod having written two lines: (platform, pod, replica)."""
    platform = await controllers.start()
    platform.apply([copy.deepcopy(SERVICE)])
    await eventually(lambda: len(cluster.pods()) == 1)
    (pod,) = cluster.pods()
    cluster.write_log(pod, "loading weights\nserving on :9000\n")
    cluster.ready(pod)
    await eventually(lambda: platform.workloads[KEY].ready_count() == 1)
    (replica,) = platform.workloads[KEY].replicas
    return platform, pod, replica


async def test_tidal_logs_reads_the_pods_logs(
    controllers: Controllers, cluster: FakeCluster
) -> None:
    platform, _, replica = await serving_pod(controllers, cluster)
    text = await platform.logs("default", "hello", None, 1)
    assert text == f"==> hello-00001/{replica} <==\nserving on :9000"


class FollowedLogs:
    """What `tidal logs -f` has received so far, through the admin API."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.seen = b""

    async def until(self, text: str) -> None:
        while text.encode() not in self.seen:
            self.seen += await asyncio.wait_for(self.response.content.readany(), 5)


@contextlib.asynccontextmanager
async def follow_logs(platform: Platform, query: str) -> AsyncIterator[FollowedLogs]:
    """hello's logs followed through the admin API, as `tidal logs -f` asks for them."""
    runner = web.AppRunner(build_app(platform, {}, AdminSecurity("t")))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/apis/tidal.dev/v1/namespaces/default/services/hello/logs"
    try:
        async with (
            aiohttp.ClientSession(headers={"Authorization": "Bearer t"}) as session,
            session.get(f"{url}?{query}&follow=true") as response,
        ):
            assert response.status == 200
            yield FollowedLogs(response)
    finally:
        await runner.cleanup()


def min_scale_2() -> dict[str, Any]:
    """hello's next revision, two replicas: its pods start later."""
    scaled = copy.deepcopy(SERVICE)
    scaled["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] = "2"
    return scaled


async def test_tidal_logs_follows_the_pods_logs_new_pods_too(
    controllers: Controllers, cluster: FakeCluster
) -> None:
    """`tidal logs -f` on a cluster: each running pod's log from its tail, followed through the
    API server, and a pod that starts later from its first line."""
    platform, pod, first = await serving_pod(controllers, cluster)
    async with follow_logs(platform, "tail=1") as logs:
        await logs.until("serving on :9000\n")
        assert logs.seen == f"==> hello-00001/{first} <==\nserving on :9000\n".encode()
        cluster.write_log(pod, "loading weights\nserving on :9000\nGET /v1/predict 200\n")
        await logs.until("GET /v1/predict 200\n")

        platform.apply([min_scale_2()])
        await eventually(lambda: len(cluster.pods()) >= 3)
        later = next(p for p in cluster.pods() if p["metadata"]["name"] != pod["metadata"]["name"])
        cluster.write_log(later, "warming up\n")
        await asyncio.sleep(0.6)  # a poll while it is Pending: its log cannot be read yet
        ready_all(cluster)
        await logs.until("warming up\n")
        assert b"hello-00002/" in logs.seen  # under the new replica's header, from line one


async def test_tidal_logs_follows_a_bounded_number_of_pods_at_once(
    controllers: Controllers, cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logstream, "MAX_FOLLOWED_PODS", 1)
    platform, pod, _ = await serving_pod(controllers, cluster)
    async with follow_logs(platform, "tail=1") as logs:
        await logs.until("serving on :9000\n")
        platform.apply([min_scale_2()])
        await eventually(lambda: len(cluster.pods()) >= 3)
        for other in cluster.pods():
            if other["metadata"]["name"] != pod["metadata"]["name"]:
                cluster.write_log(other, "warming up\n")
        ready_all(cluster)
        await logs.until("(following at most 1 pods at once; the others from when one ends")
        assert b"hello-00002/" not in logs.seen
        # Its log ends: a pod of the new revision is followed in its place (the replacement
        # the ReplicaSet makes stays Pending, with no log to read).
        cluster.core.delete_namespaced_pod(pod["metadata"]["name"], "default")
        await logs.until("warming up\n")
        assert b"==> hello-00002/" in logs.seen
