"""Shared fixtures: manifests as users write them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

HELLO: dict[str, Any] = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "hello", "namespace": "default"},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {"command": ["python", "app.py"], "env": [{"name": "TARGET", "value": "x"}]}
                ]
            }
        }
    },
}


@pytest.fixture
def hello_doc() -> dict[str, Any]:
    return copy.deepcopy(HELLO)
