"""The validating admission webhook (docs/kubernetes.md#kubectl-on-tidals-resources).

`kubectl apply` of a Service, ResourcePolicy or DomainMapping that `tidal apply` would refuse
fails at once with tidal's own message, and nothing is stored, as Knative's webhook does for its
kinds. The API server calls the webhook over HTTPS for every create and update of those kinds
but tidal's own (the configuration's matchCondition). Should one of tidal's own come anyway (a
configuration without it), it comes from the controller's event loop, which waits (the store's
client is synchronous) until the API server is done: so the webhook listens in a thread of its
own and allows the controller's own service account at once. Anyone else's object is checked by
a dry-run apply on the event loop, which is then free to run it.

Revisions and Routes are tidal's own, made from Services: as on one machine, nobody else may
create one or change its spec (a Revision's is immutable in Knative too). Changes to their
metadata alone pass: the garbage collector and kubectl label write those. Their reviews need no
state, so they are answered in the listening thread.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tidal.api.errors import InvalidSpec
from tidal.api.limits import parse_json
from tidal.controller.platform import Platform
from tidal.kubernetes.spec_watch import WATCHED_KINDS
from tidal.store.kubernetes import RESOURCES, Resources, to_tidal

log = logging.getLogger("tidal.kubernetes")

PATH = "/validate"
MAX_BODY = 3 * 1024 * 1024  # the API server's own limit on a request body
REVIEW_TIMEOUT_S = 8.0  # the webhook configuration gives the API server's call 10 s
API_VERSION = "admission.k8s.io/v1"
DERIVED_KINDS = {  # what tidal writes from Services, and what to change instead
    "Revision": "the Service's spec.template (a new revision)",
    "Route": "the Service's spec.traffic",
}


class AdmissionWebhook:
    def __init__(
        self,
        platform: Platform,
        own_user: str,
        context: ssl.SSLContext,
        host: str = "0.0.0.0",
        port: int = 8443,
        resources: Resources = RESOURCES,
    ) -> None:
        self.platform = platform
        self.resources = resources
        self.own_user = own_user  # system:serviceaccount:<namespace>:tidal-controller
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        # The handshake happens in each connection's own thread, not in the accepting one.
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a thread of its own; call from the event loop that runs the platform."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()

    def answer(self, review: dict[str, Any]) -> dict[str, Any]:
        """The AdmissionReview to send back for `review` (from the listening thread)."""
        request = review["request"]
        if request.get("userInfo", {}).get("username") == self.own_user:
            response = _allowed()  # what tidal writes it has checked, and it is waiting
        elif (request.get("kind") or {}).get("kind") in DERIVED_KINDS:
            response = review_derived(request)
        else:
            assert self._loop is not None
            future = asyncio.run_coroutine_threadsafe(self._review(request), self._loop)
            try:
                response = future.result(REVIEW_TIMEOUT_S)
            except TimeoutError:
                future.cancel()
                response = _denied("tidal's controller did not answer in time; try again")
        response["uid"] = request["uid"]
        return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}

    async def _review(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.review(request)

    def review(self, request: dict[str, Any]) -> dict[str, Any]:
        """Allow or deny one AdmissionRequest, on the event loop: a dry-run apply."""
        kind = (request.get("kind") or {}).get("kind")
        checked = request.get("operation") in ("CREATE", "UPDATE") and kind in WATCHED_KINDS
        if not checked or request.get("subResource"):
            return _allowed()
        obj = request.get("object")
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            return _denied("the request carries no object to check")
        doc = to_tidal(self.resources[kind], copy.deepcopy(obj))
        doc.pop("status", None)
        doc["metadata"].setdefault("namespace", request.get("namespace") or "default")
        try:
            self.platform.apply_detailed([doc], dry_run=True)
        except InvalidSpec as exc:
            return _denied(str(exc))
        except Exception as exc:  # a bug must not let an unchecked spec through unseen
            log.exception("admission review of %s failed", kind)
            return _denied(f"tidal could not check it: {exc}")
        return _allowed()


def review_derived(request: dict[str, Any]) -> dict[str, Any]:
    """Allow or deny another user's write of a Revision or Route: its spec is tidal's alone."""
    kind = request["kind"]["kind"]
    old, new = request.get("oldObject"), request.get("object")
    if request.get("operation") not in ("CREATE", "UPDATE") or request.get("subResource"):
        return _allowed()
    metadata_only = (
        isinstance(old, dict) and isinstance(new, dict) and old.get("spec") == new.get("spec")
    )
    if request["operation"] == "UPDATE" and metadata_only:
        return _allowed()  # labels, annotations, owner references, finalizers
    return _denied(
        f"{kind.lower()}s are written by tidal (from Services); their spec cannot be written "
        f"directly: change {DERIVED_KINDS[kind]}",
        405,
        "MethodNotAllowed",
    )


def _allowed() -> dict[str, Any]:
    return {"allowed": True}


def _denied(message: str, code: int = 422, reason: str = "Invalid") -> dict[str, Any]:
    return {"allowed": False, "status": {"code": code, "reason": reason, "message": message}}


def _handler(webhook: AdmissionWebhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 15  # seconds a connection may sit idle or half-sent

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != PATH:
                self._reply(404, {"message": f"no such path; the webhook is {PATH}"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self._reply(411, {"message": "a Content-Length is required"})
                return
            if not 0 < length <= MAX_BODY:
                self._reply(413, {"message": f"the body must be 1 to {MAX_BODY} bytes"})
                return
            try:
                review = parse_json(self.rfile.read(length))
                request = review["request"]
                if review.get("apiVersion") != API_VERSION or not isinstance(request, dict):
                    raise ValueError(f"expected an {API_VERSION} AdmissionReview")
                if not isinstance(request.get("uid"), str):
                    raise ValueError("request.uid is missing")
            except (ValueError, KeyError, TypeError) as exc:
                self._reply(400, {"message": f"not an AdmissionReview: {exc}"})
                return
            self._reply(200, webhook.answer(review))

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("webhook: " + format, *args)

    return Handler
