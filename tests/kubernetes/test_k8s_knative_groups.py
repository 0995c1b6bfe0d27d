"""An install in Knative's and ACK's own API groups (`--api-groups knative`,
docs/kubernetes.md#api-groups): kubectl takes a Knative Service or an ACK ResourcePolicy as it
is, `kubectl get ksvc` finds it, and the controller runs it; where Knative Serving itself runs,
the controller refuses to start."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from kubernetes import client
from kubernetes.client import ApiClient

from tests.kubernetes.controllers import (
    POLICY,
    SERVICE,
    Controllers,
    CustomResources,
    replicas,
)
from tests.kubernetes.emulator import FakeCluster, ThreadedEmulator, eventually
from tidal.cli.main import main
from tidal.kubernetes.controller import KnativeInstalled, check_api_groups
from tidal.kubernetes.manifests import manifests
from tidal.store.kubernetes import custom_resources

KNATIVE = custom_resources("knative")


def test_the_install_puts_the_kinds_in_knatives_and_acks_groups() -> None:
    docs = manifests(api_groups="knative")
    crds = {
        d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "CustomResourceDefinition"
    }
    assert set(crds) == {
        "services.serving.knative.dev",
        "revisions.serving.knative.dev",
        "routes.serving.knative.dev",
        "domainmappings.serving.knative.dev",
        "resourcepolicies.scheduling.alibabacloud.com",
    }
    assert [v["name"] for v in crds["domainmappings.serving.knative.dev"]["versions"]] == [
        "v1beta1"
    ]
    service = crds["services.serving.knative.dev"]["names"]
    assert service["shortNames"] == ["kservice", "ksvc"]  # `kubectl get ksvc`, as on Knative
    assert "knative" in service["categories"]
    [webhook] = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")["webhooks"]
    checked = {
        (r["apiGroups"][0], r["apiVersions"][0], r["resources"][0]) for r in webhook["rules"]
    }
    assert checked == {
        ("serving.knative.dev", "v1", "services"),
        ("serving.knative.dev", "v1beta1", "domainmappings"),
        ("scheduling.alibabacloud.com", "v1alpha1", "resourcepolicies"),
        ("serving.knative.dev", "v1", "revisions"),
        ("serving.knative.dev", "v1", "routes"),
    }
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    groups = {g for rule in role["rules"] for g in rule["apiGroups"]}
    assert {"serving.knative.dev", "scheduling.alibabacloud.com"} <= groups
    assert not {"serving.tidal.dev", "scheduling.tidal.dev"} & groups
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert args[args.index("--api-groups") + 1] == "knative"


def test_the_default_install_keeps_tidals_own_groups_beside_knative() -> None:
    docs = manifests()
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert {d["spec"]["group"] for d in crds} == {"serving.tidal.dev", "scheduling.tidal.dev"}
    assert all("shortNames" not in d["spec"]["names"] for d in crds)  # ksvc stays Knative's
    args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert args[args.index("--api-groups") + 1] == "tidal"


async def test_a_knative_service_written_as_it_is_runs(
    api: ApiClient, cluster: FakeCluster, tmp_path: Path
) -> None:
    controllers = Controllers(api, tmp_path, KNATIVE)
    platform = await controllers.start()
    try:
        crs = CustomResources(api, KNATIVE)
        crs.create(POLICY)  # scheduling.alibabacloud.com/v1alpha1, as ACK users write it
        crs.create(SERVICE)  # serving.knative.dev/v1, unchanged
        deployment = await eventually(
            lambda: cluster.deployments().get("hello-00001-ecs"), message="the revision runs"
        )
        await eventually(  # created at zero, then scaled to min-scale
            lambda: replicas(cluster) == {"hello-00001-ecs": 1}, message="one replica on ecs"
        )
        await eventually(
            lambda: "default/ecs-first" in platform.placer.policies, message="the ACK policy"
        )
        revision = crs.get("Revision", "hello-00001")
        assert revision is not None and revision["apiVersion"] == "serving.knative.dev/v1"
        # Owned by the Revision where it is stored, so that deleting it deletes the pods.
        [owner] = deployment["metadata"]["ownerReferences"]
        assert (owner["apiVersion"], owner["kind"], owner["uid"]) == (
            "serving.knative.dev/v1",
            "Revision",
            revision["metadata"]["uid"],
        )
        service = await eventually(
            lambda: (crs.get("Service", "hello") or {}).get("status", {}).get("url"),
            message="the Service's status",
        )
        assert service == "http://hello.default.example.com"
        route = await eventually(lambda: crs.get("Route", "hello"), message="the Route")
        assert route["status"]["traffic"][0]["revisionName"] == "hello-00001"
        # Nothing went to tidal's own groups.
        own = client.CustomObjectsApi(api).list_cluster_custom_object(
            "serving.tidal.dev", "v1", "services"
        )
        assert own["items"] == []
    finally:
        for platform in list(controllers.running):
            await controllers.stop(platform)


def test_where_knative_serving_runs_the_controller_refuses_its_groups(
    emulator: ThreadedEmulator, api: ApiClient
) -> None:
    check_api_groups(api, KNATIVE)  # no Knative here
    emulator.emulator.resources["serving.knative.dev/v1/configurations"] = {}
    with pytest.raises(KnativeInstalled, match="--api-groups tidal"):
        check_api_groups(api, KNATIVE)
    check_api_groups(api, custom_resources("tidal"))  # beside it, in tidal's own groups


def test_tidal_kubernetes_controller_says_so_and_stops(
    emulator: ThreadedEmulator, tmp_path: Path
) -> None:
    emulator.emulator.resources["serving.knative.dev/v1/configurations"] = {}
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    result = CliRunner().invoke(
        main,
        [
            "--kubeconfig",
            str(kubeconfig),
            "--token",
            "t",
            "kubernetes",
            "controller",
            "--data-dir",
            str(tmp_path / "state"),
            "--api-groups",
            "knative",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "runs Knative Serving" in result.output
    assert "--api-groups tidal" in result.output
