"""ServiceAccount documents, so that a bundle that declares the account its service runs as
applies as written (tidal.api.service_accounts, docs/containers.md#service-accounts)."""

from __future__ import annotations

import pytest

from tidal.api.errors import InvalidSpec
from tidal.api.service_accounts import validate_service_account


def account(**fields: object) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "inference", "namespace": "ml"},
        **fields,
    }


def test_an_account_is_stored_with_its_pull_secrets() -> None:
    valid = validate_service_account(
        account(imagePullSecrets=[{"name": "registry"}], automountServiceAccountToken=False)
    )
    assert (valid.kind, valid.namespace, valid.name) == ("ServiceAccount", "ml", "inference")
    assert valid.doc["imagePullSecrets"] == [{"name": "registry"}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"imagePullSecrets": [{}]}, "imagePullSecrets[0].name"),
        ({"rules": []}, "rules"),
        ({"metadata": {"name": "Inference"}}, "metadata.name"),
    ],
)
def test_bad_accounts_are_refused_naming_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        validate_service_account(account(**fields))
    assert any(f == field for f, _ in info.value.problems), info.value.problems
