"""Bounds on what a manifest or an admin request may be, with Kubernetes' numbers where it has one.

- Request bodies and manifest files: 3 MiB, the API server's limit on a request body.
- Nesting: 100 levels. Kubernetes' decoders allow 10,000, which Python's recursive parsers cannot
  reach safely; no Knative manifest needs more than about 15.
- YAML aliases: a document may expand to at most 100,000 nodes, counted through aliases without
  expanding them, so an alias bomb ("billion laughs") is refused in microseconds; recursive
  aliases are refused too.
- Labels: keys are qualified names (optional DNS-1123 subdomain prefix of at most 253 characters,
  '/', a name of at most 63), values at most 63 characters of [A-Za-z0-9-_.], starting and ending
  alphanumeric. Annotations: qualified-name keys, at most 256 KiB of keys and values together.

Every check raises InvalidSpec naming the field (docs/security.md).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tidal.api.errors import InvalidSpec

MAX_BODY_BYTES = 3 * 1024 * 1024
MAX_DEPTH = 100
MAX_NODES = 100_000
MAX_LABEL_VALUE = 63
MAX_QUALIFIED_NAME = 63
MAX_PREFIX = 253
MAX_ANNOTATIONS_BYTES = 256 * 1024

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_METADATA_PATHS = (("metadata",), ("spec", "template", "metadata"))


def load_yaml(text: str) -> list[Any]:
    """The documents in `text`, refused if too large, too deep or expanding too far."""
    if len(text) > MAX_BODY_BYTES:
        raise InvalidSpec("", f"manifest is {len(text)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        docs = list(yaml.safe_load_all(text))
    except RecursionError:
        raise InvalidSpec("", f"YAML nested deeper than {MAX_DEPTH} levels") from None
    for index, doc in enumerate(docs):
        check_structure(doc, f"document {index + 1}")
    return docs


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, refused if nested deeper than MAX_DEPTH; ValueError if not JSON."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidSpec("", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    check_structure(value, "body", max_nodes=None)  # no aliases in JSON: the body cap bounds it
    return value


def check_structure(value: Any, what: str, max_nodes: int | None = MAX_NODES) -> None:
    """At most MAX_DEPTH deep, `max_nodes` nodes and MAX_BODY_BYTES of text, with shared
    (aliased) parts counted at each use, and no cycles. Iterative and memoised: the cost is
    linear in distinct nodes, however far aliases would expand."""
    node_limit = max_nodes if max_nodes is not None else float("inf")
    seen: dict[int, tuple[int, int, int]] = {}  # id -> (nodes, characters, height)
    active: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(value, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if not isinstance(node, dict | list):
            continue
        key = id(node)
        if done:
            active.discard(key)
            nodes, chars, height = 1, 0, 1
            items = node.items() if isinstance(node, dict) else ((None, c) for c in node)
            for name, child in items:
                child_nodes, child_chars, child_height = _measure(child, seen)
                nodes += child_nodes
                chars += child_chars + (len(name) if isinstance(name, str) else 0)
                height = max(height, child_height + 1)
            if nodes > node_limit or chars > MAX_BODY_BYTES:
                raise InvalidSpec(
                    what,
                    f"expands to more than {max_nodes} nodes or {MAX_BODY_BYTES} bytes "
                    "(YAML aliases?); refused",
                )
            seen[key] = (nodes, chars, height)
            continue
        if key in active:
            raise InvalidSpec(what, "contains a recursive alias")
        if key in seen:
            if depth + seen[key][2] - 1 > MAX_DEPTH:
                raise InvalidSpec(what, f"nested deeper than {MAX_DEPTH} levels")
            continue
        if depth > MAX_DEPTH:
            raise InvalidSpec(what, f"nested deeper than {MAX_DEPTH} levels")
        active.add(key)
        stack.append((node, depth, True))
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1, False) for child in children)


def _measure(value: Any, seen: dict[int, tuple[int, int, int]]) -> tuple[int, int, int]:
    if isinstance(value, dict | list):
        return seen[id(value)]
    return 1, len(value) if isinstance(value, str) else 0, 0


def check_metadata(doc: dict[str, Any]) -> None:
    """Labels and annotations of the object and of its template follow Kubernetes' rules."""
    for path in _METADATA_PATHS:
        meta: Any = doc
        for part in path:
            meta = meta.get(part) if isinstance(meta, dict) else None
        if not isinstance(meta, dict):
            continue
        prefix = ".".join(path)
        labels = meta.get("labels")
        if isinstance(labels, dict):
            for key, value in labels.items():
                field = f"{prefix}.labels[{key}]"
                _check_key(key, field)
                if isinstance(value, str):
                    _check_label_value(value, field)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            total = 0
            for key, value in annotations.items():
                _check_key(key, f"{prefix}.annotations[{key}]")
                total += len(str(key)) + len(str(value))
            if total > MAX_ANNOTATIONS_BYTES:
                raise InvalidSpec(
                    f"{prefix}.annotations",
                    f"may hold at most {MAX_ANNOTATIONS_BYTES} bytes of keys and values "
                    f"(256 KiB, as Kubernetes), got {total}",
                )


def _check_key(key: Any, field: str) -> None:
    if not isinstance(key, str):
        return  # the model reports non-string keys
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > MAX_PREFIX or not DNS1123_SUBDOMAIN.match(prefix)):
        raise InvalidSpec(
            field,
            f"key prefix must be a DNS-1123 subdomain of at most {MAX_PREFIX} characters",
        )
    if len(name) > MAX_QUALIFIED_NAME or not _NAME.match(name):
        raise InvalidSpec(
            field,
            f"key name must be at most {MAX_QUALIFIED_NAME} characters of [A-Za-z0-9-_.], "
            "starting and ending with a letter or digit",
        )


def _check_label_value(value: str, field: str) -> None:
    if len(value) > MAX_LABEL_VALUE:
        raise InvalidSpec(
            field, f"value must be at most {MAX_LABEL_VALUE} characters, got {len(value)}"
        )
    if value and not _NAME.match(value):
        raise InvalidSpec(
            field,
            "value must be [A-Za-z0-9-_.], starting and ending with a letter or digit, "
            f"got {value!r}",
        )
