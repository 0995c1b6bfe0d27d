"""kubectl's writes to tidal's custom resources (apply, edit, delete) run as `tidal apply` runs
them (docs/kubernetes.md#kubectl-on-tidals-resources): the controller on the emulator, the
writes made with the client as kubectl makes them."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from tests.kubernetes.controllers import (
    KEY,
    POLICY,
    SERVICE,
    Controllers,
    CustomResources,
    replicas,
)
from tests.kubernetes.emulator import FakeCluster, ThreadedEmulator, eventually
from tidal.kubernetes.spec_watch import SpecWatch

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def container(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]["containers"][0]


def set_image(image: str) -> Any:
    def change(doc: dict[str, Any]) -> None:
        container(doc)["image"] = image

    return change


def set_min_scale(value: str) -> Any:
    def change(doc: dict[str, Any]) -> None:
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        annotations["autoscaling.knative.dev/min-scale"] = value

    return change


def observed(crs: CustomResources, name: str) -> bool:
    service = crs.get("Service", name) or {}
    generation = service.get("metadata", {}).get("generation")
    return (service.get("status") or {}).get("observedGeneration") == generation


async def hello_observed(api: ApiClient) -> CustomResources:
    """The hello Service created with kubectl and taken in by the running controller."""
    crs = CustomResources(api)
    crs.create(SERVICE)
    await eventually(lambda: observed(crs, "hello"), message="hello observed")
    return crs


async def test_a_service_created_and_edited_with_kubectl_runs_as_an_apply_would(
    api: ApiClient, controllers: Controllers, cluster: FakeCluster
) -> None:
    platform = await controllers.start()
    crs = CustomResources(api)
    applied = copy.deepcopy(SERVICE)  # as `kubectl apply` creates it
    applied["metadata"]["annotations"] = {LAST_APPLIED: json.dumps(SERVICE)}
    crs.create(applied)
    await eventually(lambda: cluster.deployments().get("hello-00001-ecs"), message="revision 1")
    assert crs.names("Revision") == ["hello-00001"]
    await eventually(lambda: observed(crs, "hello"), message="observedGeneration")
    stored = crs.get("Service", "hello")
    assert stored is not None
    assert stored["spec"]["template"]["spec"]["timeoutSeconds"] == 300  # Knative's defaults
    assert stored["status"]["latestCreatedRevisionName"] == "hello-00001"
    assert stored["status"]["url"] == "http://hello.default.example.com"
    address = client.CoreV1Api(api).read_namespaced_service("hello", "default")
    assert address.spec.type == "ExternalName"  # its cluster-local name, as an apply makes

    crs.edit("Service", "hello", set_image("ghcr.io/example/hello:2"))
    deployment = await eventually(
        lambda: cluster.deployments().get("hello-00002-ecs"), message="revision 2"
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "ghcr.io/example/hello:2"
    await eventually(lambda: observed(crs, "hello"), message="observedGeneration 2")
    await asyncio.sleep(0.3)  # tidal's own writes come back as events: none makes a revision
    assert crs.names("Revision") == ["hello-00001", "hello-00002"]

    pin_to_the_first = {"spec": {"traffic": [{"revisionName": "hello-00001", "percent": 100}]}}
    crs.patch("Service", "hello", pin_to_the_first)
    await eventually(
        lambda: (
            [t["revisionName"] for t in crs.get("Route", "hello")["status"]["traffic"]]
            == ["hello-00001"]
        ),
        message="the route follows the traffic written with kubectl",
    )
    await eventually(lambda: observed(crs, "hello"), message="observedGeneration 3")
    assert platform.services["default/hello"].service.spec.traffic[0].revision_name == (
        "hello-00001"
    )


async def test_an_invalid_edit_says_why_and_what_ran_goes_on_running(
    api: ApiClient, controllers: Controllers, cluster: FakeCluster
) -> None:
    platform = await controllers.start()
    crs = await hello_observed(api)
    await eventually(lambda: replicas(cluster) == {"hello-00001-ecs": 1}, message="min-scale 1")

    crs.edit("Service", "hello", set_min_scale("lots"))
    condition = await eventually(
        lambda: crs.ready("hello").get("reason") == "InvalidSpec" and crs.ready("hello"),
        message="Ready False with why",
    )
    assert condition["status"] == "False"
    assert "autoscaling.knative.dev/min-scale" in condition["message"]
    assert "what ran before goes on running" in condition["message"]
    assert observed(crs, "hello")
    assert crs.names("Revision") == ["hello-00001"]
    await asyncio.sleep(2.5)  # past the autoscaler's next tick
    assert platform.workloads[KEY].desired == 1
    assert replicas(cluster) == {"hello-00001-ecs": 1}

    # A status change (the revision turning ready) must not lose the reason.
    platform.status_changed(platform.workloads[KEY])
    assert crs.ready("hello")["reason"] == "InvalidSpec"

    crs.edit("Service", "hello", set_min_scale("2"))
    await eventually(lambda: "hello-00002" in crs.names("Revision"), message="revision 2")
    await eventually(lambda: crs.ready("hello").get("reason") != "InvalidSpec")
    assert "default/hello" not in platform.refused_specs


@pytest.mark.parametrize("while_running", [True, False], ids=["refused", "written-while-away"])
async def test_a_refused_spec_goes_on_running_what_ran_after_a_restart(
    api: ApiClient, controllers: Controllers, cluster: FakeCluster, while_running: bool
) -> None:
    """The stored spec is the refused one: the next controller runs the Service as it last ran,
    from its latest revision and its Route (docs/kubernetes.md#kubectl-on-tidals-resources),
    whether the first refused it or no controller ran when it was written."""
    first = await controllers.start()
    crs = await hello_observed(api)
    await eventually(lambda: replicas(cluster) == {"hello-00001-ecs": 1}, message="min-scale 1")

    def break_both(doc: dict[str, Any]) -> None:  # an invalid template, and traffic too
        set_min_scale("lots")(doc)
        doc["spec"]["traffic"] = [{"revisionName": "hello-00009", "percent": 100}]

    if while_running:
        crs.edit("Service", "hello", break_both)
        await eventually(lambda: crs.ready("hello").get("reason") == "InvalidSpec")
        await controllers.stop(first)
    else:
        await controllers.stop(first)
        crs.edit("Service", "hello", break_both)

    second = await controllers.start()
    valid = second.services["default/hello"]  # restored, as it last ran
    assert valid.service.spec.traffic[0].latest_revision is True
    assert second.workloads[KEY].desired == 1  # min-scale 1, not the refused 'lots'
    condition = await eventually(
        lambda: crs.ready("hello").get("reason") == "InvalidSpec" and crs.ready("hello"),
        message="the refusal on the Ready condition",
    )
    assert "what ran before goes on running" in condition["message"]
    route = crs.get("Route", "hello")
    assert route is not None and route["spec"]["traffic"] == [
        {"latestRevision": True, "percent": 100}
    ]
    await asyncio.sleep(2.5)  # past the autoscaler's next tick
    assert replicas(cluster) == {"hello-00001-ecs": 1}
    assert crs.names("Revision") == ["hello-00001"]

    def fix_both(doc: dict[str, Any]) -> None:  # a valid change replaces it
        set_min_scale("2")(doc)
        doc["spec"]["traffic"] = [{"latestRevision": True, "percent": 100}]

    crs.edit("Service", "hello", fix_both)
    await eventually(lambda: "hello-00002" in crs.names("Revision"), message="revision 2")
    await eventually(lambda: crs.ready("hello").get("reason") != "InvalidSpec")


async def test_kubectl_delete_removes_the_service_its_revisions_and_its_name(
    api: ApiClient, controllers: Controllers, cluster: FakeCluster
) -> None:
    platform = await controllers.start()
    crs = CustomResources(api)
    crs.create(SERVICE)
    await eventually(lambda: cluster.deployments().get("hello-00001-ecs"), message="revision 1")
    crs.delete("Service", "hello")
    await eventually(lambda: "default/hello" not in platform.services, message="forgotten")
    assert KEY not in platform.workloads
    assert crs.names("Revision") == [] and crs.names("Route") == []
    names = [
        s.metadata.name for s in client.CoreV1Api(api).list_namespaced_service("default").items
    ]
    assert "hello" not in names


async def test_a_change_made_while_no_controller_ran_is_applied_by_the_next(
    api: ApiClient, controllers: Controllers, cluster: FakeCluster
) -> None:
    first = await controllers.start()
    crs = await hello_observed(api)
    await controllers.stop(first)
    crs.edit("Service", "hello", set_image("ghcr.io/example/hello:2"))
    other = copy.deepcopy(SERVICE)
    other["metadata"]["name"] = "other"
    crs.create(other)

    second = await controllers.start()
    await eventually(lambda: cluster.deployments().get("hello-00002-ecs"), message="hello 2")
    await eventually(lambda: cluster.deployments().get("other-00001-ecs"), message="other 1")
    await eventually(lambda: observed(crs, "hello") and observed(crs, "other"))
    assert {"default/hello", "default/other"} <= second.services.keys()


async def test_a_resource_policy_written_with_kubectl_places_and_its_deletion_unplaces(
    api: ApiClient, controllers: Controllers
) -> None:
    platform = await controllers.start()
    crs = CustomResources(api)
    crs.create(POLICY)
    await eventually(lambda: "default/ecs-first" in platform.placer.policies)
    policy = platform.placer.policies["default/ecs-first"]
    assert [u.resource for u in policy.spec.units] == ["ecs", "eci"]

    def units(*units: dict[str, Any]) -> Any:
        def change(doc: dict[str, Any]) -> None:
            doc["spec"]["units"] = list(units)

        return change

    crs.edit("ResourcePolicy", "ecs-first", units())  # refused: the policy before stays
    eci = {"resource": "eci", "nodeSelector": {"type": "virtual-kubelet"}}
    crs.edit("ResourcePolicy", "ecs-first", units(eci))
    await eventually(
        lambda: (
            [u.resource for u in platform.placer.policies["default/ecs-first"].spec.units]
            == ["eci"]
        ),
        message="the valid edit after the refused one",
    )
    crs.delete("ResourcePolicy", "ecs-first")
    await eventually(lambda: "default/ecs-first" not in platform.placer.policies)


async def test_a_domain_mapping_written_with_kubectl_routes_its_domain_until_deleted(
    api: ApiClient, controllers: Controllers
) -> None:
    platform = await controllers.start()
    crs = await hello_observed(api)
    mapping = {
        "apiVersion": "serving.knative.dev/v1beta1",
        "kind": "DomainMapping",
        "metadata": {"name": "models.example.org", "namespace": "default"},
        "spec": {
            "ref": {"name": "hello", "kind": "Service", "apiVersion": "serving.knative.dev/v1"}
        },
    }
    crs.create(mapping)
    await eventually(lambda: "models.example.org" in platform.domains.by_domain)
    assert platform.domains.domains_of("default", "hello") == ["models.example.org"]
    crs.delete("DomainMapping", "models.example.org")
    await eventually(lambda: not platform.domains.domains_of("default", "hello"))


async def test_a_cluster_without_a_followed_crd_is_named_with_the_fix(
    api: ApiClient, emulator: ThreadedEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """An install from before a kind existed: the controller says what to apply."""
    del emulator.emulator.resources["serving.tidal.dev/v1/domainmappings"]
    watch = SpecWatch(api, lambda doc, listed: None, lambda kind, namespace, name: None)
    watch.start()
    try:
        await eventually(lambda: "cannot watch domainmappings" in caplog.text)
    finally:
        watch.close()
    assert "apply `tidal kubernetes manifests` again" in caplog.text
