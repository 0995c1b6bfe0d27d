"""ACK `scheduling.alibabacloud.com/v1alpha1` ResourcePolicy, as users write it.

Field names and defaults follow ACK's doc and Go type (docs/pools.md#units,
docs/pools.md#spill-policies). What tidal makes of them:

- `units[].nodeSelector` is matched against pool labels, and `units[].resource` against the pool
  kind: `ecs` selects `reserved` pools, `eci`, `elastic` and `acs` select `elastic` pools.
- `preemptPolicy` is accepted for compatibility; tidal has no pod priorities, so never preempts.
- `ignorePreviousPod: true` is rejected: tidal does not keep when a policy first applied.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import Field

from tidal.api.errors import InvalidSpec
from tidal.api.manifest import parse_document
from tidal.api.service import KModel, ObjectMeta
from tidal.api.units import parse_duration

API_VERSION = "scheduling.alibabacloud.com/v1alpha1"
KIND = "ResourcePolicy"
DEFAULT_TIMEOUT = "15m"  # whenTryNextUnits.timeout default (docs/pools.md#units)
POOL_KIND = {"ecs": "reserved", "eci": "elastic", "elastic": "elastic", "acs": "elastic"}

SpillPolicy = Literal[
    "LackResourceOrExceedMax", "ExceedMax", "TimeoutOrExceedMax", "LackResourceAndNoTerminating"
]


class Unit(KModel):
    resource: Literal["ecs", "eci", "elastic", "acs"]
    node_selector: dict[str, str] = Field(default_factory=dict)
    max: int | None = Field(default=None, ge=0)
    pod_labels: dict[str, str] = Field(default_factory=dict)
    pod_annotations: dict[str, str] = Field(default_factory=dict)


class WhenTryNextUnits(KModel):
    policy: SpillPolicy = "LackResourceOrExceedMax"
    timeout: str | int | float | None = None

    @cached_property
    def timeout_s(self) -> float:
        """How long TimeoutOrExceedMax holds a pod in a unit before it may spill
        (docs/pools.md#spill-policies)."""
        return parse_duration(DEFAULT_TIMEOUT if self.timeout is None else self.timeout)


class ResourcePolicySpec(KModel):
    selector: dict[str, str] = Field(default_factory=dict)
    strategy: Literal["prefer", "required"] = "prefer"
    units: list[Unit] = Field(default_factory=list)
    when_try_next_units: WhenTryNextUnits = Field(default_factory=WhenTryNextUnits)
    ignore_terminating_pod: bool = True
    ignore_previous_pod: bool = False
    match_label_keys: list[str] = Field(default_factory=list)
    preempt_policy: Literal["AfterAllUnits", "BeforeNextUnit"] = "AfterAllUnits"


class ResourcePolicy(KModel):
    api_version: Literal["scheduling.alibabacloud.com/v1alpha1"]
    kind: Literal["ResourcePolicy"]
    metadata: ObjectMeta
    spec: ResourcePolicySpec
    status: dict[str, Any] | None = None


def validate_resource_policy(doc: dict[str, Any]) -> ResourcePolicy:
    """Check a ResourcePolicy document; raise InvalidSpec naming the problem(s)."""
    policy = parse_document(doc, API_VERSION, KIND, ResourcePolicy)
    if not policy.metadata.name:
        raise InvalidSpec("metadata.name", "a ResourcePolicy needs a name")
    spec = policy.spec
    if not spec.units:
        raise InvalidSpec("spec.units", "list at least one unit")
    when = spec.when_try_next_units
    if when.timeout is not None:
        try:
            seconds = parse_duration(when.timeout)
        except ValueError as exc:
            raise InvalidSpec("spec.whenTryNextUnits.timeout", str(exc)) from None
        if seconds <= 0:
            raise InvalidSpec("spec.whenTryNextUnits.timeout", f"must be > 0, got {when.timeout!r}")
    if spec.ignore_previous_pod:
        raise InvalidSpec("spec.ignorePreviousPod", "true is not supported by tidal")
    for index, key in enumerate(spec.match_label_keys):
        if not key:
            raise InvalidSpec(f"spec.matchLabelKeys[{index}]", "must not be empty")
        if key in spec.match_label_keys[:index]:
            raise InvalidSpec(f"spec.matchLabelKeys[{index}]", f"{key!r} is listed twice")
    return policy


def selects(policy: ResourcePolicy, labels: dict[str, str]) -> bool:
    """Whether the policy applies to a replica with these labels; an empty selector selects all.

    The policy applies only in its own namespace (docs/pools.md#units); the caller checks that.
    """
    return all(labels.get(key) == value for key, value in policy.spec.selector.items())
