"""Cluster-local DNS names for Knative Services on Kubernetes
(docs/kubernetes.md#how-it-maps).

Knative gives each Service a Kubernetes Service of its name, an ExternalName to its local
gateway, so that a pod can call `http://hello.default.svc.cluster.local`. tidal does the same:
`<name>` in the Service's namespace, of type ExternalName, pointing at the `tidal-gateway`
Service (port 80), which routes by the Host header. A Kubernetes Service of that name that tidal
did not make is left alone, and the name then is not tidal's (a warning says so).
"""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from tidal.runtime.deployments import MANAGED_BY

log = logging.getLogger("tidal.kubernetes")
KNATIVE_SERVICE_LABEL = "serving.knative.dev/service"


class ServiceAddresses:
    """Makes and removes the ExternalName Services; every call is one synchronous request, as
    the store's are."""

    def __init__(self, api: ApiClient, gateway_host: str, timeout_s: float = 10.0) -> None:
        self._core = client.CoreV1Api(api)
        self.gateway_host = gateway_host  # tidal-gateway.<tidal's namespace>.svc.cluster.local
        self._timeout = timeout_s

    def publish(self, namespace: str, name: str) -> None:
        try:
            self._core.create_namespaced_service(
                namespace, self.manifest(namespace, name), _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status != 409:
                log.warning("no cluster-local name for %s/%s: %s", namespace, name, exc.reason)
                return
            existing = self._read(namespace, name)
            if existing is not None and not _ours(existing):
                log.warning(
                    "a Service %s/%s that tidal did not make exists: %s.%s.svc.cluster.local "
                    "does not reach the Knative Service of that name",
                    namespace,
                    name,
                    name,
                    namespace,
                )

    def withdraw(self, namespace: str, name: str) -> None:
        existing = self._read(namespace, name)
        if existing is None or not _ours(existing):
            return
        try:
            self._core.delete_namespaced_service(name, namespace, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not remove Service %s/%s: %s", namespace, name, exc.reason)

    def manifest(self, namespace: str, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {**MANAGED_BY, KNATIVE_SERVICE_LABEL: name},
            },
            "spec": {
                "type": "ExternalName",
                "externalName": self.gateway_host,
                "ports": [{"name": "http", "port": 80}],
            },
        }

    def _read(self, namespace: str, name: str) -> Any:
        try:
            return self._core.read_namespaced_service(
                name, namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not read Service %s/%s: %s", namespace, name, exc.reason)
            return None


def _ours(service: Any) -> bool:
    labels = service.metadata.labels or {}
    return all(labels.get(k) == v for k, v in MANAGED_BY.items())
