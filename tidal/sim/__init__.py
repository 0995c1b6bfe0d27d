"""What-if simulator: replay request traces through tidal's own autoscaler and scheduler with a
simulated clock (docs/architecture.md#the-one-rule)."""

from tidal.sim.model import POLICIES, ServiceModel, SimResult, Simulation, simulate
from tidal.sim.traces import Trace, TraceError, load_trace, synthetic_trace

__all__ = [
    "POLICIES",
    "ServiceModel",
    "SimResult",
    "Simulation",
    "Trace",
    "TraceError",
    "load_trace",
    "simulate",
    "synthetic_trace",
]
