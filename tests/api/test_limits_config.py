"""tidal.yaml's `gateway` limits and `logs` caps, and the containers' `securityContext`."""

from __future__ import annotations

import copy

import pytest

from tests.conftest import HELLO
from tidal.api.autoscaling import AutoscalerConfig
from tidal.api.config import GatewayLimits, LogLimits, parse_config
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import validate_service


def test_defaults_are_those_of_common_servers():
    config = parse_config({})
    assert config.limits == GatewayLimits(
        header_read_timeout_s=10.0,
        idle_timeout_s=60.0,
        max_connections=4096,
        admin_max_connections=256,
        max_total_connections=8192,
        drain_timeout_s=30.0,
    )
    assert config.logs == LogLimits(max_bytes=10 * 2**20, max_files=2, max_stopped=5)


def test_limits_are_read_from_their_sections():
    config = parse_config(
        {
            "gateway": {
                "pending-cap-default": 5,
                "header-read-timeout": "3s",
                "idle-timeout": "1m30s",
                "max-connections": 100,
                "admin-max-connections": 10,
                "max-total-connections": 110,
                "drain-timeout": "0s",
            },
            "logs": {"max-size": "1Mi", "max-files": 5, "max-stopped-replicas": 20},
        }
    )
    assert config.pending_cap_default == 5
    assert config.limits == GatewayLimits(3.0, 90.0, 100, 10, 110, 0.0)
    assert config.logs == LogLimits(max_bytes=2**20, max_files=5, max_stopped=20)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"gateway": {"header-timeout": "3s"}}, "gateway.header-timeout"),
        ({"gateway": {"header-read-timeout": "0s"}}, "gateway.header-read-timeout"),
        ({"gateway": {"idle-timeout": "soon"}}, "gateway.idle-timeout"),
        ({"gateway": {"max-connections": 0}}, "gateway.max-connections"),
        ({"gateway": {"max-total-connections": "many"}}, "gateway.max-total-connections"),
        ({"gateway": {"drain-timeout": "-1s"}}, "gateway.drain-timeout"),
        ({"logs": {"max-size": "1k"}}, "logs.max-size"),
        ({"logs": {"max-size": "lots"}}, "logs.max-size"),
        ({"logs": {"max-files": 0}}, "logs.max-files"),
        ({"logs": {"max-stopped-replicas": 0}}, "logs.max-stopped-replicas"),
        ({"logs": {"rotate": True}}, "logs.rotate"),
        ({"gateway": {"cluster-networks": "10.0.0.0/8"}}, "gateway.cluster-networks"),
        ({"gateway": {"cluster-networks": ["10.0.0.1/8"]}}, "gateway.cluster-networks"),
        ({"gateway": {"cluster-networks": ["pods"]}}, "gateway.cluster-networks"),
    ],
)
def test_bad_limits_are_named(data, field):
    with pytest.raises(InvalidSpec) as info:
        parse_config(data)
    assert info.value.field == field


def test_cluster_networks_are_read_as_networks():
    config = parse_config({"gateway": {"cluster-networks": ["10.0.0.0/8", "fd00::/8"]}})
    assert [str(n) for n in config.limits.cluster_networks] == ["10.0.0.0/8", "fd00::/8"]
    assert [str(n) for n in parse_config({}).limits.cluster_networks] == ["127.0.0.0/8", "::1/128"]


def with_security(security: object) -> dict:
    doc = copy.deepcopy(HELLO)
    doc["spec"]["template"]["spec"]["containers"][0]["securityContext"] = security
    return doc


def test_security_context_is_accepted():
    security = {
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
    }
    valid = validate_service(with_security(security), AutoscalerConfig())
    context = valid.service.spec.template.spec.containers[0].security_context
    assert context is not None
    assert (context.run_as_user, context.run_as_group, context.run_as_non_root) == (
        1000,
        1000,
        True,
    )


def test_the_restricted_profile_is_accepted_as_knative_writes_it():
    """The securityContext of Kubernetes' "restricted" Pod Security Standard, which Knative's
    secure-pod-defaults set and many manifests carry."""
    restricted = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "privileged": False,
    }
    valid = validate_service(with_security(restricted), AutoscalerConfig())
    context = valid.service.spec.template.spec.containers[0].security_context
    assert context is not None and context.model_dump(by_alias=True, exclude_none=True) == (
        restricted
    )
    assert context.container_only() == [
        "capabilities",
        "readOnlyRootFilesystem",
        "seccompProfile",
    ]


@pytest.mark.parametrize(
    ("security", "needle"),
    [
        ({"capabilities": {"add": ["SYS_ADMIN"]}}, "Knative lets a container add only"),
        ({"capabilities": {"drop": ["all"]}}, "is not a capability name"),
        ({"privileged": True}, "a privileged container is not allowed"),
        ({"seLinuxOptions": {"level": "s0"}}, "seLinuxOptions"),
        ({"seccompProfile": {"type": "Localhost"}}, "is set with type Localhost, and only then"),
        ({"runAsUser": -1}, "runAsUser"),
        ({"runAsGroup": "root"}, "runAsGroup"),
    ],
)
def test_security_context_fields_not_honoured_are_refused(security, needle):
    with pytest.raises(InvalidSpec) as info:
        validate_service(with_security(security), AutoscalerConfig())
    assert "securityContext" in str(info.value) and needle in str(info.value)


@pytest.mark.parametrize("command", ["up", "gateway"])
def test_a_bad_drain_timeout_flag_is_named(command, tmp_path):
    from click.testing import CliRunner

    from tidal.cli.main import main

    result = CliRunner().invoke(
        main,
        [command, "--drain-timeout", "soon", *(["--data-dir", str(tmp_path)] * (command == "up"))],
    )
    assert result.exit_code == 2
    assert "--drain-timeout" in result.output and "invalid duration" in result.output


def test_automount_service_account_token_may_only_be_turned_off():
    doc = copy.deepcopy(HELLO)
    doc["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    spec = validate_service(doc, AutoscalerConfig()).service.spec.template.spec
    assert spec.automount_service_account_token is False
    doc["spec"]["template"]["spec"]["automountServiceAccountToken"] = True
    with pytest.raises(InvalidSpec, match="automountServiceAccountToken: only false is allowed"):
        validate_service(doc, AutoscalerConfig())
