"""`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`: the rows kubectl prints, with the
columns Knative's CRDs declare."""

from __future__ import annotations

from typing import Any

from tidal.controller.kubeapi.resources import Resource


def wants_table(accept: str) -> bool:
    return any(
        "as=Table" in part and "g=meta.k8s.io" in part and "v=v1" in part.replace(" ", "")
        for part in accept.split(",")
    )


def _cell(value: Any, kind: str) -> Any:
    if kind == "integer":
        return int(value) if value not in ("", None) else None
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
