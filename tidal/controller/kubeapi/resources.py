"""The kinds the Kubernetes API serves: names for discovery, printer columns for tables, and the
objects as kubectl sees them (docs/kubectl.md).

Services, ResourcePolicies, Revisions and Routes are the stored objects; a Configuration is a view
of its Service (Knative keeps one per Service; tidal derives it), so it is read-only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tidal.api.claims import ACCESS_MODES
from tidal.controller.kubeapi.pods import pod_ready_column, pod_status_column

KNATIVE_GROUP = "serving.knative.dev"
SCHEDULING_GROUP = "scheduling.alibabacloud.com"
SERVICE_LABEL = "serving.knative.dev/service"
CONFIG_LABEL = "serving.knative.dev/configuration"
GENERATION_LABEL = "serving.knative.dev/configurationGeneration"
READ_VERBS = ("get", "list", "watch")
WRITE_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Column:
    """A printer column, as in a CRD's additionalPrinterColumns."""

    name: str
    value: Callable[[dict[str, Any]], Any]
    type: str = "string"
    priority: int = 0
    description: str = ""


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    categories: tuple[str, ...]
    columns: tuple[Column, ...]
    writable: bool
    namespaced: bool = True
    extra_verbs: tuple[str, ...] = ()  # served beyond what `writable` says (a pod's delete)
    subresources: tuple[str, ...] = ()
    # What a read-only kind is written from, and what to do instead, for the refusal of a write.
    written_from: str = "Services"
    instead: str = ""

    @property
    def verbs(self) -> tuple[str, ...]:
        return (*(WRITE_VERBS if self.writable else READ_VERBS), *self.extra_verbs)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def store_kind(self) -> str:
        """The kind objects are stored under (a Configuration is read from its Service)."""
        return "Service" if self.kind == "Configuration" else self.kind

    def discovery(self) -> dict[str, Any]:
        return {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
            "shortNames": list(self.short_names),
            "categories": list(self.categories),
        }


def condition(obj: dict[str, Any], field: str, kind: str = "Ready") -> str:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond.get("type") == kind:
            return str(cond.get(field, ""))
    return ""


def _status(field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda obj: obj.get("status", {}).get(field, "")


def _label(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda obj: obj["metadata"].get("labels", {}).get(key, "")


def _age(obj: dict[str, Any]) -> str:
    return obj["metadata"].get("creationTimestamp", "")


NAME = Column("Name", lambda o: o["metadata"]["name"], description="Name of the object")
READY = Column("Ready", lambda o: condition(o, "status"))
REASON = Column("Reason", lambda o: condition(o, "reason"))
URL = Column("URL", _status("url"))
LATEST_CREATED = Column("LatestCreated", _status("latestCreatedRevisionName"))
LATEST_READY = Column("LatestReady", _status("latestReadyRevisionName"))
KNATIVE_CATEGORIES = ("all", "knative", "serving")

SERVICES = Resource(
    KNATIVE_GROUP,
    "v1",
    "Service",
    "services",
    "service",
    ("kservice", "ksvc"),
    KNATIVE_CATEGORIES,
    (NAME, URL, LATEST_CREATED, LATEST_READY, READY, REASON),
    writable=True,
)
REVISIONS = Resource(
    KNATIVE_GROUP,
    "v1",
    "Revision",
    "revisions",
    "revision",
    ("rev",),
    KNATIVE_CATEGORIES,
    (
        NAME,
        Column("Config Name", _label(CONFIG_LABEL)),
        Column("Generation", _label(GENERATION_LABEL)),
        READY,
        REASON,
        Column("Actual Replicas", _status("actualReplicas"), "integer"),
        Column("Desired Replicas", _status("desiredReplicas"), "integer"),
    ),
    writable=False,
)
ROUTES = Resource(
    KNATIVE_GROUP,
    "v1",
    "Route",
    "routes",
    "route",
    ("rt",),
    KNATIVE_CATEGORIES,
    (NAME, URL, READY, REASON),
    writable=False,
)
CONFIGURATIONS = Resource(
    KNATIVE_GROUP,
    "v1",
    "Configuration",
    "configurations",
    "configuration",
    ("config", "cfg"),
    KNATIVE_CATEGORIES,
    (NAME, LATEST_CREATED, LATEST_READY, READY, REASON),
    writable=False,
)
RESOURCE_POLICIES = Resource(
    SCHEDULING_GROUP,
    "v1alpha1",
    "ResourcePolicy",
    "resourcepolicies",
    "resourcepolicy",
    (),
    (),
    (
        NAME,
        Column("Strategy", lambda o: o.get("spec", {}).get("strategy", "prefer")),
        Column("Age", _age, "date"),
    ),
    writable=True,
)
DOMAIN_MAPPINGS = Resource(
    KNATIVE_GROUP,
    "v1beta1",
    "DomainMapping",
    "domainmappings",
    "domainmapping",
    ("dm",),
    KNATIVE_CATEGORIES,
    (NAME, URL, READY, REASON),
    writable=True,
)
EVENTS = Resource(
    "",
    "v1",
    "Event",
    "events",
    "event",
    ("ev",),
    (),
    (
        Column("Last Seen", lambda o: o.get("lastTimestamp", ""), "date"),
        Column("Type", lambda o: o.get("type", "")),
        Column("Reason", lambda o: o.get("reason", "")),
        Column(
            "Object",
            lambda o: f"{o['involvedObject']['kind'].lower()}/{o['involvedObject']['name']}",
        ),
        Column("Message", lambda o: o.get("message", "")),
    ),
    writable=False,
)
SECRETS = Resource(
    "",
    "v1",
    "Secret",
    "secrets",
    "secret",
    (),
    (),
    (
        NAME,
        Column("Type", lambda o: o.get("type", "Opaque")),
        Column("Data", lambda o: len(o.get("data", {})), "integer"),
        Column("Age", _age, "date"),
    ),
    writable=True,
)
CONFIG_MAPS = Resource(
    "",
    "v1",
    "ConfigMap",
    "configmaps",
    "configmap",
    ("cm",),
    (),
    (
        NAME,
        Column("Data", lambda o: len(o.get("data", {})) + len(o.get("binaryData", {})), "integer"),
        Column("Age", _age, "date"),
    ),
    writable=True,
)
PODS = Resource(
    "",
    "v1",
    "Pod",
    "pods",
    "pod",
    ("po",),
    ("all",),
    (
        NAME,
        Column("Ready", pod_ready_column),
        Column("Status", pod_status_column),
        Column(
            "Restarts",
            lambda o: sum(c["restartCount"] for c in o["status"].get("containerStatuses", [])),
            "integer",
        ),
        Column("Age", _age, "date"),
        Column("IP", lambda o: o["status"].get("podIP", "<none>"), priority=1),
        Column("Node", lambda o: o["spec"].get("nodeName", ""), priority=1),
    ),
    writable=False,
    extra_verbs=("delete",),  # replaces the replica
    subresources=("log", "exec", "portforward"),
)
CLAIMS = Resource(
    "",
    "v1",
    "PersistentVolumeClaim",
    "persistentvolumeclaims",
    "persistentvolumeclaim",
    ("pvc",),
    (),
    (
        NAME,
        Column("Status", lambda o: o.get("status", {}).get("phase", "")),
        Column("Volume", lambda o: o["spec"].get("volumeName", "")),
        Column("Capacity", lambda o: o.get("status", {}).get("capacity", {}).get("storage", "")),
        Column(
            "Access Modes", lambda o: ",".join(ACCESS_MODES[m] for m in o["spec"]["accessModes"])
        ),
        Column("StorageClass", lambda o: o["spec"].get("storageClassName", "")),
        Column("Age", _age, "date"),
    ),
    writable=True,
)
SERVICE_ACCOUNTS = Resource(
    "",
    "v1",
    "ServiceAccount",
    "serviceaccounts",
    "serviceaccount",
    ("sa",),
    (),
    (
        NAME,
        Column("Secrets", lambda o: len(o.get("secrets", [])), "integer"),
        Column("Age", _age, "date"),
    ),
    writable=True,
)
NAMESPACES = Resource(
    "",
    "v1",
    "Namespace",
    "namespaces",
    "namespace",
    ("ns",),
    (),
    (
        NAME,
        Column("Status", lambda o: o.get("status", {}).get("phase", "")),
        Column("Age", _age, "date"),
    ),
    writable=True,
    namespaced=False,
)
DEPLOYMENTS = Resource(
    "apps",
    "v1",
    "Deployment",
    "deployments",
    "deployment",
    ("deploy",),
    ("all",),
    (
        NAME,
        Column("Ready", lambda o: f"{o['status']['readyReplicas']}/{o['spec']['replicas']}"),
        Column("Up-to-date", lambda o: o["status"]["updatedReplicas"], "integer"),
        Column("Available", lambda o: o["status"]["availableReplicas"], "integer"),
        Column("Age", _age, "date"),
        Column("Containers", lambda o: _containers(o, "name"), priority=1),
        Column("Images", lambda o: _containers(o, "image"), priority=1),
        Column(
            "Selector",
            lambda o: ",".join(f"{k}={v}" for k, v in o["spec"]["selector"]["matchLabels"].items()),
            priority=1,
        ),
    ),
    writable=False,
    instead=(
        " (to run a workload, write a serving.knative.dev/v1 Service: its spec.template takes a "
        "Deployment's pod template)"
    ),
)


def _containers(deployment: dict[str, Any], field: str) -> str:
    return ",".join(c[field] for c in deployment["spec"]["template"]["spec"]["containers"])


def _roles(node: dict[str, Any]) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = [key[len(prefix) :] for key in node["metadata"]["labels"] if key.startswith(prefix)]
    return ",".join(sorted(roles)) or "<none>"


NODES = Resource(
    "",
    "v1",
    "Node",
    "nodes",
    "node",
    ("no",),
    (),
    (
        NAME,
        Column("Status", lambda o: "Ready" if condition(o, "status") == "True" else "NotReady"),
        Column("Roles", _roles),
        Column("Age", _age, "date"),
        Column("Version", lambda o: o["status"]["nodeInfo"]["kubeletVersion"]),
        Column("Internal-IP", lambda o: o["status"]["addresses"][0]["address"], priority=1),
        Column("OS-Image", lambda o: o["status"]["nodeInfo"]["osImage"], priority=1),
        Column("Kernel-Version", lambda o: o["status"]["nodeInfo"]["kernelVersion"], priority=1),
    ),
    writable=False,
    namespaced=False,
    written_from="the pools of its config",
)
CORE = [EVENTS, SECRETS, CONFIG_MAPS]  # Kubernetes' own kinds, under /api/v1
# One machine's replicas as pods, its pools as nodes, its claims as folders, its service
# accounts and namespaces (on a cluster all are the cluster's own).
LOCAL_CORE = [*CORE, PODS, NODES, CLAIMS, SERVICE_ACCOUNTS, NAMESPACES]
GROUP_VERSIONS = {
    f"{KNATIVE_GROUP}/v1": [SERVICES, CONFIGURATIONS, REVISIONS, ROUTES],
    f"{KNATIVE_GROUP}/v1beta1": [DOMAIN_MAPPINGS],
    f"{SCHEDULING_GROUP}/v1alpha1": [RESOURCE_POLICIES],
}
# One machine's revisions as the Deployments Knative makes of them (a cluster has its own).
LOCAL_GROUP_VERSIONS = {"apps/v1": [DEPLOYMENTS]}


def claim_with_status(claim: dict[str, Any]) -> dict[str, Any]:
    """A claim here is bound from the moment it is applied: its folder is its volume, named
    after it, with the storage it asked for (which nothing enforces: a folder has no size)."""
    spec = claim["spec"]
    claim["spec"] = {**spec, "volumeName": f"claim-{claim['metadata']['name']}"}
    claim["status"] = {
        "phase": "Bound",
        "accessModes": list(spec["accessModes"]),
        "capacity": {"storage": str(spec["resources"]["requests"]["storage"])},
    }
    return with_server_fields(claim)


def with_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """Every object has a generation; revisions and routes are written once per change, so
    theirs is 1 as in Knative."""
    obj["metadata"].setdefault("generation", 1)
    return obj


def service_with_traffic(service: dict[str, Any], route: dict[str, Any] | None) -> dict[str, Any]:
    """Knative's Service status repeats its Route's resolved traffic."""
    if route is not None and "traffic" in route.get("status", {}):
        service.setdefault("status", {})["traffic"] = route["status"]["traffic"]
    return with_server_fields(service)


def configuration_of(service: dict[str, Any]) -> dict[str, Any]:
    """The Configuration Knative would keep for this Service: its template, newest revisions."""
    meta, status = service["metadata"], service.get("status", {})
    name = meta["name"]
    generation = int(status.get("configurationGeneration", 1))
    return {
        "apiVersion": f"{KNATIVE_GROUP}/v1",
        "kind": "Configuration",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "uid": str(uuid.uuid5(uuid.UUID(meta["uid"]), "configuration")),
            "resourceVersion": meta["resourceVersion"],
            "generation": generation,
            "creationTimestamp": meta["creationTimestamp"],
            "labels": {**meta.get("labels", {}), SERVICE_LABEL: name},
            "ownerReferences": [
                {
                    "apiVersion": f"{KNATIVE_GROUP}/v1",
                    "kind": "Service",
                    "name": name,
                    "uid": meta["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {"template": service["spec"]["template"]},
        "status": {
            "observedGeneration": generation,
            **{
                key: status[key]
                for key in ("latestCreatedRevisionName", "latestReadyRevisionName", "conditions")
                if key in status
            },
        },
    }
