"""What a revision may not ask of one machine, refused at apply with the field named rather than
run differently from a pod (docs/containers.md#volumes, docs/reliability.md#secrets-and-privilege).

A revision that runs as a process has no filesystem or capability set of its own: volumes,
capabilities, a read-only root and a seccomp profile need a container. An in-memory emptyDir is
one tmpfs per mount here, so it is mounted once and without a subPath. A Localhost seccomp
profile is a file of the kubelet's.
"""

from __future__ import annotations

from tidal.api.errors import InvalidSpec
from tidal.api.manifest import RUNTIME, runs_in_container
from tidal.api.service import RevisionTemplate

CONTAINER = "spec.template.spec.containers[0]"
HOW = (
    "give the container an image and no command, or an image and the template annotation "
    f"{RUNTIME}: container (docs/containers.md#which-revisions-run-in-a-container)"
)


def check_runnable_here(template: RevisionTemplate) -> None:
    """Raise InvalidSpec for the first thing in `template` one machine cannot run as a pod
    would."""
    spec = template.spec
    container = spec.containers[0]
    security = container.security_context
    in_container = runs_in_container(container, template.metadata.annotations)
    if spec.volumes and not in_container:
        raise InvalidSpec(
            "spec.template.spec.volumes",
            f"volumes are mounted in containers, and this revision runs as a process here: {HOW}",
        )
    container_only = security.container_only() if security is not None else []
    if container_only and not in_container:
        raise InvalidSpec(
            f"{CONTAINER}.securityContext.{container_only[0]}",
            f"a container's setting, and this revision runs as a process here: {HOW}",
        )
    seccomp = security.seccomp_profile if security is not None else None
    if seccomp is not None and seccomp.type == "Localhost":
        raise InvalidSpec(
            f"{CONTAINER}.securityContext.seccompProfile.type",
            "a Localhost profile is a file on a Kubernetes node; here use RuntimeDefault "
            "(the engine's profile) or Unconfined",
        )
    in_memory = {v.name for v in spec.volumes if v.empty_dir and v.empty_dir.medium == "Memory"}
    for index, mount in enumerate(container.volume_mounts):
        if mount.name not in in_memory:
            continue
        where = f"{CONTAINER}.volumeMounts[{index}]"
        if mount.sub_path:
            raise InvalidSpec(f"{where}.subPath", "an in-memory emptyDir has no subPath here")
        if sum(m.name == mount.name for m in container.volume_mounts) > 1:
            raise InvalidSpec(f"{where}.name", "an in-memory emptyDir is mounted once here")
