"""Reading manifests: YAML documents in, validated models out, or an error that names the field.

Checks follow Knative's webhooks where tidal mirrors Knative (docs/autoscaling.md#annotations for
annotations, docs/architecture.md#revisions-traffic-and-rollout for traffic). Checks that need
stored state (does a traffic target's revision exist?) live in the controller.
"""

from __future__ import annotations

import difflib
import posixpath
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from tidal.api.autoscaling import (
    HPA_SYNC_PERIOD,
    RT_PERCENTILE,
    AutoscalerConfig,
    AutoscalingAnnotations,
    metric_settings,
    parse_autoscaling_annotations,
)
from tidal.api.errors import InvalidSpec
from tidal.api.limits import DNS1123_SUBDOMAIN, check_metadata, load_yaml
from tidal.api.predictive import PredictiveAnnotations, parse_predictive_annotations
from tidal.api.service import (
    API_VERSION,
    DNS1035,
    DNS1123,
    Container,
    Probe,
    RevisionSpec,
    Service,
    TrafficTarget,
    Volume,
)
from tidal.api.units import parse_duration, parse_quantity

RESERVED_ENV = ("PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION")
SIDECAR_RESERVED_ENV = ("K_SERVICE", "K_CONFIGURATION", "K_REVISION")  # a sidecar may set PORT
CONTAINERS = "spec.template.spec.containers"
INIT_CONTAINERS = "spec.template.spec.initContainers"
RESERVED_PATHS = ("/", "/dev", "/dev/log")  # no volume is mounted there (Knative's rule)
# Knative's queue-proxy ports (HTTP, HTTP/2, admin, metrics, user metrics, profiling): a Service
# that asks for one would be refused by a Knative cluster, so it is here too.
RESERVED_PORTS = (8012, 8013, 8022, 9090, 9091, 8008)
PROGRESS_DEADLINE = "serving.knative.dev/progress-deadline"
ROLLOUT_DURATION = "serving.knative.dev/rollout-duration"
TEMPLATE_ANNOTATIONS = "spec.template.metadata.annotations"
REVISION_ONLY_DOMAINS = ("autoscaling.knative.dev", "tidal.dev")
VISIBILITY_LABEL = "networking.knative.dev/visibility"
CLUSTER_LOCAL = "cluster-local"
WARM_STANDBY = "tidal.dev/warm-standby-pool"
RUNTIME = "tidal.dev/runtime"  # container | process (docs/containers.md)
# tidal.dev/ annotations outside predictive scaling: ones users set, one the platform writes.
PLATFORM_ANNOTATIONS = frozenset(
    {"tidal.dev/template-hash", WARM_STANDBY, RUNTIME, RT_PERCENTILE, HPA_SYNC_PERIOD}
)


@dataclass(frozen=True)
class ValidService:
    """A Service that passed every check that needs no stored state."""

    service: Service
    autoscaling: AutoscalingAnnotations
    predictive: PredictiveAnnotations
    progress_deadline_s: float | None
    rollout_duration_s: float | None
    warm_standby_pool: str | None

    @property
    def name(self) -> str:
        assert self.service.metadata.name is not None
        return self.service.metadata.name

    @property
    def public(self) -> bool:
        """Answers its external host; a service labelled cluster-local answers only in the
        cluster (docs/architecture.md#hosts)."""
        return self.service.metadata.labels.get(VISIBILITY_LABEL) != CLUSTER_LOCAL

    @property
    def namespace(self) -> str:
        return self.service.metadata.namespace or "default"


def load_documents(text: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document in `text`, each required to be a mapping."""
    try:
        docs = [doc for doc in load_yaml(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise InvalidSpec("", f"invalid YAML: {exc}") from None
    for index, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise InvalidSpec(f"document {index + 1}", "expected a mapping (apiVersion, kind, ...)")
    if not docs:
        raise InvalidSpec("", "no documents found")
    return docs


def error_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


M = TypeVar("M", bound=BaseModel)


def first_error(exc: ValidationError) -> InvalidSpec:
    """Turn pydantic's report into one InvalidSpec naming the first bad field."""
    return InvalidSpec(*_problem(exc.errors()[0], None))


def check_identity(doc: dict[str, Any], api_version: str, kind: str) -> None:
    if doc.get("apiVersion") != api_version or doc.get("kind") != kind:
        raise InvalidSpec(
            "apiVersion",
            f"expected apiVersion {api_version} and kind {kind}, got "
            f"{doc.get('apiVersion')!r} {doc.get('kind')!r}",
        )


def parse_document(doc: dict[str, Any], api_version: str, kind: str, model: type[M]) -> M:
    """`doc` as `model`, once its apiVersion and kind are the ones expected; raise InvalidSpec
    naming every schema problem."""
    check_identity(doc, api_version, kind)
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise schema_errors(exc, model) from None


def schema_errors(exc: ValidationError, model: type[BaseModel]) -> InvalidSpec:
    """Every problem of pydantic's report, unknown fields first, each with its path; an unknown
    field that looks like a known one gets a "did you mean"."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    return InvalidSpec("", "", [_problem(err, model) for err in errors])


def _problem(err: Any, model: type[BaseModel] | None) -> tuple[str, str]:
    message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
    message = message.removeprefix("Value error, ")  # pydantic's wrapping of our own words
    if err["type"] == "extra_forbidden" and model is not None:
        known = _known_fields(model, tuple(err["loc"])[:-1])
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        elif known:
            message += f" (known here: {', '.join(sorted(known))})"
    if err["type"] == "literal_error" and "input" in err:
        message = f"{err['msg']}, got {err['input']!r}"
    return error_path(tuple(err["loc"])), message


def _known_fields(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys a manifest may use at `loc` inside `model` ([] when it is not a model)."""
    current: Any = model
    for part in loc:
        current = _model_in(current)
        if current is None:
            return []
        if isinstance(part, int):
            continue  # a list index: the model stays the list's item type
        field = next(
            (f for name, f in current.model_fields.items() if part in (name, f.alias)), None
        )
        if field is None:
            return []
        current = field.annotation
    current = _model_in(current)
    if current is None:
        return []
    return [f.alias or name for name, f in current.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class inside `X`, `X | None`, `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def validate_service(
    doc: dict[str, Any],
    config: AutoscalerConfig,
    require_command: bool = True,
    restoring: bool = False,
) -> ValidService:
    """Check a Service document; raise InvalidSpec naming every problem found (all schema
    problems at once, then every semantic check). The local runtime runs `command`, so it needs
    one; on Kubernetes an image alone is enough. `restoring` a stored document skips the rules
    on misplaced annotations, overlong tag hosts, ports and the visibility label's value:
    they break nothing that runs, so an upgrade must not stop a service that has them
    (docs/reliability.md#a-damaged-state-file)."""
    check_identity(doc, API_VERSION, "Service")
    check_metadata(doc)  # its limits first: a huge document is refused before parsing
    try:
        service = Service.model_validate(doc)
    except ValidationError as exc:
        raise schema_errors(exc, Service) from None
    errors: list[InvalidSpec] = []

    def check(step: Any, *args: Any) -> Any:
        try:
            return step(*args)
        except InvalidSpec as exc:
            errors.append(exc)
            return None

    check(_check_names, service)
    if not restoring:
        check(_check_visibility, service.metadata.labels)
        check(_check_service_annotations, service.metadata.annotations)
        check(_check_tag_hosts, service.spec.traffic, service.metadata.name or "")
        check(_check_ports, service.spec.template.spec)
        check(_check_pod_rules, service)
    check(_check_container_names, service.spec.template.spec)
    check(_check_sidecars, service.spec.template.spec)
    check(_check_init_containers, service.spec.template.spec)
    for base, container, reserved in _every_container(service.spec.template.spec):
        check(_check_container, container, base, reserved, require_command)
    check(_check_volumes, service)
    template_meta = service.spec.template.metadata
    check(_check_runtime, service.spec.template.spec, template_meta.annotations)
    autoscaling = check(parse_autoscaling_annotations, template_meta.annotations, config)
    if autoscaling is not None:
        pod = service.spec.template.spec
        where = f"{CONTAINERS}[{pod.serving_index}]"
        annotations = template_meta.annotations
        check(metric_settings, autoscaling, annotations, pod.serving, TEMPLATE_ANNOTATIONS, where)
    predictive = check(
        lambda: parse_predictive_annotations(
            template_meta.annotations, also_known=PLATFORM_ANNOTATIONS
        )
    )
    progress = check(
        _duration_annotation,
        template_meta.annotations,
        PROGRESS_DEADLINE,
        TEMPLATE_ANNOTATIONS,
        True,
    )
    rollout = check(
        _duration_annotation,
        service.metadata.annotations,
        ROLLOUT_DURATION,
        "metadata.annotations",
        False,
    )
    check(validate_traffic, service.spec.traffic)
    if errors:
        raise InvalidSpec.combine(errors)
    spec = service.spec.model_copy(update={"traffic": traffic_with_defaults(service.spec.traffic)})
    service = service.model_copy(update={"spec": spec})
    standby = template_meta.annotations.get(WARM_STANDBY)
    return ValidService(service, autoscaling, predictive, progress, rollout, standby)


def _check_names(service: Service) -> None:
    name = service.metadata.name
    if not name:
        raise InvalidSpec("metadata.name", "a Service needs a name")
    if len(name) > 50:
        raise InvalidSpec("metadata.name", "at most 50 characters (revision names add 6)")
    template_name = service.spec.template.metadata.name
    if template_name is not None:
        if not DNS1035.match(template_name) or len(template_name) > 63:
            raise InvalidSpec("spec.template.metadata.name", "must be a DNS-1035 label")
        if not template_name.startswith(name + "-"):
            raise InvalidSpec(
                "spec.template.metadata.name",
                f"must start with the Service name followed by '-' ({name}-...)",
            )


def _check_visibility(labels: dict[str, str]) -> None:
    value = labels.get(VISIBILITY_LABEL)
    if value is not None and value != CLUSTER_LOCAL:
        raise InvalidSpec(
            f"metadata.labels[{VISIBILITY_LABEL}]",
            f"must be {CLUSTER_LOCAL!r} (or absent, for a public service), got {value!r}",
        )


def _check_service_annotations(annotations: dict[str, str]) -> None:
    """Scaling annotations act per revision. On the Service's own metadata they would do nothing,
    so they are refused there, as Knative's webhook refuses `autoscaling.knative.dev/*`."""
    problems = []
    for key in annotations:
        domain = key.rpartition("/")[0]
        if domain in REVISION_ONLY_DOMAINS or domain.endswith(".tidal.dev"):
            problems.append(
                (
                    f"metadata.annotations[{key}]",
                    f'{domain} annotations must be put under "{TEMPLATE_ANNOTATIONS}" to work',
                )
            )
    if problems:
        raise InvalidSpec("", "", problems)


def _check_tag_hosts(targets: list[TrafficTarget], service: str) -> None:
    """A tag's hosts begin with `TAG-SERVICE`, which must fit a DNS label. Knative finds out
    only when it makes the route, and fails it; here the apply is refused."""
    for index, target in enumerate(targets):
        label = f"{target.tag}-{service}"
        if target.tag is not None and DNS1035.match(target.tag) and len(label) > 63:
            raise InvalidSpec(
                f"spec.traffic[{index}].tag",
                f"its hosts would begin with {label!r}, {len(label)} characters; a DNS label "
                "has at most 63 (shorten the tag or the service name)",
            )


def _check_ports(spec: RevisionSpec) -> None:
    """Knative's port names: "" or "http1" (HTTP/1.1) and "h2c" (HTTP/2 without TLS, as gRPC
    servers speak it; docs/architecture.md#http2-and-grpc). The probes go to the port the
    replica serves on: a probe that names another port would silently probe this one. tidal's
    HTTP probes speak HTTP/1.1, which an h2c server does not answer."""
    container = spec.serving
    port = container.ports[0] if container.ports else None
    name = port.name if port else None
    base = f"{CONTAINERS}[{spec.serving_index}]"
    if name not in (None, "", "http1", "h2c"):
        message = f"{name!r} is not allowed: the name must be empty, 'http1' or 'h2c'"
        raise InvalidSpec(f"{base}.ports[0].name", message)
    if port is not None and port.container_port in RESERVED_PORTS:
        raise InvalidSpec(
            f"{base}.ports[0].containerPort",
            f"{port.container_port} is a reserved port, please use a different value",
        )
    serving = (container.port, name)
    for field, probe in _probes(container):
        if name == "h2c" and probe.http_get is not None:
            raise InvalidSpec(
                f"{base}.{field}.httpGet",
                "tidal's HTTP probes speak HTTP/1.1, which an h2c port does not: use grpc (the "
                "gRPC health check) or tcpSocket",
            )
        action = probe.http_get or probe.tcp_socket or probe.grpc
        if action and action.port not in (None, 0, "", *serving):
            kind = "httpGet" if probe.http_get else "tcpSocket" if probe.tcp_socket else "grpc"
            raise InvalidSpec(
                f"{base}.{field}.{kind}.port",
                f"{action.port!r} is not the container's port ({serving[0]}): tidal probes the "
                "port the replica serves on; leave it out",
            )


def _check_pod_rules(service: Service) -> None:
    """What the Kubernetes API server and Knative's webhook refuse in a pod: a container name
    that is not a DNS label or is Knative's own queue-proxy, a service account name that is not
    a DNS-1123 subdomain, a request over its limit. Skipped for stored services: nothing that
    runs on this machine breaks on them."""
    spec = service.spec.template.spec
    problems: list[tuple[str, str]] = []
    for base, container, _ in _every_container(spec):
        name = container.name
        if name == "queue-proxy":
            problems.append((f"{base}.name", '"queue-proxy" is a reserved container name'))
        elif name is not None and (len(name) > 63 or not DNS1123.match(name)):
            problems.append((f"{base}.name", f"{name!r} is not a DNS label (a container's name)"))
        resources = container.resources
        for key, limit in resources.limits.items():
            request = resources.requests.get(key)
            if request is not None and parse_quantity(request) > parse_quantity(limit):
                problems.append(
                    (
                        f"{base}.resources.requests[{key}]",
                        f"{request} must be less than or equal to the {key} limit of {limit}",
                    )
                )
    account = spec.service_account_name
    if account is not None and (len(account) > 253 or not DNS1123_SUBDOMAIN.match(account)):
        problems.append(
            ("spec.template.spec.serviceAccountName", f"{account!r} is not a DNS-1123 subdomain")
        )
    if problems:
        raise InvalidSpec("", "", problems)


def _every_container(spec: RevisionSpec) -> list[tuple[str, Container, tuple[str, ...]]]:
    """Each container and init container, with its path and the variables it may not set
    (Knative's: PORT is the serving container's)."""
    return [
        (
            f"{CONTAINERS}[{index}]",
            container,
            RESERVED_ENV if index == spec.serving_index else SIDECAR_RESERVED_ENV,
        )
        for index, container in enumerate(spec.containers)
    ] + [
        (f"{INIT_CONTAINERS}[{index}]", container, SIDECAR_RESERVED_ENV)
        for index, container in enumerate(spec.init_containers)
    ]


def _probes(container: Container) -> list[tuple[str, Probe]]:
    probes = (
        ("readinessProbe", container.readiness_probe),
        ("livenessProbe", container.liveness_probe),
        ("startupProbe", container.startup_probe),
    )
    return [(field, probe) for field, probe in probes if probe is not None]


def _check_sidecars(spec: RevisionSpec) -> None:
    """Knative's rules for several containers (validateContainersPorts, validateContainers):
    exactly one port among them, which makes its container the serving one; no probes on a
    sidecar (Knative's multi-container-probing is off by default: only the serving container
    is probed)."""
    if len(spec.containers) == 1:
        return
    problems: list[tuple[str, str]] = []
    ports = sum(len(container.ports) for container in spec.containers)
    if ports != 1:
        problems.append(
            (
                f"{CONTAINERS}[*].ports",
                "more than one container port is set: only a single port is allowed across "
                "all containers"
                if ports
                else "with several containers, give the serving container (only it) a port, "
                "e.g. `ports: [{containerPort: 8080}]`",
            )
        )
    for index, container in enumerate(spec.containers):
        if container.ports:
            continue
        for field, _ in _probes(container):
            problems.append(
                (
                    f"{CONTAINERS}[{index}].{field}",
                    "a sidecar is not probed (only the serving container is, as in Knative "
                    "without multi-container-probing): remove it",
                )
            )
    if problems:
        raise InvalidSpec("", "", problems)


def _check_container_names(spec: RevisionSpec) -> None:
    """Knative's rule for containers and init containers alike: no two share a name."""
    names: set[str] = set()
    problems: list[tuple[str, str]] = []
    for base, container, _ in _every_container(spec):
        if container.name in names:
            problems.append((f"{base}.name", f"duplicate container name {container.name!r}"))
        if container.name:
            names.add(container.name)
    if problems:
        raise InvalidSpec("", "", problems)


def _check_init_containers(spec: RevisionSpec) -> None:
    """Knative's rule for init containers (validateInitContainers, with its
    kubernetes.podspec-init-containers feature on): no probes (an init container runs to
    completion, it is never ready)."""
    problems: list[tuple[str, str]] = []
    for index, container in enumerate(spec.init_containers):
        base = f"{INIT_CONTAINERS}[{index}]"
        for field, _ in _probes(container):
            problems.append((f"{base}.{field}", "field not allowed in an init container"))
    if problems:
        raise InvalidSpec("", "", problems)


def _check_container(
    container: Container, base: str, reserved: tuple[str, ...], require_command: bool
) -> None:
    problems: list[tuple[str, str]] = []
    if not container.command and (require_command or not container.image):
        has = f"only an image ({container.image!r})" if container.image else "neither"
        message = (
            f"the local runtime runs a command, and this container has {has}; add `command:` "
            "(and `args:`) that start your server on $PORT"
            if require_command
            else "a container needs an image or a command"
        )
        problems.append((f"{base}.command", message))
    for index, env in enumerate(container.env):
        if env.name in reserved:
            problems.append((f"{base}.env[{index}].name", f"{env.name} is reserved"))
        source = env.value_from
        if source is None:
            continue
        where = f"{base}.env[{index}].valueFrom"
        if env.value:
            problems.append((where, "may not be given with a value"))
        if (source.secret_key_ref is None) == (source.config_map_key_ref is None):
            problems.append((where, "set exactly one of secretKeyRef and configMapKeyRef"))
    for index, env_from in enumerate(container.env_from):
        if (env_from.secret_ref is None) == (env_from.config_map_ref is None):
            where = f"{base}.envFrom[{index}]"
            problems.append((where, "set exactly one of secretRef and configMapRef"))
    for field, probe in _probes(container):
        actions = (probe.http_get, probe.tcp_socket, probe.grpc, probe.exec)
        if sum(action is not None for action in actions) != 1:
            problems.append(
                (f"{base}.{field}", "set exactly one of httpGet, tcpSocket, grpc and exec")
            )
    readiness = container.readiness_probe
    if readiness is not None and readiness.period_seconds == 0:  # Knative's aggressive probing
        for key, value in (
            ("failureThreshold", readiness.failure_threshold),
            ("timeoutSeconds", readiness.timeout_seconds),
        ):
            if value:
                where = f"{base}.readinessProbe.{key}"
                problems.append((where, f"{key} is disallowed when periodSeconds is zero"))
    kubelet_only = (("liveness", container.liveness_probe), ("startup", container.startup_probe))
    for kind, probe in kubelet_only:
        if probe is not None and probe.success_threshold != 1:
            where = f"{base}.{kind}Probe.successThreshold"
            problems.append((where, f"must be 1 for a {kind} probe"))
    if problems:
        raise InvalidSpec("", "", problems)


def _check_volumes(service: Service) -> None:
    """Knative's rules (docs/containers.md#volumes): one source per volume, every volume mounted
    and every mount of a volume, absolute and distinct mount paths, none of /, /dev or /dev/log,
    and read-only mounts of the volumes a replica must not write to (all but emptyDir and a
    claim that is not readOnly)."""
    spec = service.spec.template.spec
    base = "spec.template.spec"
    problems: list[tuple[str, str]] = []
    volumes: dict[str, Volume] = {}
    every = _every_container(spec)
    mounted = {mount.name for _, c, _ in every for mount in c.volume_mounts}
    for index, volume in enumerate(spec.volumes):
        where = f"{base}.volumes[{index}]"
        if volume.name in volumes:
            problems.append((f"{where}.name", f"duplicate volume name {volume.name!r}"))
        volumes[volume.name] = volume
        if volume.name not in mounted:
            problems.append((f"{where}.name", f"volume with name {volume.name!r} not mounted"))
        sources = volume.sources()
        if len(sources) != 1:
            given = f" (it sets {', '.join(sources)})" if sources else ""
            problems.append(
                (
                    where,
                    "set exactly one of secret, configMap, projected, emptyDir and "
                    f"persistentVolumeClaim{given}",
                )
            )
        for position, projection in enumerate(volume.projected.sources if volume.projected else []):
            if (projection.secret is None) == (projection.config_map is None):
                problems.append(
                    (
                        f"{where}.projected.sources[{position}]",
                        "set exactly one of secret and configMap",
                    )
                )
    for where, container, _ in every:
        problems += _mount_problems(container, where, volumes)
    if problems:
        raise InvalidSpec("", "", problems)


def _mount_problems(
    container: Container, base: str, volumes: dict[str, Volume]
) -> list[tuple[str, str]]:
    """One container's mounts: of volumes that exist, at absolute paths distinct within the
    container, read-only where their volume must be."""
    problems: list[tuple[str, str]] = []
    paths: set[str] = set()
    for index, mount in enumerate(container.volume_mounts):
        where = f"{base}.volumeMounts[{index}]"
        volume = volumes.get(mount.name)
        if volume is None:
            problems.append((f"{where}.name", "volumeMount has no matching volume"))
        path = _clean_path(mount.mount_path)
        if not path.startswith("/"):
            problems.append((f"{where}.mountPath", f"{mount.mount_path!r} is not an absolute path"))
        elif path in RESERVED_PATHS:
            problems.append((f"{where}.mountPath", f"mountPath {path!r} is a reserved path"))
        elif path in paths:
            problems.append((f"{where}.mountPath", f"{mount.mount_path!r} must be unique"))
        paths.add(path)
        if volume is None or mount.read_only:
            continue
        claim = volume.persistent_volume_claim
        if claim is not None and claim.read_only:
            problems.append((f"{where}.readOnly", "volume is readOnly but volume mount is not"))
        elif volume.empty_dir is None and claim is None:
            problems.append(
                (f"{where}.readOnly", "volume mount should be readOnly for this type of volume")
            )
    return problems


def _clean_path(path: str) -> str:
    """`path` without '.', '..', repeated or trailing slashes, as Go's path.Clean writes it."""
    if not path:
        return ""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("/") else cleaned


def runs_in_container(container: Container, annotations: dict[str, str]) -> bool:
    """On one machine: an image without a command runs in a container engine, and so does any
    image whose template asks for it with `tidal.dev/runtime: container`."""
    if container.image is None:
        return False
    return not container.command or annotations.get(RUNTIME) == "container"


def _check_runtime(spec: RevisionSpec, annotations: dict[str, str]) -> None:
    if RUNTIME not in annotations:
        return
    field = f"{TEMPLATE_ANNOTATIONS}[{RUNTIME}]"
    value = annotations[RUNTIME]
    if value not in ("container", "process"):
        raise InvalidSpec(field, f"must be container or process, got {value!r}")
    for where, container, _ in _every_container(spec):
        if value == "container" and not container.image:
            raise InvalidSpec(field, f"a container runtime needs {where}.image")
    if value == "process" and not spec.serving.command:
        raise InvalidSpec(
            field, f"a process runtime needs {CONTAINERS}[{spec.serving_index}].command"
        )


def _duration_annotation(
    annotations: dict[str, str], key: str, prefix: str, positive: bool
) -> float | None:
    if key not in annotations:
        return None
    field = f"{prefix}[{key}]"
    try:
        seconds = parse_duration(annotations[key])
    except ValueError as exc:
        raise InvalidSpec(field, str(exc)) from None
    if seconds < 0 or (positive and seconds == 0):
        raise InvalidSpec(field, f"must be {'>' if positive else '>='} 0, got {annotations[key]!r}")
    return seconds


def traffic_with_defaults(targets: list[TrafficTarget]) -> list[TrafficTarget]:
    """Knative's defaulting (RouteSpec and TrafficTarget SetDefaults), so the stored spec reads
    as in Knative: no block is 100% to the latest revision, and each target says whether it
    follows the latest revision and its percent (0 when unset)."""
    if not targets:
        return [TrafficTarget(latest_revision=True, percent=100)]
    return [
        target.model_copy(
            update={
                "latest_revision": target.revision_name is None
                if target.latest_revision is None
                else target.latest_revision,
                "percent": target.percent or 0,
            }
        )
        for target in targets
    ]


def validate_traffic(targets: list[TrafficTarget]) -> None:
    """Knative's route_validation rules (docs/architecture.md#revisions-traffic-and-rollout)."""
    if not targets:
        return
    tags: set[str] = set()
    total = 0
    problems: list[tuple[str, str]] = []
    for index, target in enumerate(targets):
        field = f"spec.traffic[{index}]"
        if target.url is not None:
            problems.append((f"{field}.url", "is set by the platform and not allowed in spec"))
        if target.configuration_name is not None:
            message = "not allowed in a Service (use latestRevision: true)"
            problems.append((f"{field}.configurationName", message))
        latest = target.latest_revision
        if latest is None:
            latest = target.revision_name is None
        if latest and target.revision_name is not None:
            problems.append((f"{field}.revisionName", "must be empty when latestRevision is true"))
        if not latest and target.revision_name is None:
            problems.append((f"{field}.revisionName", "required when latestRevision is false"))
        if target.tag is not None:
            if not DNS1035.match(target.tag) or len(target.tag) > 63:
                problems.append((f"{field}.tag", f"{target.tag!r} is not a DNS-1035 label"))
            if target.tag in tags:
                problems.append((f"{field}.tag", f"tag {target.tag!r} is used twice"))
            tags.add(target.tag)
        total += target.percent or 0
    if total != 100:
        problems.append(("spec.traffic", f"percentages must sum to 100, got {total}"))
    if problems:
        raise InvalidSpec("", "", problems)
