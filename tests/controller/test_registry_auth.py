"""imagePullSecrets read as the kubelet reads them (tidal.controller.registry_auth), and the
pull command that carries them (tidal.runtime.engine.pull_args)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from tidal.api.service import LocalObjectReference
from tidal.controller.registry_auth import read_registry_auth
from tidal.runtime.base import RegistryAuth
from tidal.runtime.engine import Engine, names_registry, pull_args, registry_of


def secret(name: str, key: str, value: Any) -> dict[str, Any]:
    text = value if isinstance(value, str) else json.dumps(value)
    data = {key: base64.b64encode(text.encode()).decode()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data}


STORED = {
    "new": secret(
        "new",
        ".dockerconfigjson",
        {"auths": {"ghcr.io": {"auth": "bmV3"}, "quay.io": {"auth": "cQ=="}}},
    ),
    "old": secret(
        "old", ".dockercfg", {"ghcr.io": {"auth": "b2xk"}, "r.example": {"auth": "cg=="}}
    ),
    "tls": secret("tls", "tls.crt", "not credentials"),
    "broken": secret("broken", ".dockerconfigjson", "{not json"),
}


def lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    assert (kind, namespace) == ("Secret", "default")
    return STORED.get(name)


def refs(*names: str) -> list[LocalObjectReference]:
    return [LocalObjectReference(name=name) for name in names]


def test_both_secret_formats_merge_and_the_first_secret_for_a_registry_counts() -> None:
    auth = read_registry_auth(refs("new", "old"), "default", lookup)
    assert auth == RegistryAuth(
        {"ghcr.io": {"auth": "bmV3"}, "quay.io": {"auth": "cQ=="}, "r.example": {"auth": "cg=="}}
    )


def test_unusable_secrets_are_skipped_and_said() -> None:
    auth = read_registry_auth(refs("absent", "tls", "broken", "old"), "default", lookup)
    assert auth.auths == {"ghcr.io": {"auth": "b2xk"}, "r.example": {"auth": "cg=="}}
    assert auth.problems[0] == 'imagePullSecrets: secret "absent" not found'
    assert all("holds no registry credentials" in p for p in auth.problems[1:])
    assert len(auth.problems) == 3


def test_the_pull_carries_the_credentials_file() -> None:
    folder = Path("/data/pull-x")
    podman, docker = Engine("podman", "/usr/bin/podman"), Engine("docker", "/usr/bin/docker")
    assert pull_args(podman, "ghcr.io/a/b:1", folder) == [
        "/usr/bin/podman",
        "pull",
        "--quiet",
        "--authfile",
        "/data/pull-x/config.json",
        "ghcr.io/a/b:1",
    ]
    assert pull_args(docker, "ghcr.io/a/b:1", folder) == [
        "/usr/bin/docker",
        "--config",
        "/data/pull-x",
        "pull",
        "--quiet",
        "ghcr.io/a/b:1",
    ]
    assert pull_args(podman, "img") == ["/usr/bin/podman", "pull", "--quiet", "img"]


def test_credentials_go_to_the_pull_only_for_the_images_registry() -> None:
    auths = {"ghcr.io": {}, "https://index.docker.io/v1/": {}, "127.0.0.1:5000/team": {}}
    for image in ("ghcr.io/acme/llm:1", "python:3.11", "library/python", "127.0.0.1:5000/a/b"):
        assert names_registry(auths, image), image
    assert registry_of("docker.io/library/python") == registry_of("python") == "docker.io"
    assert registry_of("localhost/tidal-example:1") == "localhost"
    assert not names_registry(auths, "quay.io/acme/llm:1")
    assert not names_registry({}, "ghcr.io/acme/llm:1")
