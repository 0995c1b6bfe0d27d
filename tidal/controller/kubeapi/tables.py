"""`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`: the rows kubectl prints, with the
columns Knative's CRDs declare."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from tidal.controller.kubeapi.resources import Resource


def wants_table(accept: str) -> bool:
    """Whether one of the accepted types is a meta.k8s.io/v1 Table."""
    for media in accept.split(","):
        params = dict(
            part.strip().partition("=")[::2] for part in media.split(";")[1:] if "=" in part
        )
        if (params.get("as"), params.get("g"), params.get("v")) == ("Table", "meta.k8s.io", "v1"):
            return True
    return False


def age(timestamp: str, now: float | None = None) -> str:
    """How long ago, as kubectl prints ages (`45s`, `3m20s`, `5h`, `12d`)."""
    if not timestamp:
        return "<unknown>"
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    seconds = max(0, int((time.time() if now is None else now) - then))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d" if days < 730 else f"{days // 365}y"


def _cell(value: Any, kind: str) -> Any:
    if kind == "integer":
        return int(value) if value not in ("", None) else None
    if kind == "date":
        return age(str(value or "").replace("Z", "+0000"))
    return "" if value is None else value


def table(
    resource: Resource,
    objects: list[dict[str, Any]],
    include_object: str = "Metadata",
    resource_version: str = "",
    headers: bool = True,
) -> dict[str, Any]:
    rows = []
    for obj in objects:
        row: dict[str, Any] = {
            "cells": [_cell(c.value(obj), c.type) for c in resource.columns],
        }
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    columns = [
        {
            "name": c.name,
            "type": c.type,
            "format": "name" if c.name == "Name" else "",
            "description": c.description or c.name,
            "priority": c.priority,
        }
        for c in resource.columns
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns if headers else [],
        "rows": rows,
    }
