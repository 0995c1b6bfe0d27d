"""Label and field selectors, in the syntax the Kubernetes API takes
(`app=web,tier!=db,env in (a,b),!canary`; `metadata.name=hello`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tidal.controller.kubeapi.status import ApiError

Match = Callable[[dict[str, Any]], bool]
_KEY = r"[A-Za-z0-9_.\-/]+"
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s+\(([^)]*)\)$")
_CMP = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*([A-Za-z0-9_.\-]*)$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")


def _terms(selector: str) -> list[str]:
    """Split at commas outside parentheses."""
    terms, depth, start = [], 0, 0
    for index, char in enumerate(selector):
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(selector[start:index])
            start = index + 1
    terms.append(selector[start:])
    return [t.strip() for t in terms if t.strip()]


def label_selector(selector: str) -> Match:
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _terms(selector):
        if m := _SET.match(term):
            key, op, values = m[1], m[2], {v.strip() for v in m[3].split(",") if v.strip()}
            if op == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        elif m := _CMP.match(term):
            key, op, value = m[1], m[2], m[3]
            if op == "!=":
                checks.append(lambda labels, k=key, v=value: labels.get(k) != v)
            else:
                checks.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif m := _EXISTS.match(term):
            negate, key = bool(m[1]), m[2]
            checks.append(lambda labels, k=key, n=negate: (k in labels) != n)
        else:
            raise ApiError(400, f"unable to parse requirement: {term!r} in labelSelector")
    return lambda obj: all(c(obj["metadata"].get("labels") or {}) for c in checks)


def _field(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _field_terms(selector: str) -> list[tuple[str, str, str]]:
    """(key, operator, value) of each term of a field selector."""
    found = []
    for term in _terms(selector):
        key, op, value = re.split(r"(==|!=|=)", term, maxsplit=1) if "=" in term else (term, "", "")
        if not op:
            raise ApiError(400, f"invalid field selector: {term!r}")
        found.append((key.strip(), op, value.strip()))
    return found


def pinned_name(selector: str) -> str | None:
    """The name a field selector pins, when it is only `metadata.name=NAME` (kubectl's for one
    object)."""
    terms = _field_terms(selector)
    if len(terms) != 1:
        return None
    key, op, value = terms[0]
    if key != "metadata.name" or op == "!=":
        return None
    return value or None


def field_selector(selector: str) -> Match:
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for key, op, value in _field_terms(selector):
        if op == "!=":
            checks.append(lambda o, k=key, v=value: _field(o, k) != v)
        else:
            checks.append(lambda o, k=key, v=value: _field(o, k) == v)
    return lambda obj: all(c(obj) for c in checks)


def matcher(query: dict[str, str] | Any) -> Match:
    """Both selectors of a request's query, combined."""
    labels = label_selector(query.get("labelSelector", ""))
    fields = field_selector(query.get("fieldSelector", ""))
    return lambda obj: labels(obj) and fields(obj)
