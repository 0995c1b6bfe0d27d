"""Everything `tidal kubernetes manifests` prints to install tidal on a cluster.

CRDs for tidal's resources (Knative/ACK-shaped specs and statuses kept as written, hence
x-kubernetes-preserve-unknown-fields), the namespace, RBAC with only the verbs the controller
uses, the config (pools and autoscaler defaults), a volume for metric history, the controller
Deployment, the gateway Deployment, the Services in front of them, and the admission webhook
that checks kubectl's writes as `tidal apply` does. Only the leader among controller replicas
listens, so only it is Ready behind the admin and webhook Services.

The admin API needs a bearer token: a Secret made with a fresh random token each time the
manifests are rendered (keep the rendered file, or pass the token to render the same one again),
given to the controller and the gateways as TIDAL_TOKEN. The Service users' traffic reaches,
tidal-gateway, selects only gateway pods, which have no admin port; tidal-admin is ClusterIP.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import yaml

from tidal.kubernetes.spec_watch import WATCHED_KINDS
from tidal.kubernetes.webhook import DERIVED_KINDS
from tidal.security.localca import issue_once
from tidal.store.kubernetes import CustomResource, Resources, custom_resources

APP = "tidal-controller"
LEASE = "tidal-controller"
GATEWAY_PORT = 8080
ADMIN_PORT = 8081
CONFIG_PATH = "/etc/tidal/tidal.yaml"
DATA_DIR = "/var/lib/tidal"
DEFAULT_IMAGE = "ghcr.io/tidal-dev/tidal:0.1.0"
DEFAULT_CONFIG: dict[str, Any] = {
    "pools": [
        {"name": "reserved", "kind": "reserved", "labels": {}},
        {
            "name": "elastic",
            "kind": "elastic",
            "labels": {"type": "virtual-kubelet"},
            "startupDelay": "0s",
        },
    ],
    "autoscaler": {
        "container-concurrency-target-default": 100,
        "container-concurrency-target-percentage": 70,
        "stable-window": "60s",
        "scale-to-zero-grace-period": "30s",
    },
    "deployment": {"progress-deadline": "600s"},
}
# Knative's own short names and categories, given where tidal serves Knative's API groups, so
# that `kubectl get ksvc` and `kubectl get knative` work as on Knative.
KNATIVE_SHORT_NAMES = {
    "Service": ["kservice", "ksvc"],
    "Revision": ["rev"],
    "Route": ["rt"],
    "DomainMapping": ["dm"],
}
KNATIVE_CATEGORIES = ["all", "knative", "serving"]
LABELS = {"app.kubernetes.io/name": APP, "app.kubernetes.io/part-of": "tidal"}
GATEWAY = "tidal-gateway"
TOKEN_SECRET = "tidal-admin-token"
TOKEN_KEY = "token"
TOKEN_ENV = {
    "name": "TIDAL_TOKEN",
    "valueFrom": {"secretKeyRef": {"name": TOKEN_SECRET, "key": TOKEN_KEY}},
}
WEBHOOK = "tidal-webhook"
WEBHOOK_PORT = 8443
WEBHOOK_SECRET = "tidal-webhook-tls"
WEBHOOK_DIR = "/etc/tidal-webhook"
RESTRICTED = {  # the container security context of both of tidal's own Deployments
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


@dataclass(frozen=True)
class WebhookTLS:
    """PEM of the admission webhook's certificate, its key, and the CA the API server checks it
    against."""

    ca_cert: bytes
    cert: bytes
    key: bytes

    @classmethod
    def issue(cls, namespace: str) -> WebhookTLS:
        """A fresh certificate for the webhook's Service, from a CA made for it alone."""
        service = f"{WEBHOOK}.{namespace}.svc"
        return cls(*issue_once([service, f"{service}.cluster.local"], "tidal webhook CA"))


def manifests(
    namespace: str = "tidal-system",
    image: str = DEFAULT_IMAGE,
    config: dict[str, Any] | None = None,
    token: str | None = None,
    webhook_tls: WebhookTLS | None = None,
    api_groups: str = "tidal",
) -> list[dict[str, Any]]:
    """The install, in apply order; `token` defaults to a new random one, `webhook_tls` to a
    new certificate, `api_groups` says where the CRDs go (tidal.store.kubernetes). The webhook
    comes last: it refuses writes until the controller serves it."""
    tls = webhook_tls or WebhookTLS.issue(namespace)
    resources = custom_resources(api_groups)
    return [
        *(crd(resource) for resource in resources.values()),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        _meta("v1", "ServiceAccount", namespace),
        *rbac(namespace, resources),
        config_map(namespace, config or DEFAULT_CONFIG),
        token_secret(namespace, token or secrets.token_urlsafe(32)),
        webhook_secret(namespace, tls),
        state_volume(namespace),
        controller(namespace, image, tls, api_groups),
        gateway(namespace, image),
        _service(namespace, "tidal-gateway", 80, GATEWAY_PORT, GATEWAY),
        _service(namespace, "tidal-admin", ADMIN_PORT, ADMIN_PORT, APP),
        _service(namespace, WEBHOOK, 443, WEBHOOK_PORT, APP, "https"),
        validating_webhook(namespace, tls, resources),
    ]


class _NoAliases(yaml.SafeDumper):
    """Write shared label maps out in full: no YAML anchors in manifests people will read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(docs: list[dict[str, Any]]) -> str:
    return yaml.dump_all(docs, Dumper=_NoAliases, sort_keys=False)


def crd(resource: CustomResource) -> dict[str, Any]:
    preserved = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    names: dict[str, Any] = {
        "kind": resource.kind,
        "listKind": f"{resource.kind}List",
        "plural": resource.plural,
        "singular": resource.kind.lower(),
        "categories": ["tidal"],
    }
    knative_own = resource.api_version == resource.user_api_version  # Knative's group itself
    if knative_own and resource.kind in KNATIVE_SHORT_NAMES:
        names["shortNames"] = KNATIVE_SHORT_NAMES[resource.kind]
        names["categories"] += KNATIVE_CATEGORIES
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.plural}.{resource.group}", "labels": LABELS},
        "spec": {
            "group": resource.group,
            "scope": "Namespaced",
            "names": names,
            "versions": [
                {
                    "name": resource.version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": preserved, "status": preserved},
                        }
                    },
                    "additionalPrinterColumns": printer_columns(resource.kind),
                }
            ],
        },
    }


def printer_columns(kind: str) -> list[dict[str, Any]]:
    """What `kubectl get` shows of a kind: Knative's columns for its kinds, so that `kubectl get
    services.serving.tidal.dev` reads as `kubectl get ksvc` does on Knative."""
    ready = '.status.conditions[?(@.type=="Ready")]'
    url = {"name": "URL", "type": "string", "jsonPath": ".status.url"}
    columns: list[dict[str, Any]] = {
        "Service": [
            url,
            {
                "name": "LatestCreated",
                "type": "string",
                "jsonPath": ".status.latestCreatedRevisionName",
            },
            {
                "name": "LatestReady",
                "type": "string",
                "jsonPath": ".status.latestReadyRevisionName",
            },
        ],
        "Revision": [
            {
                "name": "Config Name",
                "type": "string",
                "jsonPath": ".metadata.labels['serving\\.knative\\.dev/configuration']",
            },
            {
                "name": "Generation",
                "type": "string",
                "jsonPath": ".metadata.labels['serving\\.knative\\.dev/configurationGeneration']",
            },
        ],
        "Route": [url],
        "DomainMapping": [url],
    }.get(kind, [])
    if kind != "ResourcePolicy":  # it has no status
        columns += [
            {"name": "Ready", "type": "string", "jsonPath": f"{ready}.status"},
            {"name": "Reason", "type": "string", "jsonPath": f"{ready}.reason"},
        ]
    if kind == "Revision":
        columns += [
            {"name": "Actual Replicas", "type": "integer", "jsonPath": ".status.actualReplicas"},
            {"name": "Desired Replicas", "type": "integer", "jsonPath": ".status.desiredReplicas"},
        ]
    return [*columns, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]


def rbac(namespace: str, resources: Resources) -> list[dict[str, Any]]:
    """Cluster-wide: tidal's CRs, Deployments and pods of every namespace it serves (only the
    verbs the store and the runtime call). In its namespace: its own Lease."""
    groups: dict[str, list[str]] = {}
    watched: dict[str, list[str]] = {}
    for resource in resources.values():
        groups.setdefault(resource.group, []).append(resource.plural)
        if resource.kind in WATCHED_KINDS:
            watched.setdefault(resource.group, []).append(resource.plural)
    rules: list[dict[str, Any]] = []
    for group, plurals in groups.items():
        rules.append(
            {
                "apiGroups": [group],
                "resources": plurals,
                "verbs": ["get", "list", "create", "update", "delete"],
            }
        )
        # what users write with kubectl, followed by tidal.kubernetes.spec_watch
        rules.append({"apiGroups": [group], "resources": watched[group], "verbs": ["watch"]})
        rules.append(
            {
                "apiGroups": [group],
                "resources": [f"{p}/status" for p in plurals],
                "verbs": ["update"],
            }
        )
    rules += [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "create"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        # each Knative Service's cluster-local name (tidal.kubernetes.addresses)
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "delete"]},
    ]
    subject = [{"kind": "ServiceAccount", "name": APP, "namespace": namespace}]
    lease_rules = [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [LEASE],
            "verbs": ["get", "update"],
        },
    ]
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "name": APP}
    return [
        {**_meta("rbac.authorization.k8s.io/v1", "ClusterRole"), "rules": rules},
        {
            **_meta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            "roleRef": {**role_ref, "kind": "ClusterRole"},
            "subjects": subject,
        },
        {**_meta("rbac.authorization.k8s.io/v1", "Role", namespace), "rules": lease_rules},
        {
            **_meta("rbac.authorization.k8s.io/v1", "RoleBinding", namespace),
            "roleRef": {**role_ref, "kind": "Role"},
            "subjects": subject,
        },
    ]


def config_map(namespace: str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        **_meta("v1", "ConfigMap", namespace, "tidal-config"),
        "data": {"tidal.yaml": yaml.safe_dump(config, sort_keys=False)},
    }


def token_secret(namespace: str, token: str) -> dict[str, Any]:
    """The admin API's bearer token, for the controller, the gateways and `tidal --kubeconfig`."""
    return {
        **_meta("v1", "Secret", namespace, TOKEN_SECRET),
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def own_user(namespace: str) -> str:
    """The user the controller's requests come from: its service account."""
    return f"system:serviceaccount:{namespace}:{APP}"


def webhook_secret(namespace: str, tls: WebhookTLS) -> dict[str, Any]:
    """The admission webhook's certificate and key, mounted into the controller."""
    return {
        **_meta("v1", "Secret", namespace, WEBHOOK_SECRET),
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": tls.cert.decode(), "tls.key": tls.key.decode()},
    }


def validating_webhook(namespace: str, tls: WebhookTLS, resources: Resources) -> dict[str, Any]:
    """Creates and updates of what users write (tidal.kubernetes.webhook) are checked as
    `tidal apply` checks them, and those of what tidal writes from them (Revisions, Routes)
    refused; status writes and deletes are not checked."""
    rules = [
        {
            "apiGroups": [group],
            "apiVersions": [version],
            "resources": [plural],
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
        for group, version, plural in sorted(
            (r.group, r.version, r.plural)
            for r in resources.values()
            if r.kind in WATCHED_KINDS or r.kind in DERIVED_KINDS
        )
    ]
    return {
        **_meta("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", None),
        "webhooks": [
            {
                "name": "validation.tidal.dev",
                "clientConfig": {
                    "service": {
                        "namespace": namespace,
                        "name": WEBHOOK,
                        "path": "/validate",
                        "port": 443,
                    },
                    "caBundle": base64.b64encode(tls.ca_cert).decode(),
                },
                "rules": rules,
                # tidal's own writes are not sent: it checked them, and a controller that is
                # not Ready yet (its restore writes) must still be able to write.
                "matchConditions": [
                    {
                        "name": "not-tidal-itself",
                        "expression": f"request.userInfo.username != '{own_user(namespace)}'",
                    }
                ],
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                # As Knative's: nothing unchecked is stored while the controller is away.
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
            }
        ],
    }


def state_volume(namespace: str) -> dict[str, Any]:
    """Metric history (SQLite) survives controller restarts on this volume."""
    return {
        **_meta("v1", "PersistentVolumeClaim", namespace, "tidal-state"),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def controller(namespace: str, image: str, tls: WebhookTLS, api_groups: str) -> dict[str, Any]:
    container = {
        "name": "controller",
        "image": image,
        "args": [
            "kubernetes",
            "controller",
            "--config",
            CONFIG_PATH,
            "--data-dir",
            DATA_DIR,
            "--lease-namespace",
            namespace,
            "--webhook-cert",
            f"{WEBHOOK_DIR}/tls.crt",
            "--webhook-key",
            f"{WEBHOOK_DIR}/tls.key",
            "--api-groups",
            api_groups,
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            TOKEN_ENV,
        ],
        "ports": [
            {"name": "gateway", "containerPort": GATEWAY_PORT},
            {"name": "admin", "containerPort": ADMIN_PORT},
            {"name": "webhook", "containerPort": WEBHOOK_PORT},
        ],
        # Only the leader listens: the Services send traffic to the leader alone.
        "readinessProbe": {"tcpSocket": {"port": GATEWAY_PORT}, "periodSeconds": 2},
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"memory": "2Gi"},
        },
        "securityContext": RESTRICTED,
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/tidal", "readOnly": True},
            {"name": "webhook-tls", "mountPath": WEBHOOK_DIR, "readOnly": True},
            {"name": "state", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return {
        **_meta("apps/v1", "Deployment", namespace),
        "spec": {
            "replicas": 1,
            # One pod at a time holds the state volume; the Lease guards against a second one
            # that still runs (a partitioned node) acting as well.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": APP}},
            "template": {
                "metadata": {
                    "labels": LABELS,
                    # A new certificate (the manifests rendered again) restarts the controller,
                    # which reads it when it starts.
                    "annotations": {
                        "tidal.dev/webhook-cert-sha256": hashlib.sha256(tls.cert).hexdigest()
                    },
                },
                "spec": {
                    "serviceAccountName": APP,
                    "securityContext": {"runAsUser": 10001, "fsGroup": 10001},
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "tidal-config"}},
                        {"name": "webhook-tls", "secret": {"secretName": WEBHOOK_SECRET}},
                        {"name": "state", "persistentVolumeClaim": {"claimName": "tidal-state"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def gateway(namespace: str, image: str, replicas: int = 2) -> dict[str, Any]:
    """Gateway processes (`tidal gateway`): they route with the controller's state and report
    their request stats to it, as Knative's activators do (tidal.gateway.mirror)."""
    container = {
        "name": "gateway",
        "image": image,
        "args": [
            "gateway",
            "--controller",
            f"http://tidal-admin.{namespace}.svc:{ADMIN_PORT}",
            "--host",
            "0.0.0.0",
            "--port",
            str(GATEWAY_PORT),
        ],
        "env": [TOKEN_ENV],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT}],
        "readinessProbe": {"tcpSocket": {"port": GATEWAY_PORT}, "periodSeconds": 2},
        "resources": {
            "requests": {"cpu": "500m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        },
        "securityContext": RESTRICTED,
    }
    labels = {**LABELS, "app.kubernetes.io/name": GATEWAY}
    return {
        **_meta("apps/v1", "Deployment", namespace, GATEWAY),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": GATEWAY}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # The gateway needs no Kubernetes API access.
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsUser": 10001},
                    "containers": [container],
                },
            },
        },
    }


def _service(
    namespace: str, name: str, port: int, target: int, app: str, protocol: str = "http"
) -> dict[str, Any]:
    return {
        **_meta("v1", "Service", namespace, name),
        "spec": {
            "selector": {"app.kubernetes.io/name": app},
            "ports": [{"name": protocol, "port": port, "targetPort": target}],
        },
    }


def _meta(
    api_version: str, kind: str, namespace: str | None = None, name: str = APP
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": LABELS}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}
