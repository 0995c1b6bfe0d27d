"""What `kubectl auth can-i` hears (tidal.controller.kubeapi.access): yes for a verb tidal
serves on a resource it serves, no with the reason otherwise."""

from __future__ import annotations

import pytest

from tidal.controller.kubeapi.access import ALLOWED, Served, decide
from tidal.controller.kubeapi.protobuf import decode

SERVED = [
    Served("serving.knative.dev", "services", ("create", "get", "list")),
    Served("serving.knative.dev", "revisions", ("get", "list")),
    Served("", "pods", ("get", "list", "delete"), ("log", "exec")),
]


@pytest.mark.parametrize(
    ("attributes", "allowed", "reason"),
    [
        ({"verb": "create", "group": "serving.knative.dev", "resource": "services"}, True, ALLOWED),
        (
            {"verb": "update", "group": "serving.knative.dev", "resource": "revisions"},
            False,
            "tidal serves get, list on revisions.serving.knative.dev, not update",
        ),
        ({"verb": "create", "resource": "pods", "subresource": "exec"}, True, ALLOWED),
        (
            {"verb": "get", "resource": "pods", "subresource": "attach"},
            False,
            "tidal serves no attach subresource of pods",
        ),
        (
            {"verb": "create", "group": "apps", "resource": "deployments"},
            False,
            "tidal does not serve deployments.apps",
        ),
        ({"verb": "*", "group": "apps", "resource": "deployments"}, True, ALLOWED),
    ],
)
def test_a_review_says_yes_only_for_what_is_served(
    attributes: dict[str, str], allowed: bool, reason: str
) -> None:
    assert decide(SERVED, attributes) == (allowed, reason)


# The body of `kubectl auth can-i create ksvc -n ml` (kubectl 1.32): magic, typeMeta
# {authorization.k8s.io/v1, SelfSubjectAccessReview}, raw {metadata {empty strings},
# spec {resourceAttributes {ml, create, serving.knative.dev, "", services, "", ""}}, status {}},
# contentEncoding "", contentType "".
KUBECTL_CAN_I = bytes.fromhex(
    "6b387300 0a32 0a17 617574686f72697a6174696f6e2e6b38732e696f2f7631"
    " 1217 53656c665375626a656374416363657373526576696577"
    " 1251 0a10 0a00 1200 1a00 2200 2a00 3200 3800 4200"
    " 1233 0a31 0a026d6c 1206637265617465 1a1373657276696e672e6b6e61746976652e646576"
    " 2200 2a087365727669636573 3200 3a00 1a08 0800 1200 1a00 2000 1a00 2200"
)


def test_kubectls_protobuf_review_reads_as_its_attributes() -> None:
    review = decode(KUBECTL_CAN_I)
    assert review["kind"] == "SelfSubjectAccessReview"
    assert review["spec"] == {
        "resourceAttributes": {
            "namespace": "ml",
            "verb": "create",
            "group": "serving.knative.dev",
            "resource": "services",
        }
    }
