"""Kubernetes' protobuf bodies, as kubectl's typed commands send them, read into the objects a
JSON body would give (tidal.controller.kubeapi.protobuf)."""

from __future__ import annotations

import pytest

from tidal.controller.kubeapi.protobuf import UndecodableBody, decode, request_object
from tidal.controller.kubeapi.status import ApiError

# The body `kubectl create secret generic x --from-literal=a=b` (kubectl 1.32) sent: Go writes
# every string field, empty ones too.
# magic, typeMeta {v1, Secret}, raw {metadata {name x, empty strings}, data {a: b}, type ""},
# contentEncoding "", contentType ""
KUBECTL_SECRET = bytes.fromhex(
    "6b387300 0a0c 0a027631 1206536563726574"
    " 121d 0a11 0a0178 1200 1a00 2200 2a00 3200 3800 4200 1206 0a0161 120162 1a00"
    " 1a00 2200"
)


def test_a_secret_kubectl_sent_reads_as_its_json() -> None:
    assert decode(KUBECTL_SECRET) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "x"},
        "data": {"a": "Yg=="},  # base64, as in JSON
    }


# `kubectl create namespace ml`: typeMeta {v1, Namespace}, raw {metadata {name ml}}.
KUBECTL_NAMESPACE = bytes.fromhex(
    "6b387300 0a0f 0a027631 12094e616d657370616365 1206 0a04 0a026d6c"
)


def test_a_namespace_reads_with_its_name_only() -> None:
    assert decode(KUBECTL_NAMESPACE) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "ml"},
    }


def test_bodies_tidal_does_not_read_say_why() -> None:
    with pytest.raises(UndecodableBody, match="no k8s"):
        decode(b'{"kind": "Secret"}')
    deployment = KUBECTL_SECRET.replace(
        b"\x0a\x0c\x0a\x02v1\x12\x06Secret", b"\x0a\x0c\x0a\x02v1\x12\x06Deploy"
    )
    with pytest.raises(UndecodableBody, match=r"only for Secret, ConfigMap, .*, not Deploy"):
        decode(deployment)
    with pytest.raises(UndecodableBody, match="cannot be read"):
        decode(KUBECTL_SECRET[:-9])
    not_utf8 = KUBECTL_SECRET.replace(b"\x0a\x01x", b"\x0a\x01\xff")  # the name's one byte
    with pytest.raises(UndecodableBody, match="bad UTF-8"):
        decode(not_utf8)


def test_a_json_body_nested_past_tidals_limit_is_a_400() -> None:
    with pytest.raises(ApiError) as err:
        request_object(b"[" * 100_000 + b"]" * 100_000, "application/json")
    assert err.value.code == 400
    assert "the body is refused: JSON nested deeper than 100 levels" in str(err.value)
