"""The scaling loop's clocks, shared by the live loop (tidal/controller/scaling.py) and the
simulator's replay (tidal/sim/model.py), so both keep Knative's rhythm: a stat per metric bucket
(1 s) and a decision per decider tick (2 s). See docs/simulator.md."""

from __future__ import annotations

from tidal.autoscaler.kpa import TICK_INTERVAL
from tidal.autoscaler.metrics import BUCKET_SIZE

STAT_PERIOD_S = BUCKET_SIZE
TICKS_PER_DECISION = round(TICK_INTERVAL / STAT_PERIOD_S)
