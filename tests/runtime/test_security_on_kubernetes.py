"""A container's securityContext reaches the pod on Kubernetes, in a Deployment that validates."""

from __future__ import annotations

import copy

import kubernetes_validate

from tests.kubernetes.test_k8s_manifests import KUBERNETES, REVISION
from tidal.runtime.deployments import PodPlacement, deployment_manifest


def test_security_context_is_passed_to_the_pod() -> None:
    revision = copy.deepcopy(REVISION)
    security = {"runAsUser": 1000, "runAsNonRoot": True, "allowPrivilegeEscalation": False}
    revision["spec"]["containers"][0]["securityContext"] = security
    deployment = deployment_manifest(
        revision, "hello-00001-ecs", "ecs", PodPlacement({}), {}, 30, "serving.tidal.dev/v1"
    )
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"] == security
    kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
