"""Cluster mode: the admin token is a Secret both Deployments read, and the Service users'
traffic reaches never leads to the admin port."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from tidal.cli.main import main
from tidal.kubernetes.manifests import ADMIN_PORT, TOKEN_SECRET, manifests


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_the_token_secret_feeds_controller_and_gateways() -> None:
    docs = manifests(token="t0ken")
    assert by_kind(docs, "Secret")[TOKEN_SECRET]["stringData"] == {"token": "t0ken"}
    for deployment in by_kind(docs, "Deployment").values():
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        ref = next(e for e in env if e["name"] == "TIDAL_TOKEN")["valueFrom"]["secretKeyRef"]
        assert ref == {"name": TOKEN_SECRET, "key": "token"}
    fresh = [by_kind(manifests(), "Secret")[TOKEN_SECRET]["stringData"]["token"] for _ in "ab"]
    assert fresh[0] != fresh[1] and len(fresh[0]) >= 40  # a new random token per render


def test_the_gateway_service_never_reaches_the_admin_port() -> None:
    docs = manifests()
    services = by_kind(docs, "Service")
    deployments = by_kind(docs, "Deployment")
    gateway = services["tidal-gateway"]
    assert ADMIN_PORT not in [p["targetPort"] for p in gateway["spec"]["ports"]]
    selected = [
        d
        for d in deployments.values()
        if all(
            d["spec"]["template"]["metadata"]["labels"].get(k) == v
            for k, v in gateway["spec"]["selector"].items()
        )
    ]
    assert [d["metadata"]["name"] for d in selected] == ["tidal-gateway"]
    ports = selected[0]["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert ADMIN_PORT not in [p["containerPort"] for p in ports]
    assert services["tidal-admin"]["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_the_controller_refuses_to_start_without_a_token() -> None:
    result = CliRunner().invoke(main, ["kubernetes", "controller"], env={"TIDAL_TOKEN": ""})
    assert result.exit_code == 1 and "needs a token" in result.output
