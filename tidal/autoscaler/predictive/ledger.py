"""What the predictive policy has really spent against what the KPA alone would have spent,
measured live on every tick (docs/predictive.md, "The price knob and its default").

The `auto` price is chosen on a model of idle gaps, and that model is right on some services
and optimistic on others. This account settles it on what happened. The autoscaler runs the
KPA underneath and knows its count on every tick; the policy's own count differs from it only
where prediction acted. Over the same seconds it sums:

- `spent`: the policy's count (exactly the replica time it asked for);
- `kpa`: what the KPA alone would have asked for: the KPA underneath's count, which is the
  KPA alone's until prediction holds another count while the service is idle. From then on
  it counts only through the KPA's tail (stable window + scale-to-zero grace) after the last
  request, none after that: past its tail the KPA alone is at zero, and the KPA underneath
  may not be (a replica prediction holds reports to it). Cut at the tail where nothing
  diverged, the account charged prediction with the KPA's own tick past it (up to one
  decision interval a gap, about 2 % of a sparse service's replica time);
- `caused`: idle gaps that ended with the KPA underneath still holding a replica while
  prediction had none ready: a cold start of prediction's making, which panics the KPA
  underneath where the KPA alone, warm, would not have panicked.

No credit is taken for the cold starts prediction avoided (the KPA underneath did not panic
there, so its count is already lower than the KPA alone's), and each caused one is debited
a whole cold start of the KPA's (Ready Time and panic replica): `surplus` errs on the side of
the KPA. All sums decay with the idle gaps' half-life, so the account follows the service as
the gaps do. Pure; the autoscaler feeds it, the refit reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tidal.autoscaler.predictive.warm import HALF_LIFE_S


@dataclass(slots=True)
class Ledger:
    spent: float = 0.0  # replica-seconds the policy asked for (decayed)
    kpa: float = 0.0  # replica-seconds the KPA alone would have asked for (decayed)
    caused: float = 0.0  # cold starts of prediction's making (decayed)
    avoided: float = 0.0  # cold starts of the KPA alone's that prediction avoided (decayed)
    at: float | None = None  # epoch second of the last entry
    policy_count: int = 0  # in force since `at`
    kpa_count: int = 0
    kpa_until: float | None = None  # the KPA alone's count stops here (None: in flight)

    def advance(
        self, epoch: float, policy: int, kpa: int, idle_since: float | None, tail_s: float
    ) -> None:
        """A tick at `epoch`: account the counts in force since the last one, then the new
        ones (the policy's and the KPA underneath's replicas; `idle_since`: when the last
        request ended, None while requests are in flight; `tail_s`: the KPA's tail, or
        infinity while the KPA underneath is the KPA alone) hold until the next tick."""
        if self.at is None:
            self.at = epoch
        elif epoch > self.at:
            start = self.at
            self._decay(epoch)
            self.spent += self.policy_count * _decayed(epoch - start, 0.0)
            end = epoch if self.kpa_until is None else min(epoch, max(self.kpa_until, start))
            self.kpa += self.kpa_count * _decayed(epoch - start, epoch - end)
        self.policy_count, self.kpa_count = max(policy, 0), max(kpa, 0)
        self.kpa_until = None if idle_since is None else idle_since + tail_s

    def gap_ended(self, epoch: float, kpa_cold: bool, ready: bool) -> None:
        """A request ended an idle gap at `epoch`: one longer than the KPA's tail (`kpa_cold`:
        the KPA alone would have met it at zero), prediction had a replica ready (`ready`)."""
        if kpa_cold != ready:
            return
        # The sums stand as of `at`; an entry after it weighs more, to decay as they will.
        weight = 1.0 if self.at is None else 2.0 ** (max(epoch - self.at, 0.0) / HALF_LIFE_S)
        if ready:
            self.avoided += weight
        else:
            self.caused += weight

    def surplus(self, avoided_s: float, caused_s: float) -> float:
        """Replica-seconds the KPA alone would have spent beyond what prediction spent: each
        cold start prediction avoided credited `avoided_s`, each of its making charged
        `caused_s`."""
        return self.kpa + self.avoided * avoided_s - self.spent - self.caused * caused_s

    def paid_for(self, cold_s: float) -> bool:
        """Prediction has measurably spent less than the KPA alone would have, each cold start
        avoided or caused priced `cold_s`: the surplus exceeds one standard error of that
        account (a cold start's price times the square root of the cold starts counted,
        as for counts that arrive at random), so a lucky first cold start or two does not
        pass for a saving."""
        events = self.avoided + self.caused
        return self.surplus(cold_s, cold_s) > cold_s * math.sqrt(events + 1.0)

    def _decay(self, epoch: float) -> None:
        assert self.at is not None
        factor = 0.5 ** ((epoch - self.at) / HALF_LIFE_S)
        self.spent *= factor
        self.kpa *= factor
        self.caused *= factor
        self.avoided *= factor
        self.at = epoch


def _decayed(begin_ago: float, end_ago: float) -> float:
    """Replica-seconds of one replica held from `begin_ago` to `end_ago` seconds ago, each
    second weighed as the decay weighs it now: the integral of the decay over that span, so
    the account is the same whether the ticks come every 2 s (live) or after a skip of hours
    (the simulator's idle skipping)."""
    rate = math.log(2.0) / HALF_LIFE_S
    return (math.exp(-rate * end_ago) - math.exp(-rate * begin_ago)) / rate
