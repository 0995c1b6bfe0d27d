"""Volumes and volumeMounts are checked by Knative's rules, each error naming its field
(docs/containers.md#volumes)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tidal.api.autoscaling import AutoscalerConfig
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import validate_service

CONFIG = AutoscalerConfig()


def llm_service() -> dict[str, Any]:
    """A model server as one is commonly given to Knative: shared memory, a model cache, a token
    and a settings file."""
    return yaml.safe_load("""
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: llm}
spec:
  template:
    spec:
      containers:
        - image: localhost/llm:1
          volumeMounts:
            - {name: shm, mountPath: /dev/shm}
            - {name: cache, mountPath: /models}
            - {name: token, mountPath: /etc/hf, readOnly: true}
            - {name: settings, mountPath: /etc/llm/config.yaml, subPath: config.yaml,
               readOnly: true}
            - {name: both, mountPath: /etc/both, readOnly: true}
      volumes:
        - name: shm
          emptyDir: {medium: Memory, sizeLimit: 1Gi}
        - name: cache
          emptyDir: {}
        - name: token
          secret:
            secretName: hf
            defaultMode: 0400
            items: [{key: token, path: token, mode: 0440}]
        - name: settings
          configMap: {name: llm-config, optional: true}
        - name: both
          projected:
            sources:
              - secret: {name: hf}
              - configMap: {name: llm-config, items: [{key: a, path: sub/a}]}
""")


def check(doc: dict[str, Any]) -> Any:
    return validate_service(doc, CONFIG, require_command=False)


def problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidSpec) as info:
        check(doc)
    return info.value.problems or [(info.value.field, info.value.message)]


def test_a_model_servers_volumes_are_accepted_as_written() -> None:
    spec = check(llm_service()).service.spec.template.spec
    assert [v.sources() for v in spec.volumes] == [
        ["emptyDir"],
        ["emptyDir"],
        ["secret"],
        ["configMap"],
        ["projected"],
    ]
    token = spec.volumes[2].secret
    assert token is not None and token.default_mode == 0o400 and token.items[0].mode == 0o440
    # What is stored (and `tidal get -o yaml` shows) applies again to the same volumes.
    dumped = check(llm_service()).service.model_dump(by_alias=True, exclude_none=True)
    assert check(dumped).service.spec.template.spec.volumes == spec.volumes


def edit(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(llm_service())
    change(doc["spec"]["template"]["spec"])
    return doc


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            lambda s: s["volumes"].append({"name": "extra", "emptyDir": {}}),
            "spec.template.spec.volumes[5].name",
            "volume with name 'extra' not mounted",
        ),
        (
            lambda s: s["volumes"][1].update(name="shm"),
            "spec.template.spec.volumes[1].name",
            "duplicate volume name 'shm'",
        ),
        (
            lambda s: s["volumes"][1].update(secret={"secretName": "hf"}),
            "spec.template.spec.volumes[1]",
            "set exactly one of secret, configMap, projected, emptyDir and persistentVolumeClaim "
            "(it sets secret, emptyDir)",
        ),
        (
            lambda s: s["volumes"][4]["projected"]["sources"].append({}),
            "spec.template.spec.volumes[4].projected.sources[2]",
            "set exactly one of secret and configMap",
        ),
        (
            lambda s: s["containers"][0]["volumeMounts"][0].update(name="nope"),
            "spec.template.spec.containers[0].volumeMounts[0].name",
            "volumeMount has no matching volume",
        ),
        (
            lambda s: s["containers"][0]["volumeMounts"][1].update(mountPath="models"),
            "spec.template.spec.containers[0].volumeMounts[1].mountPath",
            "'models' is not an absolute path",
        ),
        (
            lambda s: s["containers"][0]["volumeMounts"][1].update(mountPath="/dev/./"),
            "spec.template.spec.containers[0].volumeMounts[1].mountPath",
            "mountPath '/dev' is a reserved path",
        ),
        (
            lambda s: s["containers"][0]["volumeMounts"][1].update(mountPath="/etc/hf/"),
            "spec.template.spec.containers[0].volumeMounts[2].mountPath",
            "'/etc/hf' must be unique",
        ),
        (
            lambda s: s["volumes"][1].update(
                emptyDir=None, persistentVolumeClaim={"claimName": "models", "readOnly": True}
            ),
            "spec.template.spec.containers[0].volumeMounts[1].readOnly",
            "volume is readOnly but volume mount is not",
        ),
        (
            lambda s: s["containers"][0]["volumeMounts"][2].update(readOnly=False),
            "spec.template.spec.containers[0].volumeMounts[2].readOnly",
            "volume mount should be readOnly for this type of volume",
        ),
    ],
)
def test_knatives_volume_rules(change: Any, field: str, message: str) -> None:
    assert (field, message) in problems(edit(change))


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (
            lambda s: s["volumes"][2]["secret"].update(defaultMode=0o1777),
            "spec.template.spec.volumes[2].secret.defaultMode",
            "is not a file mode",
        ),
        (
            lambda s: s["volumes"][2]["secret"]["items"][0].update(mode="0400"),
            "spec.template.spec.volumes[2].secret.items[0].mode",
            "integer",
        ),
        (
            lambda s: s["volumes"][2]["secret"]["items"][0].update(path="../token"),
            "spec.template.spec.volumes[2].secret.items[0].path",
            "must not contain '..'",
        ),
        (
            lambda s: s["volumes"][2]["secret"]["items"][0].update(path="/token"),
            "spec.template.spec.volumes[2].secret.items[0].path",
            "must be a relative path",
        ),
        (
            lambda s: s["volumes"][2]["secret"]["items"][0].update(path="./"),
            "spec.template.spec.volumes[2].secret.items[0].path",
            "does not name a file",
        ),
        (
            lambda s: s["containers"][0]["volumeMounts"][3].update(subPath="a/../../b"),
            "spec.template.spec.containers[0].volumeMounts[3].subPath",
            "must not contain '..'",
        ),
        (
            lambda s: s["volumes"][0]["emptyDir"].update(medium="HugePages"),
            "spec.template.spec.volumes[0].emptyDir.medium",
            "Memory",
        ),
        (
            lambda s: s["volumes"][0]["emptyDir"].update(sizeLimit="-1Gi"),
            "spec.template.spec.volumes[0].emptyDir.sizeLimit",
            "must not be negative",
        ),
        (
            lambda s: s["volumes"][1].update(hostPath={"path": "/models"}),
            "spec.template.spec.volumes[1].hostPath",
            "unknown field",
        ),
        (
            lambda s: s["volumes"][2]["secret"].update(secretName="Not_A_Name"),
            "spec.template.spec.volumes[2].secret.secretName",
            "is not a DNS label",
        ),
    ],
)
def test_bad_volume_fields_are_named(change: Any, field: str, words: str) -> None:
    found = problems(edit(change))
    assert any(f == field and words in m for f, m in found), found


def test_a_claim_may_be_written_unless_it_is_read_only() -> None:
    """A persistentVolumeClaim (Knative's persistent-volume-claim and -write features): a
    model cache that outlives replicas."""

    def claim(spec: dict[str, Any]) -> None:
        spec["volumes"][1] = {"name": "cache", "persistentVolumeClaim": {"claimName": "models"}}

    volume = check(edit(claim)).service.spec.template.spec.volumes[1]
    assert volume.sources() == ["persistentVolumeClaim"]
    assert volume.persistent_volume_claim is not None
    assert volume.persistent_volume_claim.claim_name == "models"
