"""Service-time and start-up-time distributions, written as `KIND[:ARGS]` on the command line.

- `const:S` (or just `S`), `exp:MEAN`, `uniform:LOW,HIGH` (seconds);
- `azure-functions`: execution times of the Azure Functions 2019 sample (1350_run.csv, median
  over functions of each duration percentile p0/p1/p25/p50/p75/p99/p100: 0.14 ... 2.59 s);
- `alibaba-predict`: Stable Diffusion inference times (model_predict_data_anon.csv, median 35 s);
- `alibaba-load`: base-model load times, "the main component of cold start"
  (basemodel_update_latency_anon.csv, median 22.7 s, p99 51.9 s);
- `tokens[:PREFILL,DECODE]`: for traces with token columns, `ContextTokens/PREFILL +
  GeneratedTokens/DECODE` seconds (default 5000 and 50 tokens/s);
- `trace`: the trace's own duration column.
Quantile tables are interpolated (inverse CDF), so sampling is vectorised and seeded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tidal.sim.traces import Trace

_PCT = np.array([0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100]) / 100.0
QUANTILES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "azure-functions": (
        np.array([0, 1, 25, 50, 75, 99, 100]) / 100.0,
        np.array([0.140, 0.152, 0.2585, 0.381, 0.7215, 1.667, 2.588]),
    ),
    "alibaba-predict": (
        _PCT,
        np.array([2.89, 4.72, 9.64, 11.38, 15.89, 35.05, 63.37, 74.0, 79.35, 98.05, 156.35]),
    ),
    "alibaba-load": (
        _PCT,
        np.array([1.33, 1.53, 2.29, 2.63, 3.14, 22.72, 36.92, 41.99, 45.45, 51.85, 79.44]),
    ),
}
DEFAULT_PREFILL = 5000.0  # tokens/s
DEFAULT_DECODE = 50.0  # tokens/s


@dataclass(frozen=True)
class Distribution:
    kind: str
    args: tuple[float, ...] = ()

    def sample(self, size: int, rng: np.random.Generator, trace: Trace | None = None) -> np.ndarray:
        if self.kind == "const":
            return np.full(size, self.args[0])
        if self.kind == "exp":
            return rng.exponential(self.args[0], size)
        if self.kind == "uniform":
            return rng.uniform(self.args[0], self.args[1], size)
        if self.kind in QUANTILES:
            probs, values = QUANTILES[self.kind]
            return np.interp(rng.uniform(0.0, 1.0, size), probs, values)
        if trace is None:
            raise ValueError(f"service time {self.kind!r} needs a trace")
        if self.kind == "trace":
            if trace.service_times is None:
                raise ValueError(f"trace {trace.name} has no duration column")
            return trace.service_times.astype(float)
        if trace.context_tokens is None or trace.generated_tokens is None:
            raise ValueError(f"trace {trace.name} has no token columns")
        prefill, decode = self.args or (DEFAULT_PREFILL, DEFAULT_DECODE)
        return trace.context_tokens / prefill + trace.generated_tokens / decode

    def __str__(self) -> str:
        return self.kind + (":" + ",".join(f"{a:g}" for a in self.args) if self.args else "")


def parse_distribution(text: str) -> Distribution:
    """`KIND[:A[,B]]` as in the module doc; raises ValueError with the accepted forms."""
    kind, _, rest = text.strip().partition(":")
    try:
        args = tuple(float(a) for a in rest.split(",")) if rest else ()
        if not rest and kind not in QUANTILES and kind not in ("trace", "tokens"):
            args, kind = (float(kind),), "const"
    except ValueError:
        args = (-1.0,)
    arity = {"const": 1, "exp": 1, "uniform": 2, "tokens": (0, 2), "trace": 0}
    want = arity.get(kind, 0 if kind in QUANTILES else None)
    ok = want is not None and (len(args) in want if isinstance(want, tuple) else len(args) == want)
    if (
        not ok
        or any(not math.isfinite(a) or a < 0 for a in args)
        or (kind == "tokens" and 0.0 in args)
        or (kind == "uniform" and args[0] > args[1])
    ):
        raise ValueError(
            f"bad distribution {text!r}: use const:S, exp:MEAN, uniform:LOW,HIGH (seconds >= 0, "
            "LOW <= HIGH), tokens[:PREFILL,DECODE] (tokens/s > 0), trace, or one of "
            f"{', '.join(QUANTILES)}"
        )
    return Distribution(kind, args)


def default_service_time(trace: Trace) -> Distribution:
    """The trace's durations, else its token model, else the Azure Functions distribution."""
    if trace.service_times is not None:
        return Distribution("trace")
    if trace.context_tokens is not None:
        return Distribution("tokens")
    return Distribution("azure-functions")
