"""Who the caller is and what it may do, as kubectl and Kubernetes tools ask an API server
(`kubectl auth can-i`, `kubectl auth can-i --list`, `kubectl auth whoami`; docs/kubectl.md#access).

tidal has one credential, the admin token, and whoever holds it may do everything tidal
serves. So a review says yes exactly for a verb tidal serves on a resource it serves (its
subresources included), and no, saying why, for the rest, rather than a blanket yes for kinds a
client would then find missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tidal.controller.kubeapi import protobuf
from tidal.controller.kubeapi.status import ApiError

AUTHORIZATION = "authorization.k8s.io"
AUTHENTICATION = "authentication.k8s.io"
USER = "tidal-admin"  # the holder of the admin token
USER_GROUPS = ["tidal:admins", "system:authenticated"]
ALLOWED = "the admin token may do everything tidal serves"
READ_PATHS = ("/api", "/apis", "/version", "/openapi", "/healthz", "/metrics")
REVIEWS = {  # plural -> (group, kind)
    "selfsubjectaccessreviews": (AUTHORIZATION, "SelfSubjectAccessReview"),
    "selfsubjectrulesreviews": (AUTHORIZATION, "SelfSubjectRulesReview"),
    "selfsubjectreviews": (AUTHENTICATION, "SelfSubjectReview"),
}


@dataclass(frozen=True)
class Served:
    """A resource as discovery lists it: group, plural, verbs, and its subresources."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    subresources: tuple[str, ...] = ()


def decide(served: Iterable[Served], attributes: dict[str, Any]) -> tuple[bool, str]:
    """Whether a verb on a resource (ResourceAttributes) is one tidal serves, and why not."""
    verb, resource = attributes.get("verb", ""), attributes.get("resource", "")
    group, subresource = attributes.get("group", ""), attributes.get("subresource", "")
    if "*" in (verb, resource):
        return True, ALLOWED
    named = f"{resource}.{group}" if group else resource
    for entry in served:
        if (entry.group, entry.resource) != (group or "", resource):
            continue
        if subresource and subresource not in entry.subresources:
            return False, f"tidal serves no {subresource} subresource of {named}"
        if subresource or verb in entry.verbs:
            return True, ALLOWED
        return False, f"tidal serves {', '.join(entry.verbs)} on {named}, not {verb}"
    return False, f"tidal does not serve {named}"


def _decide_path(attributes: dict[str, Any]) -> tuple[bool, str]:
    path, verb = attributes.get("path", ""), attributes.get("verb", "")
    if verb == "get" and any(path == p or path.startswith(p + "/") for p in READ_PATHS):
        return True, ALLOWED
    return False, f"tidal serves get on {', '.join(READ_PATHS)} only"


def _rules(served: Iterable[Served]) -> list[dict[str, Any]]:
    rules = []
    for entry in served:
        names = [entry.resource, *(f"{entry.resource}/{s}" for s in entry.subresources)]
        rules.append({"verbs": list(entry.verbs), "apiGroups": [entry.group], "resources": names})
    return rules


async def _review(request: web.Request, kind: str) -> dict[str, Any]:
    """The review asked for, in protobuf (kubectl's typed client) or JSON; none is an empty one."""
    review = protobuf.request_object(await request.read() or b"{}", request.content_type)
    if review.get("kind", kind) != kind:
        raise ApiError(400, f"the body must be a {kind}")
    return review


def add_review_routes(router: web.UrlDispatcher, served: list[Served]) -> None:
    """The three self-reviews (their discovery documents: `discovery`)."""

    def handler(plural: str) -> Any:
        group, kind = REVIEWS[plural]

        async def review(request: web.Request) -> web.StreamResponse:
            try:
                asked = await _review(request, kind)
            except ApiError as exc:
                return exc.response()
            spec = asked.get("spec") or {}
            if plural == "selfsubjectreviews":
                status: dict[str, Any] = {"userInfo": {"username": USER, "groups": USER_GROUPS}}
            elif plural == "selfsubjectrulesreviews":
                status = {
                    "resourceRules": _rules(served),
                    "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": list(READ_PATHS)}],
                    "incomplete": False,
                }
            else:
                resource = spec.get("resourceAttributes")
                allowed, reason = (
                    decide(served, resource)
                    if resource is not None
                    else _decide_path(spec.get("nonResourceAttributes") or {})
                )
                status = {"allowed": allowed, "reason": reason}
            body = {
                "apiVersion": f"{group}/v1",
                "kind": kind,
                "metadata": {},
                "spec": spec,
                "status": status,
            }
            return web.json_response(body, status=201)

        return review

    for plural, (group, _) in REVIEWS.items():
        router.add_post(f"/apis/{group}/v1/{plural}", handler(plural))


def discovery() -> dict[str, dict[str, Any]]:
    """The discovery documents of the review groups, by path."""
    documents = {}
    for group in (AUTHORIZATION, AUTHENTICATION):
        resources = [
            {
                "name": plural,
                "singularName": "",
                "namespaced": False,
                "kind": kind,
                "verbs": ["create"],
            }
            for plural, (owner, kind) in REVIEWS.items()
            if owner == group
        ]
        listing = {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/v1",
            "resources": resources,
        }
        documents[f"/apis/{group}"] = {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group)}
        documents[f"/apis/{group}/v1"] = listing
    return documents


def groups() -> list[dict[str, Any]]:
    """The APIGroups for /apis."""
    return [_api_group(group) for group in (AUTHORIZATION, AUTHENTICATION)]


def _api_group(group: str) -> dict[str, Any]:
    version = {"groupVersion": f"{group}/v1", "version": "v1"}
    return {"name": group, "versions": [version], "preferredVersion": version}
