"""Kubernetes' protobuf encoding of the core objects tidal keeps, as kubectl's typed commands
send them (`kubectl create secret|configmap|namespace|serviceaccount`, `kubectl auth`:
docs/kubectl.md#what-is-served).

A body is the magic `k8s\\0`, then a `runtime.Unknown` whose `typeMeta` names the kind and whose
`raw` is the object. The messages below are the fields tidal reads of Kubernetes'
`generated.proto` (k8s.io/api/core/v1, k8s.io/apimachinery), with their field numbers, read as
proto3 (the wire format is the same; strings must be UTF-8 and empty ones count as unset); any
other field is skipped as protobuf skips unknown fields. The result is the object as JSON would
have given it (a Secret's `data` in base64), so it takes the same path as a JSON body.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message, message_factory

from tidal.controller.kubeapi.patch import json_body
from tidal.controller.kubeapi.status import ApiError

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
_Field = descriptor_pb2.FieldDescriptorProto
STRING, BYTES, BOOL = _Field.TYPE_STRING, _Field.TYPE_BYTES, _Field.TYPE_BOOL
# name: [(field, number, scalar type | message name | ("map", value type))]
_MESSAGES: dict[str, list[tuple[str, int, Any]]] = {
    "TypeMeta": [("apiVersion", 1, STRING), ("kind", 2, STRING)],
    "Unknown": [("typeMeta", 1, "TypeMeta"), ("raw", 2, BYTES)],
    "ObjectMeta": [
        ("name", 1, STRING),
        ("generateName", 2, STRING),
        ("namespace", 3, STRING),
        ("labels", 11, ("map", STRING)),
        ("annotations", 12, ("map", STRING)),
    ],
    "Secret": [
        ("metadata", 1, "ObjectMeta"),
        ("data", 2, ("map", BYTES)),
        ("type", 3, STRING),
        ("stringData", 4, ("map", STRING)),
        ("immutable", 5, BOOL),
    ],
    "ConfigMap": [
        ("metadata", 1, "ObjectMeta"),
        ("data", 2, ("map", STRING)),
        ("binaryData", 3, ("map", BYTES)),
        ("immutable", 4, BOOL),
    ],
    # `kubectl create namespace` and `kubectl create serviceaccount` send a name only.
    "Namespace": [("metadata", 1, "ObjectMeta")],
    "ServiceAccount": [("metadata", 1, "ObjectMeta")],
    # `kubectl auth can-i [--list]` and `kubectl auth whoami` (tidal.controller.kubeapi.access).
    "SelfSubjectAccessReview": [("metadata", 1, "ObjectMeta"), ("spec", 2, "AccessReviewSpec")],
    "AccessReviewSpec": [
        ("resourceAttributes", 1, "ResourceAttributes"),
        ("nonResourceAttributes", 2, "NonResourceAttributes"),
    ],
    "ResourceAttributes": [
        ("namespace", 1, STRING),
        ("verb", 2, STRING),
        ("group", 3, STRING),
        ("version", 4, STRING),
        ("resource", 5, STRING),
        ("subresource", 6, STRING),
        ("name", 7, STRING),
    ],
    "NonResourceAttributes": [("path", 1, STRING), ("verb", 2, STRING)],
    "SelfSubjectRulesReview": [("metadata", 1, "ObjectMeta"), ("spec", 2, "RulesReviewSpec")],
    "RulesReviewSpec": [("namespace", 1, STRING)],
    "SelfSubjectReview": [("metadata", 1, "ObjectMeta")],
}
KINDS = (
    "Secret",
    "ConfigMap",
    "Namespace",
    "ServiceAccount",
    "SelfSubjectAccessReview",
    "SelfSubjectRulesReview",
    "SelfSubjectReview",
)


class UndecodableBody(ValueError):
    """The body is not Kubernetes protobuf of a kind tidal reads; says why."""


def request_object(raw: bytes, content_type: str) -> dict[str, Any]:
    """A request's body as the object it carries: Kubernetes protobuf (kubectl's typed
    commands) or JSON; ApiError saying why it cannot be read."""
    if content_type == CONTENT_TYPE:
        try:
            return decode(raw)
        except UndecodableBody as exc:
            raise ApiError(415, f"the protobuf body cannot be read: {exc}") from None
    doc = json_body(raw)
    if not isinstance(doc, dict):
        raise ApiError(400, "the body must be an object")
    return doc


def decode(raw: bytes) -> dict[str, Any]:
    """The object in a protobuf body, as a JSON body would have given it."""
    if not raw.startswith(MAGIC):
        raise UndecodableBody("not Kubernetes protobuf (no k8s\\0 prefix)")
    envelope = _parse("Unknown", raw[len(MAGIC) :])
    kind = envelope.typeMeta.kind
    if kind not in KINDS:
        raise UndecodableBody(
            f"tidal reads protobuf only for {', '.join(KINDS)}, not {kind or 'this'}: send "
            "JSON (kubectl apply -f, or --dry-run=client -o yaml | kubectl apply -f -)"
        )
    # Go writes every field, empty strings too; as proto3 they read as unset and are left out.
    try:
        obj = json_format.MessageToDict(_parse(kind, envelope.raw))
    except json_format.Error as exc:
        raise UndecodableBody(f"the {kind} cannot be read: {exc}") from None
    return {"apiVersion": envelope.typeMeta.apiVersion, "kind": kind, "metadata": {}, **obj}


def _parse(name: str, raw: bytes) -> message.Message:
    parsed = _classes()[name]()
    try:  # as proto3, a string that is not UTF-8 is refused here
        parsed.ParseFromString(raw)
    except message.DecodeError as exc:
        raise UndecodableBody(f"the {name} message cannot be read: {exc}") from None
    return parsed


@cache
def _classes() -> dict[str, type[message.Message]]:
    package = "tidal.kubernetes"
    file = descriptor_pb2.FileDescriptorProto(
        name="tidal/kubernetes.proto", package=package, syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        proto = file.message_type.add(name=name)
        for field, number, kind in fields:
            entry = proto.field.add(name=field, number=number, json_name=field)
            entry.label = _Field.LABEL_OPTIONAL
            if isinstance(kind, tuple):  # map<string, value>: a repeated entry message
                map_entry = proto.nested_type.add(name=f"{field[0].upper()}{field[1:]}Entry")
                map_entry.options.map_entry = True
                map_entry.field.add(name="key", number=1, type=STRING, label=_Field.LABEL_OPTIONAL)
                map_entry.field.add(
                    name="value", number=2, type=kind[1], label=_Field.LABEL_OPTIONAL
                )
                entry.label = _Field.LABEL_REPEATED
                entry.type = _Field.TYPE_MESSAGE
                entry.type_name = f".{package}.{name}.{map_entry.name}"
            elif isinstance(kind, str):
                entry.type = _Field.TYPE_MESSAGE
                entry.type_name = f".{package}.{kind}"
            else:
                entry.type = kind
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for name in _MESSAGES
    }
