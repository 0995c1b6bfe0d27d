"""The admission webhook: what `tidal apply` refuses, the API server refuses before storing it
(docs/kubernetes.md#kubectl-on-tidals-resources). The controller on the emulator; the reviews
are sent over HTTPS as the API server sends them, checked against the CA the install renders."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from cryptography import x509
from kubernetes import client
from kubernetes.client import ApiClient

from tests.kubernetes.controllers import POLICY, SERVICE, Controllers, admission_review
from tidal.cli.main import main
from tidal.kubernetes.manifests import WEBHOOK, WebhookTLS, manifests
from tidal.kubernetes.webhook import AdmissionWebhook
from tidal.security.localca import issue_once
from tidal.security.tls import server_context

OWN_USER = "system:serviceaccount:tidal-system:tidal-controller"


class Webhook:
    def __init__(self, url: str, ca: Path) -> None:
        self.url = url
        self.context = ssl.create_default_context(cafile=str(ca))

    async def post(self, body: bytes) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body, ssl=self.context) as response,
        ):
            return response.status, await response.json()

    async def review(
        self,
        obj: dict[str, Any] | None,
        operation: str = "CREATE",
        user: str = "kubernetes-admin",
        old: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What the API server sends for kubectl's write of `obj`; the response."""
        uid = str(uuid.uuid4())
        review = admission_review(uid, obj, operation, user, old)
        status, answer = await self.post(json.dumps(review).encode())
        assert status == 200 and answer["kind"] == "AdmissionReview"
        assert answer["response"]["uid"] == uid
        return answer["response"]


@pytest.fixture
async def webhook(controllers: Controllers, tmp_path: Path) -> AsyncIterator[Webhook]:
    ca, cert, key = issue_once(["127.0.0.1"], "test webhook CA")
    for name, pem in (("ca.crt", ca), ("tls.crt", cert), ("tls.key", key)):
        (tmp_path / name).write_bytes(pem)
    platform = await controllers.start()
    context = server_context(tmp_path / "tls.crt", tmp_path / "tls.key")
    server = AdmissionWebhook(platform, OWN_USER, context, "127.0.0.1", 0)
    server.start()
    yield Webhook(f"https://127.0.0.1:{server.port}/validate", tmp_path / "ca.crt")
    server.close()


def bad_bound() -> dict[str, Any]:
    service = copy.deepcopy(SERVICE)
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    annotations["autoscaling.knative.dev/min-scale"] = "lots"
    return service


async def test_a_valid_service_is_allowed_and_an_invalid_one_denied_with_applys_message(
    webhook: Webhook, api: ApiClient
) -> None:
    assert (await webhook.review(SERVICE))["allowed"] is True
    denied = await webhook.review(bad_bound())
    assert denied["allowed"] is False
    assert denied["status"]["code"] == 422
    assert denied["status"]["message"] == (
        "spec.template.metadata.annotations[autoscaling.knative.dev/min-scale]: "
        "invalid value 'lots': must be an integer"
    )
    unknown = copy.deepcopy(SERVICE)
    unknown["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    assert "imagePullPolicyy" in (await webhook.review(unknown))["status"]["message"]
    # A review stores nothing: the webhook answers before the API server writes.
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "serving.tidal.dev", "v1", "default", "services"
    )
    assert listed["items"] == []


async def test_an_update_is_checked_against_what_is_stored(webhook: Webhook) -> None:
    pinned = copy.deepcopy(SERVICE)
    pinned["spec"]["traffic"] = [{"revisionName": "hello-00007", "percent": 100}]
    denied = await webhook.review(pinned, "UPDATE", old=SERVICE)
    assert denied["allowed"] is False
    assert "hello-00007" in denied["status"]["message"]
    policy = copy.deepcopy(POLICY)
    policy["spec"]["units"] = []
    denied = await webhook.review(policy, "UPDATE", old=POLICY)
    assert denied["status"]["message"] == "spec.units: list at least one unit"
    assert (await webhook.review(POLICY, "UPDATE", old=POLICY))["allowed"] is True


async def test_tidals_own_writes_and_deletes_pass(webhook: Webhook) -> None:
    # The controller's own writes are allowed at once: it waits on them with its loop held.
    assert (await webhook.review(bad_bound(), "UPDATE", OWN_USER, old=SERVICE))["allowed"]
    assert (await webhook.review(None, "DELETE", old=bad_bound()))["allowed"] is True


REVISION: dict[str, Any] = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Revision",
    "metadata": {
        "name": "hello-00001",
        "namespace": "default",
        "labels": {"serving.knative.dev/service": "hello"},
    },
    "spec": copy.deepcopy(SERVICE["spec"]["template"]["spec"]),
}
ROUTE: dict[str, Any] = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Route",
    "metadata": {"name": "hello", "namespace": "default"},
    "spec": {"traffic": [{"revisionName": "hello-00001", "percent": 100}]},
}


async def test_revisions_and_routes_are_tidals_to_write_as_on_one_machine(
    webhook: Webhook,
) -> None:
    """A Revision's spec is immutable (as in Knative) and a Route's follows its Service's
    traffic: another user's create or spec change is refused with what to change instead."""
    retimed = copy.deepcopy(REVISION)
    retimed["spec"]["timeoutSeconds"] = 10
    denied = await webhook.review(retimed, "UPDATE", old=REVISION)
    assert denied["allowed"] is False
    assert denied["status"]["code"] == 405
    assert denied["status"]["message"] == (
        "revisions are written by tidal (from Services); their spec cannot be written "
        "directly: change the Service's spec.template (a new revision)"
    )
    assert (await webhook.review(REVISION))["allowed"] is False  # made only from a template
    rerouted = copy.deepcopy(ROUTE)
    rerouted["spec"]["traffic"][0]["revisionName"] = "hello-00002"
    denied = await webhook.review(rerouted, "UPDATE", old=ROUTE)
    assert "change the Service's spec.traffic" in denied["status"]["message"]
    # Metadata alone passes: kubectl label, and the garbage collector's owner references.
    labelled = copy.deepcopy(REVISION)
    labelled["metadata"]["labels"]["team"] = "ml"
    assert (await webhook.review(labelled, "UPDATE", old=REVISION))["allowed"] is True
    # tidal's own writes, and deletes, pass.
    assert (await webhook.review(retimed, "UPDATE", OWN_USER, old=REVISION))["allowed"] is True
    assert (await webhook.review(None, "DELETE", old=ROUTE))["allowed"] is True


async def test_reviews_are_answered_while_the_controllers_loop_is_held_by_its_own_write(
    webhook: Webhook,
) -> None:
    """The store's client is synchronous: the loop waits on the API server, which waits on the
    webhook. The controller's own write must not wait for that loop; others' wait their turn."""
    pool = ThreadPoolExecutor(2)  # the API server's calls; meanwhile this loop stays held
    own = pool.submit(asyncio.run, webhook.review(bad_bound(), "UPDATE", OWN_USER, SERVICE))
    assert own.result(timeout=5)["allowed"] is True
    # A Revision or Route needs no state of the controller's: it is answered in the thread too.
    derived = pool.submit(asyncio.run, webhook.review(REVISION))
    assert derived.result(timeout=5)["allowed"] is False
    other = pool.submit(asyncio.run, webhook.review(bad_bound()))
    with pytest.raises(FutureTimeout):
        other.result(timeout=1)
    pool.shutdown(wait=False)
    # Freed, the loop checks the other's write, within the API server's time.
    answer = await asyncio.wrap_future(other)
    assert "min-scale" in answer["status"]["message"]


@pytest.mark.parametrize(
    "body, why",
    [
        (b"{", "not an AdmissionReview"),
        (b'{"apiVersion": "admission.k8s.io/v1beta1", "request": {}}', "expected an"),
        (b'{"apiVersion": "admission.k8s.io/v1", "request": {"kind": {}}}', "request.uid"),
        (b"[]", "not an AdmissionReview"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 100 levels"),
    ],
)
async def test_a_malformed_review_is_a_400_that_says_why(
    webhook: Webhook, body: bytes, why: str
) -> None:
    status, answer = await webhook.post(body)
    assert status == 400 and why in answer["message"]


def test_the_install_registers_the_webhook_with_a_ca_that_signed_its_certificate() -> None:
    tls = WebhookTLS.issue("tidal-system")
    docs = {(d["kind"], d["metadata"]["name"]): d for d in manifests(webhook_tls=tls)}
    config = docs[("ValidatingWebhookConfiguration", "tidal-controller")]
    (hook,) = config["webhooks"]
    assert hook["clientConfig"]["service"] == {
        "namespace": "tidal-system",
        "name": WEBHOOK,
        "path": "/validate",
        "port": 443,
    }
    assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
    (condition,) = hook["matchConditions"]
    assert condition["expression"] == f"request.userInfo.username != '{OWN_USER}'"
    checked = {(r["apiGroups"][0], r["resources"][0]) for r in hook["rules"]}
    assert checked == {
        ("serving.tidal.dev", "services"),
        ("serving.tidal.dev", "domainmappings"),
        ("scheduling.tidal.dev", "resourcepolicies"),
        ("serving.tidal.dev", "revisions"),  # refused to others (their spec is tidal's)
        ("serving.tidal.dev", "routes"),
    }
    assert all(r["operations"] == ["CREATE", "UPDATE"] for r in hook["rules"])
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    secret = docs[("Secret", "tidal-webhook-tls")]
    cert = x509.load_pem_x509_certificate(secret["stringData"]["tls.crt"].encode())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "tidal-webhook.tidal-system.svc" in names.get_values_for_type(x509.DNSName)
    service = docs[("Service", WEBHOOK)]
    assert service["spec"]["ports"][0]["port"] == 443
    controller = docs[("Deployment", "tidal-controller")]["spec"]["template"]["spec"]
    args = controller["containers"][0]["args"]
    assert args[args.index("--webhook-cert") + 1] == "/etc/tidal-webhook/tls.crt"
    assert {"name": "webhook-tls", "secret": {"secretName": "tidal-webhook-tls"}} in controller[
        "volumes"
    ]
    kinds = [d["kind"] for d in manifests(webhook_tls=tls)]
    assert kinds[-1] == "ValidatingWebhookConfiguration"  # after what serves it


def test_the_controller_wants_the_webhooks_certificate_and_key_together(tmp_path: Path) -> None:
    cert = tmp_path / "tls.crt"
    cert.write_bytes(issue_once(["127.0.0.1"], "test webhook CA")[1])
    result = CliRunner().invoke(
        main, ["--token", "t", "kubernetes", "controller", "--webhook-cert", str(cert)]
    )
    assert result.exit_code == 2
    assert "--webhook-cert and --webhook-key go together" in result.output
