"""Knative `serving.knative.dev/v1` Service, as users write it.

The models accept the fields tidal implements and reject any other with an error that names it.
Status and server-set metadata (resourceVersion, uid, ...) are accepted and ignored so that the
output of `tidal get -o yaml` can be applied again, as with kubectl.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from tidal.api.units import parse_quantity

API_VERSION = "serving.knative.dev/v1"
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
KNOWN_RESOURCES = ("cpu", "memory", "nvidia.com/gpu", "ephemeral-storage")
# Knative's revision-timeout-seconds and max-revision-timeout-seconds defaults; the default
# response-start timeout equals the revision timeout (pkg/apis/config/defaults.go).
DEFAULT_TIMEOUT_S = 300
MAX_TIMEOUT_S = 600
USER_CONTAINER = "user-container"  # Knative's default container name
INIT_CONTAINER = "init-container"  # and init container name
DEFAULT_CONTAINER_PORT = 8080  # Knative's, when ports[0] is not given
MAX_CONTAINERS = 16  # a serving container and its sidecars; a bound, not a Knative rule


class KModel(BaseModel):
    """Base for manifest models: camelCase keys, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class ObjectMeta(KModel):
    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Set by the server; accepted so that `get -o yaml` output can be re-applied.
    resource_version: str | None = None
    uid: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    # Set by a Kubernetes API server (a Service exported from a Knative cluster): never stored.
    managed_fields: list[dict[str, Any]] | None = Field(default=None, exclude=True)
    self_link: str | None = Field(default=None, exclude=True)

    @field_validator("name", "namespace")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        return dns_label(value)


def dns_label(value: str | None) -> str | None:
    """`value` if it is a DNS-1123 label (or None); else ValueError saying what one is."""
    if value is not None and (len(value) > 63 or not DNS1123.match(value)):
        raise ValueError(
            f"{value!r} is not a DNS label (lower-case letters, digits and '-', at most 63)"
        )
    return value


# Kubernetes' (relaxed) rule for an environment variable's name: printable ASCII but '='.
ENV_NAME = re.compile(r"^[ -<>-~]+$")


def _without_nul(value: str | None) -> str | None:
    """An exec argument, environment value or path holds no NUL: the kernel would cut the
    string there, and the process would silently get less than the manifest says."""
    if value is not None and "\0" in value:
        raise ValueError(f"contains a NUL character, which a process cannot be given: {value!r}")
    return value


class KeySelector(KModel):
    """One key of a Secret or ConfigMap in the service's namespace."""

    name: str
    key: str
    optional: bool | None = None  # true: a missing object or key leaves the variable unset

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return dns_label(value) or value


class EnvVarSource(KModel):
    secret_key_ref: KeySelector | None = None
    config_map_key_ref: KeySelector | None = None


class EnvVar(KModel):
    name: str
    value: str = ""
    value_from: EnvVarSource | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ENV_NAME.match(value):
            raise ValueError(
                f"{value!r} is not an environment variable name (printable ASCII, no '=')"
            )
        return value

    @field_validator("value")
    @classmethod
    def _value(cls, value: str) -> str:
        _without_nul(value)
        return value


class ObjectRef(KModel):
    """A whole Secret or ConfigMap in the service's namespace."""

    name: str
    optional: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return dns_label(value) or value


class LocalObjectReference(KModel):
    """An object of the service's namespace, by name."""

    name: str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return dns_label(value) or value


class EnvFromSource(KModel):
    """Every key of a Secret or ConfigMap as an environment variable, after `prefix`."""

    prefix: str = ""
    secret_ref: ObjectRef | None = None
    config_map_ref: ObjectRef | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value and not ENV_NAME.match(value):
            raise ValueError(f"{value!r} cannot begin a variable name (printable ASCII, no '=')")
        return value


def _file_mode(value: int | None) -> int | None:
    """A file's permission bits; YAML's 0400 and JSON's 256 are the same mode."""
    if value is not None and not 0 <= value <= 0o777:
        raise ValueError(f"{value} is not a file mode (0 to 0777 in octal, 511 in decimal)")
    return value


def relative_path(value: str) -> str:
    """A path inside a volume: relative, with no '..' element (it may not leave the volume)."""
    _without_nul(value)
    if value.startswith("/"):
        raise ValueError(f"{value!r} must be a relative path")
    if ".." in value.split("/"):
        raise ValueError(f"{value!r} must not contain '..'")
    return value


def file_path(value: str) -> str:
    """Where a key's file goes in its volume: a relative path that names a file."""
    relative_path(value)
    if value.endswith("/") or posixpath.normpath(value) == ".":
        raise ValueError(f"{value!r} does not name a file")
    return value


class KeyToPath(KModel):
    """One key of a Secret or ConfigMap, written to `path` in the volume."""

    key: str = Field(min_length=1)
    path: str = Field(min_length=1)
    mode: StrictInt | None = None  # "0400" in quotes would read as decimal 400

    _check_path = field_validator("path")(file_path)
    _check_mode = field_validator("mode")(_file_mode)


class SecretVolumeSource(KModel):
    secret_name: str
    items: list[KeyToPath] = Field(default_factory=list)
    default_mode: StrictInt | None = None
    optional: bool | None = None

    _check_name = field_validator("secret_name")(dns_label)
    _check_mode = field_validator("default_mode")(_file_mode)


class ObjectProjection(KModel):
    """A Secret's or ConfigMap's keys, as one source of a projected volume."""

    name: str
    items: list[KeyToPath] = Field(default_factory=list)
    optional: bool | None = None

    _check_name = field_validator("name")(dns_label)


class ConfigMapVolumeSource(ObjectProjection):
    """A ConfigMap's keys as a volume of their own, with the mode of its files."""

    default_mode: StrictInt | None = None

    _check_mode = field_validator("default_mode")(_file_mode)


class VolumeProjection(KModel):
    secret: ObjectProjection | None = None
    config_map: ObjectProjection | None = None


class ProjectedVolumeSource(KModel):
    """Several Secrets and ConfigMaps in one directory."""

    sources: list[VolumeProjection] = Field(default_factory=list)
    default_mode: StrictInt | None = None

    _check_mode = field_validator("default_mode")(_file_mode)


class EmptyDirVolumeSource(KModel):
    """A directory that lives as long as the replica; `Memory` puts it in RAM (tmpfs), as
    /dev/shm for a model server's shared memory."""

    medium: Literal["", "Memory"] | None = None
    size_limit: str | int | None = None

    @field_validator("size_limit")
    @classmethod
    def _size(cls, value: str | int | None) -> str | int | None:
        if value is not None and parse_quantity(value) < 0:
            raise ValueError("must not be negative")
        return value


class PersistentVolumeClaimVolumeSource(KModel):
    """Storage that outlives replicas, such as a model cache that every replica shares."""

    claim_name: str
    read_only: bool | None = None

    _check_name = field_validator("claim_name")(dns_label)


class Volume(KModel):
    """A volume Knative allows by default (secret, configMap, projected, emptyDir) or with its
    persistent-volume-claim features (docs/containers.md#volumes)."""

    name: str
    secret: SecretVolumeSource | None = None
    config_map: ConfigMapVolumeSource | None = None
    projected: ProjectedVolumeSource | None = None
    empty_dir: EmptyDirVolumeSource | None = None
    persistent_volume_claim: PersistentVolumeClaimVolumeSource | None = None

    _check_name = field_validator("name")(dns_label)

    def sources(self) -> list[str]:
        """The source fields it sets (exactly one when valid)."""
        given = {
            "secret": self.secret,
            "configMap": self.config_map,
            "projected": self.projected,
            "emptyDir": self.empty_dir,
            "persistentVolumeClaim": self.persistent_volume_claim,
        }
        return [field for field, source in given.items() if source is not None]


class VolumeMount(KModel):
    name: str
    mount_path: str
    read_only: bool | None = None
    sub_path: str | None = None

    _check_path = field_validator("mount_path")(_without_nul)

    @field_validator("sub_path")
    @classmethod
    def _sub_path(cls, value: str | None) -> str | None:
        return relative_path(value) if value else value


class ContainerPort(KModel):
    container_port: int = Field(ge=1, le=65535)
    name: str | None = None
    protocol: Literal["TCP"] = "TCP"


class HTTPGetAction(KModel):
    path: str = "/"
    port: int | str | None = None
    scheme: Literal["HTTP"] = "HTTP"


class TCPSocketAction(KModel):
    port: int | str | None = None


class GRPCAction(KModel):
    """The standard gRPC health check (grpc.health.v1.Health/Check) of `service`."""

    port: int | None = None
    service: str | None = None


class ExecAction(KModel):
    """A command run in the replica's environment; exit code 0 passes."""

    command: list[str] = Field(min_length=1)

    @field_validator("command")
    @classmethod
    def _arguments(cls, value: list[str]) -> list[str]:
        for argument in value:
            _without_nul(argument)
        return value


class Probe(KModel):
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    exec: ExecAction | None = None
    initial_delay_seconds: int = Field(default=0, ge=0)
    period_seconds: int = Field(default=0, ge=0)
    timeout_seconds: int | None = Field(default=None, ge=1)
    failure_threshold: int | None = Field(default=None, ge=1)
    success_threshold: int = Field(default=1, ge=1)


class ResourceRequirements(KModel):
    requests: dict[str, str | int | float] = Field(default_factory=dict)
    limits: dict[str, str | int | float] = Field(default_factory=dict)

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, values: dict[str, str | int | float]) -> dict[str, str | int | float]:
        for key, value in values.items():
            if key not in KNOWN_RESOURCES:
                raise ValueError(f"unknown resource {key!r} (known: {', '.join(KNOWN_RESOURCES)})")
            amount = parse_quantity(value)
            if amount < 0:
                raise ValueError(f"{key}: must not be negative")
            if key == "nvidia.com/gpu" and amount != int(amount):
                raise ValueError("nvidia.com/gpu must be a whole number of devices")
        return values


CAPABILITY = re.compile(r"^[A-Z][A-Z_]*$")
# What Knative lets a container add (its secure-pod-defaults rule): binding a port below 1024.
ADDABLE_CAPABILITIES = ("NET_BIND_SERVICE",)


class Capabilities(KModel):
    drop: list[str] = Field(default_factory=list)
    add: list[str] = Field(default_factory=list)

    @field_validator("drop", "add")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not CAPABILITY.match(name):
                raise ValueError(f"{name!r} is not a capability name (such as ALL or CHOWN)")
        return value

    @field_validator("add")
    @classmethod
    def _addable(cls, value: list[str]) -> list[str]:
        refused = [name for name in value if name not in ADDABLE_CAPABILITIES]
        if refused:
            raise ValueError(
                f"{', '.join(refused)} may not be added: Knative lets a container add only "
                f"{', '.join(ADDABLE_CAPABILITIES)}"
            )
        return value


class SeccompProfile(KModel):
    type: Literal["RuntimeDefault", "Unconfined", "Localhost"]
    localhost_profile: str | None = None

    @model_validator(mode="after")
    def _profile(self) -> SeccompProfile:
        if (self.localhost_profile is not None) != (self.type == "Localhost"):
            raise ValueError("localhostProfile is set with type Localhost, and only then")
        _without_nul(self.localhost_profile)
        return self


class SecurityContext(KModel):
    """The container security fields Knative allows, each honoured
    (docs/reliability.md#secrets-and-privilege); any other (seLinuxOptions, procMount, ...) is
    refused rather than silently ignored, and so is `privileged: true`."""

    run_as_user: int | None = Field(default=None, ge=0, le=2**31 - 1)
    run_as_group: int | None = Field(default=None, ge=0, le=2**31 - 1)
    run_as_non_root: bool | None = None
    allow_privilege_escalation: bool | None = None
    capabilities: Capabilities | None = None
    read_only_root_filesystem: bool | None = None
    seccomp_profile: SeccompProfile | None = None
    privileged: bool | None = None

    @field_validator("privileged")
    @classmethod
    def _unprivileged(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("a privileged container is not allowed (Knative allows only false)")
        return value

    def container_only(self) -> list[str]:
        """The fields it sets that only a container (or pod) can honour, not a process."""
        fields = {
            "capabilities": self.capabilities,
            "readOnlyRootFilesystem": self.read_only_root_filesystem,
            "seccompProfile": self.seccomp_profile,
        }
        return [name for name, value in fields.items() if value]


class Container(KModel):
    name: str | None = None
    image: str | None = None
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] | None = None
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    env_from: list[EnvFromSource] = Field(default_factory=list)
    ports: list[ContainerPort] = Field(default_factory=list, max_length=1)
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    volume_mounts: list[VolumeMount] = Field(default_factory=list)
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    working_dir: str | None = None
    security_context: SecurityContext | None = None
    # Where a failed container's message comes from, on Kubernetes; on this machine a failure
    # always says the last log lines, as FallbackToLogsOnError (docs/architecture.md).
    termination_message_path: str | None = None
    termination_message_policy: Literal["File", "FallbackToLogsOnError"] | None = None

    @property
    def port(self) -> int:
        """The port it serves on: `ports[0].containerPort`, or Knative's default."""
        return self.ports[0].container_port if self.ports else DEFAULT_CONTAINER_PORT

    @field_validator("command", "args")
    @classmethod
    def _arguments(cls, value: list[str]) -> list[str]:
        for argument in value:
            _without_nul(argument)
        return value

    @field_validator("working_dir", "termination_message_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return _without_nul(value)

    def gpus(self) -> int:
        """Whole GPU devices each replica needs (limits win over requests, as in Kubernetes)."""
        amount = self.resources.limits.get(
            "nvidia.com/gpu", self.resources.requests.get("nvidia.com/gpu", 0)
        )
        return int(parse_quantity(amount))


def default_container_names(
    names: Sequence[str | None], base: str = USER_CONTAINER, taken: Iterable[str | None] = ()
) -> list[str]:
    """Containers' names, defaulted as Knative defaults them (revision_defaults.go): `base`
    for a lone unnamed container; with several, or when `base` is taken, `base`-N with the
    lowest N free of the names given (these and the pod's other containers', `taken`)."""
    given = {name for name in (*names, *taken) if name}
    defaulted, suffix = [], 0
    for name in names:
        if not name and len(names) == 1 and base not in given:
            name = base
        while not name:
            candidate = f"{base}-{suffix}"
            suffix += 1
            name = None if candidate in given else candidate
        defaulted.append(name)
    return defaulted


class RevisionSpec(KModel):
    """A revision's spec, defaulted as Knative defaults it (pkg/apis/serving/v1/
    revision_defaults.go): timeoutSeconds 0 or unset is 300, and a revision whose timeout is
    over 300 s gets responseStartTimeoutSeconds 300 unless it sets one. 0 or unset
    response-start and idle timeouts mean none (docs/architecture.md#timeouts)."""

    # One serving container (the one with a port) and any sidecars (docs/containers.md#sidecars)
    containers: list[Container] = Field(min_length=1, max_length=MAX_CONTAINERS)
    # Run to completion, one after the other, before the containers start
    # (docs/containers.md#init-containers)
    init_containers: list[Container] = Field(default_factory=list, max_length=MAX_CONTAINERS)
    container_concurrency: int = Field(default=0, ge=0, le=1000)
    timeout_seconds: int = Field(default=DEFAULT_TIMEOUT_S, ge=0, le=MAX_TIMEOUT_S)
    response_start_timeout_seconds: int | None = Field(
        default=None, ge=0, le=2**31 - 1, validate_default=True
    )
    idle_timeout_seconds: int | None = Field(default=None, ge=0, le=2**31 - 1)
    service_account_name: str | None = None
    volumes: list[Volume] = Field(default_factory=list)
    # Secrets with credentials for pulling the image (docs/containers.md#private-registries)
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    # Kubernetes' service environment variables (FOO_SERVICE_HOST...); Knative's default, and
    # all there is on this machine, is none.
    enable_service_links: bool | None = None
    # Only false, as Knative allows: no API token in the pod (there is none on this machine).
    automount_service_account_token: bool | None = None

    @property
    def serving_index(self) -> int:
        """Where the serving container is: the one with a port, as Knative picks it, or the
        only one."""
        return next((i for i, c in enumerate(self.containers) if c.ports), 0)

    @property
    def serving(self) -> Container:
        return self.containers[self.serving_index]

    @property
    def sidecars(self) -> list[Container]:
        return [c for i, c in enumerate(self.containers) if i != self.serving_index]

    def container_names(self) -> list[str]:
        others = [c.name for c in self.init_containers]
        return default_container_names([c.name for c in self.containers], taken=others)

    def init_container_names(self) -> list[str]:
        others = [c.name for c in self.containers]
        names = [c.name for c in self.init_containers]
        return default_container_names(names, INIT_CONTAINER, others)

    @field_validator("automount_service_account_token")
    @classmethod
    def _no_token(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("only false is allowed (Knative's rule)")
        return value

    @field_validator("timeout_seconds")
    @classmethod
    def _default_timeout(cls, value: int) -> int:
        return value or DEFAULT_TIMEOUT_S

    @field_validator("response_start_timeout_seconds")
    @classmethod
    def _default_response_start(cls, value: int | None, info: ValidationInfo) -> int | None:
        timeout = info.data.get("timeout_seconds", DEFAULT_TIMEOUT_S)
        return DEFAULT_TIMEOUT_S if value is None and timeout > DEFAULT_TIMEOUT_S else value


class TemplateMeta(KModel):
    name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # `creationTimestamp: null`, as Go clients write every template: accepted, never stored.
    creation_timestamp: str | None = Field(default=None, exclude=True)


class RevisionTemplate(KModel):
    metadata: TemplateMeta = Field(default_factory=TemplateMeta)
    spec: RevisionSpec


class TrafficTarget(KModel):
    tag: str | None = None
    revision_name: str | None = None
    configuration_name: str | None = None
    latest_revision: bool | None = None
    percent: int | None = Field(default=None, ge=0, le=100)
    url: str | None = None


class ServiceSpec(KModel):
    template: RevisionTemplate
    traffic: list[TrafficTarget] = Field(default_factory=list)


class Service(KModel):
    api_version: Literal["serving.knative.dev/v1"]
    kind: Literal["Service"]
    metadata: ObjectMeta
    spec: ServiceSpec
    status: dict[str, Any] | None = None
