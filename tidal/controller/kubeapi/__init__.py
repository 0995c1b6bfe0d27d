"""The Kubernetes API for tidal's resources, so that kubectl works against a local tidal
(docs/kubectl.md)."""

from __future__ import annotations

from tidal.controller.kubeapi.server import add_routes

__all__ = ["add_routes"]
