"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902, the `jsonpatch` library),
strategic merge patch (treated as a merge patch, as the API server does for custom resources,
after dropping its `$` directives) and server-side apply (the applied configuration owns `spec`).
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import yaml

from tidal.api.errors import InvalidSpec
from tidal.api.limits import load_yaml, parse_json
from tidal.controller.kubeapi.status import ApiError

MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _without_directives(patch: Any) -> Any:
    if isinstance(patch, dict):
        return {
            k: _without_directives(v)
            for k, v in patch.items()
            if not k.startswith("$") and not k.startswith("$setElementOrder/")
        }
    if isinstance(patch, list):
        return [
            _without_directives(v) for v in patch if not (isinstance(v, dict) and "$patch" in v)
        ]
    return patch


def json_body(raw: bytes, what: str = "the body") -> Any:
    """A request body as JSON, within tidal's limits (tidal.api.limits: depth, size);
    ApiError 400 saying why not."""
    try:
        return parse_json(raw)
    except InvalidSpec as exc:
        raise ApiError(400, f"{what} is refused: {exc}") from None
    except ValueError as exc:
        raise ApiError(400, f"{what} is not JSON: {exc}") from None


def parse_body(content_type: str, raw: bytes) -> Any:
    if content_type != APPLY:
        return json_body(raw, "the body of the request")
    try:  # server-side apply's YAML: one document, without alias bombs
        docs = load_yaml(raw.decode())
    except InvalidSpec as exc:
        raise ApiError(400, f"the body of the request is refused: {exc}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ApiError(400, f"the body of the request was in an unknown format: {exc}") from None
    if len(docs) != 1:
        raise ApiError(400, f"the body of the request must be one document, not {len(docs)}")
    return docs[0]


def apply_patch(current: dict[str, Any], content_type: str, raw: bytes) -> dict[str, Any]:
    """The object after the patch; `current` is not changed."""
    body = parse_body(content_type, raw)
    if content_type == JSON:
        try:
            return jsonpatch.apply_patch(current, body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
            raise ApiError(422, f"the server rejected our request: {exc}", "Invalid") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the patch must be an object")
    if content_type == MERGE:
        return merge_patch(current, body)
    if content_type == STRATEGIC:
        return merge_patch(current, _without_directives(body))
    if content_type == APPLY:
        return server_side_apply(current, body)
    raise ApiError(415, f"the patch type {content_type!r} is not supported")


def server_side_apply(current: dict[str, Any] | None, applied: dict[str, Any]) -> dict[str, Any]:
    """One field manager's apply: its `spec` replaces the stored one (so a field removed from
    the configuration is removed), its labels and annotations are merged over the stored ones."""
    if current is None:
        return copy.deepcopy(applied)
    result = copy.deepcopy(current)
    meta = applied.get("metadata") or {}
    for key in ("labels", "annotations"):
        if meta.get(key):
            result["metadata"][key] = {**result["metadata"].get(key, {}), **meta[key]}
    if "spec" in applied:
        result["spec"] = copy.deepcopy(applied["spec"])
    return result
