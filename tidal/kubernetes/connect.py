"""An ApiClient of the official client: in-cluster credentials, or a kubeconfig and context."""

from __future__ import annotations

from kubernetes import config
from kubernetes.client import ApiClient, Configuration


def api_client(kubeconfig: str | None = None, context: str | None = None) -> ApiClient:
    """In a pod without an explicit kubeconfig, its service account; else the kubeconfig."""
    configuration = Configuration()
    if kubeconfig is None and context is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
            return ApiClient(configuration)
        except config.ConfigException:
            pass
    config.load_kube_config(
        config_file=kubeconfig, context=context, client_configuration=configuration
    )
    return ApiClient(configuration)
