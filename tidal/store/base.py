"""What the controller needs from a resource store; implemented by SQLite and by Kubernetes."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol


class ResourceStore(Protocol):
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list(
        self, kind: str, namespace: str | None = None, labels: dict[str, str] | None = None
    ) -> list[dict[str, Any]]: ...

    def put(self, obj: dict[str, Any], expected_version: str | None = None) -> dict[str, Any]: ...

    def delete(self, kind: str, namespace: str, name: str) -> bool: ...

    def transaction(self) -> AbstractContextManager[None]: ...

    def close(self) -> None: ...
