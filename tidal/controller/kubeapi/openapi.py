"""OpenAPI v3 documents for tidal's API groups, built from the same pydantic models that
validate manifests, so `kubectl explain ksvc.spec.template` shows exactly what tidal accepts.

The PATCH operations declare the `fieldValidation` parameter: kubectl then leaves validation to
the server (which rejects unknown fields) instead of fetching a schema to check on its side.

OpenAPI v2, which kubectl before 1.27 reads (as protobuf, gnostic's openapi_v2.Document), lists
only the PATCH operations and their `dryRun` parameter, which is what those clients look for
before `--dry-run=server`; it has no definitions, so they leave validation to the server, as for
a custom resource without a schema. `kubectl explain` needs kubectl 1.27 or newer (it reads v3).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from tidal.api.domain_mapping import DomainMapping
from tidal.api.resource_policy import ResourcePolicy
from tidal.api.service import (
    KModel,
    ObjectMeta,
    RevisionSpec,
    RevisionTemplate,
    Service,
    TrafficTarget,
)
from tidal.controller.kubeapi.resources import GROUP_VERSIONS, Resource

DESCRIPTIONS = {
    "Service": "A Knative Service: a template for revisions of a container and the traffic "
    "split between them. tidal runs each revision's replicas and scales them with requests.",
    "Configuration": "The template of a Service and its newest revisions (read-only; derived "
    "from the Service).",
    "Revision": "An immutable snapshot of a Service's template; created by tidal on every change "
    "of spec.template (read-only).",
    "Route": "The resolved traffic of a Service: which revisions get which percentage and the "
    "URLs of tags (read-only).",
    "ResourcePolicy": "Placement of replicas on pools: fill units in order, up to each unit's "
    "max, then spill to the next (ACK's ResourcePolicy).",
    "DomainMapping": "A domain of your own (the mapping's name) for a Service: the gateway routes "
    "it as the Service's own host.",
}

FIELDS = {
    ("ServiceSpec", "template"): "The revision template: every change makes a new Revision.",
    ("DomainMappingSpec", "ref"): "The Knative Service (serving.knative.dev/v1, same namespace) "
    "that the domain routes to.",
    ("ServiceSpec", "traffic"): "How requests are split between revisions (default: all to the "
    "latest ready one). Percentages sum to 100.",
    ("RevisionTemplate", "metadata"): "Labels and annotations of the revisions; "
    "autoscaling.knative.dev/* and tidal.dev/* annotations tune scaling.",
    ("RevisionTemplate", "spec"): "What each replica runs.",
    ("RevisionSpec", "containers"): "The serving container (the one with a port) and any sidecars.",
    ("RevisionSpec", "initContainers"): "Run to completion, one after the other, before the "
    "containers start (e.g. to fetch the model).",
    ("RevisionSpec", "containerConcurrency"): "Most requests one replica serves at a time "
    "(0: no limit).",
    ("RevisionSpec", "timeoutSeconds"): "Longest a request may take, in seconds (0: 300).",
    ("RevisionSpec", "responseStartTimeoutSeconds"): "Longest a request may wait for its "
    "response to start, in seconds (0: no limit).",
    ("RevisionSpec", "idleTimeoutSeconds"): "Longest a response may go without a byte from the "
    "replica, in seconds (0: no limit).",
    ("RevisionSpec", "volumes"): "secret, configMap, projected, emptyDir or "
    "persistentVolumeClaim volumes; on one machine they are mounted in containers only.",
    ("Container", "volumeMounts"): "Where the volumes appear; all but emptyDir read-only.",
    ("Container", "command"): "The process to run; locally tidal runs it with $PORT set.",
    ("Container", "image"): "The container image (needed on Kubernetes only).",
    ("Container", "workingDir"): "Folder the command runs in.",
    ("Container", "livenessProbe"): "httpGet, tcpSocket or grpc on the serving port, or exec; a "
    "replica that fails it failureThreshold times in a row is replaced.",
    ("Container", "startupProbe"): "Checked before readiness and liveness until it passes once; "
    "a replica that fails it failureThreshold times in a row is replaced.",
    ("Container", "env"): "Environment variables (PORT and K_* are set by tidal).",
    ("Container", "resources"): "cpu, memory and nvidia.com/gpu requests and limits; they place "
    "replicas on pools.",
    ("TrafficTarget", "revisionName"): "A revision by name.",
    ("TrafficTarget", "latestRevision"): "Follow the latest ready revision.",
    ("TrafficTarget", "percent"): "Share of the requests, 0-100.",
    ("TrafficTarget", "tag"): "Also reachable at <tag>-<service>.<namespace>.<domain>.",
}


class RevisionObject(KModel):
    api_version: Literal["serving.knative.dev/v1"]
    kind: Literal["Revision"]
    metadata: ObjectMeta
    spec: RevisionSpec
    status: dict[str, Any] | None = None


class RouteSpec(KModel):
    traffic: list[TrafficTarget] = Field(default_factory=list)


class RouteObject(KModel):
    api_version: Literal["serving.knative.dev/v1"]
    kind: Literal["Route"]
    metadata: ObjectMeta
    spec: RouteSpec
    status: dict[str, Any] | None = None


class ConfigurationSpec(KModel):
    template: RevisionTemplate


class ConfigurationObject(KModel):
    api_version: Literal["serving.knative.dev/v1"]
    kind: Literal["Configuration"]
    metadata: ObjectMeta
    spec: ConfigurationSpec
    status: dict[str, Any] | None = None


MODELS: dict[str, type[BaseModel]] = {
    "Service": Service,
    "Configuration": ConfigurationObject,
    "Revision": RevisionObject,
    "Route": RouteObject,
    "ResourcePolicy": ResourcePolicy,
    "DomainMapping": DomainMapping,
}
REF = "#/components/schemas/{model}"


def _clean(node: Any) -> Any:
    """pydantic's JSON schema as the OpenAPI Kubernetes publishes: no titles, optional fields
    as the type itself rather than anyOf-with-null, int-or-string where a field takes both."""
    if isinstance(node, list):
        return [_clean(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _clean(v) for k, v in node.items() if k != "title"}
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o != {"type": "null"}]
        node.pop("default", None) if node.get("default") is None else None
        if len(options) == 1:
            option = options[0]
            node.update({"allOf": [option]} if "$ref" in option else option)
        else:
            node["x-kubernetes-int-or-string"] = True
    if node.get("additionalProperties") is True:
        node.pop("additionalProperties")
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node


def _operation(resource: Resource, verb: str, ref: str, writes: bool) -> dict[str, Any]:
    params = [{"name": "dryRun", "in": "query", "schema": {"type": "string"}}] if writes else []
    if writes:
        params.append({"name": "fieldValidation", "in": "query", "schema": {"type": "string"}})
    return {
        "operationId": f"{verb}{resource.kind}",
        "parameters": params,
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": ref}}},
            }
        },
        "x-kubernetes-group-version-kind": {
            "group": resource.group,
            "version": resource.version,
            "kind": resource.kind,
        },
    }


@cache
def group_version_document(group_version: str) -> dict[str, Any]:
    resources = GROUP_VERSIONS[group_version]
    _, schema = models_json_schema(
        [(MODELS[r.kind], "validation") for r in resources], ref_template=REF, by_alias=True
    )
    schemas = {name: _clean(s) for name, s in schema.get("$defs", {}).items()}
    for (model, field), text in FIELDS.items():
        if model in schemas:
            prop = schemas[model]["properties"][field]
            if "$ref" in prop:  # OpenAPI 3.0 ignores what sits beside a $ref
                prop["allOf"] = [{"$ref": prop.pop("$ref")}]
            prop["description"] = text
    paths: dict[str, Any] = {}
    for resource in resources:
        name = MODELS[resource.kind].__name__
        top = schemas[name]
        top["description"] = DESCRIPTIONS[resource.kind]
        top["x-kubernetes-group-version-kind"] = [
            {"group": resource.group, "version": resource.version, "kind": resource.kind}
        ]
        ref = REF.format(model=name)
        base = f"/apis/{group_version}/namespaces/{{namespace}}/{resource.plural}"
        w = resource.writable
        paths[base] = {
            "get": _operation(resource, "list", ref, False),
            **({"post": _operation(resource, "create", ref, True)} if w else {}),
        }
        paths[base + "/{name}"] = {
            "get": _operation(resource, "read", ref, False),
            **(
                {
                    "put": _operation(resource, "replace", ref, True),
                    "patch": _operation(resource, "patch", ref, True),
                    "delete": _operation(resource, "delete", ref, True),
                }
                if w
                else {}
            ),
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "tidal", "version": group_version},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def document_hash(group_version: str) -> str:
    text = json.dumps(group_version_document(group_version), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32].upper()


def root() -> dict[str, Any]:
    return {
        "paths": {
            f"apis/{gv}": {"serverRelativeURL": f"/openapi/v3/apis/{gv}?hash={document_hash(gv)}"}
            for gv in GROUP_VERSIONS
        }
    }


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _message(number: int, payload: bytes | str) -> bytes:
    """One length-delimited protobuf field (a string or a nested message)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _v2_patch_path(group_version: str, resource: Resource) -> bytes:
    """NamedPathItem{name, PathItem{patch: Operation{parameters: [dryRun in query],
    vendor_extension: [x-kubernetes-group-version-kind]}}}."""
    query = _message(2, "query") + _message(4, "dryRun") + _message(6, "string")
    parameter = _message(1, _message(2, _message(3, query)))  # Parameter.non_body.query
    gvk = f"group: {resource.group}\nkind: {resource.kind}\nversion: {resource.version}\n"
    extension = _message(1, "x-kubernetes-group-version-kind") + _message(2, _message(2, gvk))
    operation = (
        _message(5, f"patch{resource.kind}") + _message(8, parameter) + _message(13, extension)
    )
    path = f"/apis/{group_version}/namespaces/{{namespace}}/{resource.plural}/{{name}}"
    return _message(1, path) + _message(2, _message(8, operation))


@cache
def v2_protobuf() -> bytes:
    paths = b"".join(
        _message(2, _v2_patch_path(gv, r))
        for gv, resources in GROUP_VERSIONS.items()
        for r in resources
        if r.writable
    )
    info = _message(1, "tidal") + _message(2, "v2")
    return _message(1, "2.0") + _message(2, info) + _message(8, paths)


V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
V2_JSON = {"swagger": "2.0", "info": {"title": "tidal", "version": "v2"}, "paths": {}}
