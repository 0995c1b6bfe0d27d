"""Kubernetes' `v1` Secret and ConfigMap: values a service's environment takes by reference
(`env[].valueFrom`, `envFrom`) instead of writing them into its manifest
(docs/architecture.md#secrets-and-configmaps).

The rules are the API server's: keys of letters, digits, '-', '_' and '.', at most 1 MiB of
data, a Secret's `data` in base64 and its `stringData` merged into `data` when stored (so that
stored Secrets hold only `data`), and an `immutable` object that may not change.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from tidal.api.errors import InvalidSpec
from tidal.api.manifest import parse_document
from tidal.api.service import KModel, ObjectMeta

SECRET = "Secret"
CONFIG_MAP = "ConfigMap"
KINDS = (SECRET, CONFIG_MAP)
MAX_BYTES = 1 << 20  # the API server's limit on one object's data
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def _keys(values: dict[str, str]) -> dict[str, str]:
    for key in values:
        if len(key) > 253 or not _KEY.match(key) or key in (".", ".."):
            raise ValueError(
                f"{key!r} is not a valid key: letters, digits, '-', '_' and '.', at most 253"
            )
    return values


def _base64(values: dict[str, str]) -> dict[str, str]:
    for key, value in values.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{key}: not base64 (use stringData for plain text)") from None
    return values


class Secret(KModel):
    api_version: Literal["v1"]
    kind: Literal["Secret"]
    metadata: ObjectMeta
    type: str = Field(default="Opaque", max_length=253)
    data: dict[str, str] = Field(default_factory=dict)
    string_data: dict[str, str] = Field(default_factory=dict)
    immutable: bool | None = None

    _check_keys = field_validator("data", "string_data")(_keys)
    _check_base64 = field_validator("data")(_base64)


class ConfigMap(KModel):
    api_version: Literal["v1"]
    kind: Literal["ConfigMap"]
    metadata: ObjectMeta
    data: dict[str, str] = Field(default_factory=dict)
    binary_data: dict[str, str] = Field(default_factory=dict)
    immutable: bool | None = None

    _check_keys = field_validator("data", "binary_data")(_keys)
    _check_base64 = field_validator("binary_data")(_base64)


@dataclass(frozen=True)
class ValidConfigObject:
    """A Secret or ConfigMap as it is stored (a Secret's stringData already in its data), or a
    PersistentVolumeClaim (tidal.api.claims)."""

    kind: str
    namespace: str
    name: str
    doc: dict[str, Any]


def validate_config_object(doc: dict[str, Any]) -> ValidConfigObject:
    """Check a Secret or ConfigMap document; raise InvalidSpec naming every problem."""
    kind = doc.get("kind")
    model: type[Secret] | type[ConfigMap] = Secret if kind == SECRET else ConfigMap
    parsed = parse_document(doc, "v1", model.__name__, model)
    if not parsed.metadata.name:
        raise InvalidSpec("metadata.name", f"a {kind} needs a name")
    stored = parsed.model_dump(by_alias=True, exclude_none=True, exclude={"status"})
    if isinstance(parsed, Secret):
        data = dict(parsed.data)
        for key, value in parsed.string_data.items():  # stringData wins, as in Kubernetes
            data[key] = base64.b64encode(value.encode()).decode()
        stored["data"] = data
        stored.pop("stringData", None)
        size = sum(len(base64.b64decode(v)) for v in data.values())
    else:
        size = sum(len(v.encode()) for v in parsed.data.values())
        size += sum(len(base64.b64decode(v)) for v in parsed.binary_data.values())
    if size > MAX_BYTES:
        raise InvalidSpec("data", f"{size} bytes of data; a {kind} holds at most {MAX_BYTES}")
    namespace = parsed.metadata.namespace or "default"
    return ValidConfigObject(model.__name__, namespace, parsed.metadata.name, stored)


def check_update(current: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """An immutable Secret or ConfigMap keeps its data, as the API server insists."""
    if current is None or not current.get("immutable"):
        return
    fields = ("data", "binaryData", "immutable")
    if any(current.get(f) != new.get(f) for f in fields):
        raise InvalidSpec(
            "data",
            f"{current['kind']} {current['metadata']['name']} is immutable: its data cannot "
            "change (delete it and create it again)",
        )


def contents_of(obj: dict[str, Any]) -> dict[str, bytes]:
    """Each key's value as bytes, as a volume's files hold them."""
    if obj["kind"] == SECRET:
        return {k: base64.b64decode(v) for k, v in obj.get("data", {}).items()}
    raw = {k: base64.b64decode(v) for k, v in obj.get("binaryData", {}).items()}
    raw.update({k: v.encode() for k, v in obj.get("data", {}).items()})
    return raw


def values_of(obj: dict[str, Any]) -> dict[str, str]:
    """What a Secret or ConfigMap gives an environment: each key's value as text."""
    return {key: value.decode("utf-8", "replace") for key, value in contents_of(obj).items()}
