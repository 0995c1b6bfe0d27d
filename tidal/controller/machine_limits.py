"""What a revision may not ask of one machine, refused at apply with the field named rather than
run differently from a pod (docs/containers.md#volumes, docs/reliability.md#secrets-and-privilege).

A revision that runs as a process has no filesystem, network or capability set of its own:
volumes, sidecars, init containers, capabilities, a read-only root and a seccomp profile need a
container. An in-memory emptyDir is one tmpfs per mount here, so it is mounted once (by one
container) and without a subPath. A Localhost seccomp profile is a file of the kubelet's. GPUs
go to the serving container.
"""

from __future__ import annotations

from tidal.api.errors import InvalidSpec
from tidal.api.manifest import RUNTIME, runs_in_container
from tidal.api.pools import GPU
from tidal.api.service import RevisionTemplate

CONTAINERS = "spec.template.spec.containers"
HOW = (
    "give the container an image and no command, or an image and the template annotation "
    f"{RUNTIME}: container (docs/containers.md#which-revisions-run-in-a-container)"
)


def check_runnable_here(template: RevisionTemplate) -> None:
    """Raise InvalidSpec for the first thing in `template` one machine cannot run as a pod
    would."""
    spec = template.spec
    in_container = runs_in_container(spec.serving, template.metadata.annotations)
    if len(spec.containers) > 1 and not in_container:
        raise InvalidSpec(
            f"{CONTAINERS}[{spec.serving_index}]",
            "sidecars share the serving container's network, which a process has not: this "
            f"revision runs as a process here: {HOW}",
        )
    if spec.init_containers and not in_container:
        raise InvalidSpec(
            "spec.template.spec.initContainers",
            f"init containers run before the serving container, and this revision runs as a "
            f"process here: {HOW}",
        )
    if spec.volumes and not in_container:
        raise InvalidSpec(
            "spec.template.spec.volumes",
            f"volumes are mounted in containers, and this revision runs as a process here: {HOW}",
        )
    in_memory = {v.name for v in spec.volumes if v.empty_dir and v.empty_dir.medium == "Memory"}
    mounted: set[str] = set()
    others = [
        (f"{CONTAINERS}[{position}]", container)
        for position, container in enumerate(spec.containers)
        if position != spec.serving_index
    ] + [
        (f"spec.template.spec.initContainers[{position}]", container)
        for position, container in enumerate(spec.init_containers)
    ]
    for base, container in others:
        if not container.image:
            raise InvalidSpec(f"{base}.image", "runs an image here, and names none")
        if container.gpus():
            raise InvalidSpec(
                f"{base}.resources",
                f"GPUs go to the serving container on this machine; ask for {GPU} there",
            )
    every = [(f"{CONTAINERS}[{spec.serving_index}]", spec.serving), *others]
    for base, container in every:
        security = container.security_context
        container_only = security.container_only() if security is not None else []
        if container_only and not in_container:
            raise InvalidSpec(
                f"{base}.securityContext.{container_only[0]}",
                f"a container's setting, and this revision runs as a process here: {HOW}",
            )
        seccomp = security.seccomp_profile if security is not None else None
        if seccomp is not None and seccomp.type == "Localhost":
            raise InvalidSpec(
                f"{base}.securityContext.seccompProfile.type",
                "a Localhost profile is a file on a Kubernetes node; here use RuntimeDefault "
                "(the engine's profile) or Unconfined",
            )
        for index, mount in enumerate(container.volume_mounts):
            if mount.name not in in_memory:
                continue
            where = f"{base}.volumeMounts[{index}]"
            if mount.sub_path:
                raise InvalidSpec(f"{where}.subPath", "an in-memory emptyDir has no subPath here")
            if mount.name in mounted:
                raise InvalidSpec(
                    f"{where}.name",
                    "an in-memory emptyDir is mounted once here (by one container): each mount "
                    "would be a tmpfs of its own",
                )
            mounted.add(mount.name)
