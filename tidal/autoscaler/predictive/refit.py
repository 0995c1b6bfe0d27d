"""One refit of a predictive revision, shared by the live controller and the simulator: the
plan from the per-minute history, and the warm model from the idle gaps the autoscaler saw plus
those read off the history before it started watching. Pure and CPU-bound: the controller runs
it in a worker thread."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tidal.api.predictive import PredictiveAnnotations
from tidal.autoscaler.kpa import DeciderSpec
from tidal.autoscaler.predictive.autoscaler import PredictiveAutoscaler
from tidal.autoscaler.predictive.bounds import Bounds
from tidal.autoscaler.predictive.kpa_cost import idle_tail, panic_cost, served_panic_cost
from tidal.autoscaler.predictive.ledger import Ledger
from tidal.autoscaler.predictive.plan import DEFAULT_READY_S, Plan, build_plan
from tidal.autoscaler.predictive.warm import Gap, WarmModel, fit, gaps_from_minutes

REFIT_S = 3600.0  # plans (and warm models) are rebuilt hourly
WARM_REFIT_S = 600.0  # warm models also every 10 minutes: cheap, and new gaps matter early


def ready_seconds(samples: np.ndarray | list[float], percentile: float = 90.0) -> float:
    """The Ready Time the warm decision pre-warms by: p90 of measured start-up times."""
    x = np.asarray(samples, dtype=float)
    x = x[np.isfinite(x)]
    return float(np.percentile(x, percentile)) if x.size else DEFAULT_READY_S


def build_models(
    history: np.ndarray,
    start: float,
    spec: DeciderSpec,
    settings: PredictiveAnnotations,
    lead_minutes: int,
    ready_s: float,
    bounds: Bounds,
    seen: list[Gap],
    observing_since: float | None,
    previous: WarmModel | None = None,
    ledger: Ledger | None = None,
    aperiodic: bool = True,
) -> tuple[Plan, WarmModel | None, int]:
    """A plan and a warm model (None with too few gaps) and how many gaps it had. `history` is
    per-minute demand ending at epoch `start` (where the plan begins); `seen` are the gaps the
    autoscaler observed since `observing_since`; `previous` is the warm model in use, `ledger` its
    account of what prediction spent against the KPA; `aperiodic`: as for `build_plan`."""
    plan = build_plan(
        history,
        start,
        spec.target_value,
        settings.quantile,
        lead_minutes,
        bounds=bounds,
        aperiodic=aperiodic,
    )
    first = start - 60.0 * len(history)
    gaps = gaps_from_minutes(history, first, until=observing_since) + seen
    model = fit_warm(gaps, ready_s, start, spec, settings, previous, ledger)
    return replace(plan, warm=model, gaps_seen=len(gaps)), model, len(gaps)


def refit_warm(
    autoscaler: PredictiveAutoscaler,
    history: np.ndarray,
    start: float,
    spec: DeciderSpec,
    settings: PredictiveAnnotations,
    ready_s: float,
    previous: WarmModel | None = None,
) -> WarmModel | None:
    """Refit only the warm model (the plan stays), in the caller's thread. Without a new gap
    since the last fit the model stands (returned as is). `previous`: the warm model in use,
    when `autoscaler` is a copy that does not hold it."""
    if warm_model_stands(autoscaler, start):
        return autoscaler.policy.warm
    first = start - 60.0 * len(history)
    gaps = gaps_from_minutes(history, first, until=autoscaler.observing_since) + list(
        autoscaler.gaps
    )
    if previous is None:
        previous = autoscaler.policy.warm
    model = fit_warm(gaps, ready_s, start, spec, settings, previous, autoscaler.ledger)
    autoscaler.policy.set_warm(model, len(gaps))
    return model


def warm_model_stands(autoscaler: PredictiveAutoscaler, start: float) -> bool:
    """Whether `refit_warm` with history up to `start` keeps the model in use: it was fitted
    and no gap has ended in the WARM_REFIT_S before `start`. Once true it stays so, at every
    later `start`, until a request ends the gap the service is in."""
    gaps = autoscaler.gaps
    return (
        bool(gaps)
        and bool(autoscaler.policy.gaps_seen)
        and gaps[-1].start + gaps[-1].length < start - WARM_REFIT_S
    )


def refit(
    autoscaler: PredictiveAutoscaler,
    history: np.ndarray,
    start: float,
    spec: DeciderSpec,
    settings: PredictiveAnnotations,
    lead_minutes: int,
    ready_s: float,
    aperiodic: bool = True,
) -> tuple[Plan, WarmModel | None]:
    """Build and hand in a fresh plan and warm model, in the caller's thread (`aperiodic`: as
    for `build_plan`)."""
    plan, model, _ = build_models(
        history,
        start,
        spec,
        settings,
        lead_minutes,
        ready_s,
        autoscaler.policy.bounds,
        list(autoscaler.gaps),
        autoscaler.observing_since,
        autoscaler.policy.warm,
        autoscaler.ledger,
        aperiodic,
    )
    autoscaler.set_plan(plan)
    return plan, model


def fit_warm(
    gaps: list[Gap],
    ready_s: float,
    now: float,
    spec: DeciderSpec,
    settings: PredictiveAnnotations,
    previous: WarmModel | None,
    ledger: Ledger | None = None,
) -> WarmModel | None:
    """The warm model, priced with what a cold start costs under the service's own KPA
    (docs/predictive.md, "The price knob and its default").

    The KPA is scored with its measured idle tail (`kpa_cost.idle_tail`). With the auto price
    every expected cold start, the KPA's and predictive's own alike, is charged the panic
    replica's time while the request waits (`kpa_cost.served_panic_cost`), not all of it: in
    a busy period the KPA would have needed that replica anyway, and charged whole to the KPA
    (with the measured tail) it made holding look cheap enough that three services spent 1.01x
    the KPA's replica-seconds. A price is acted on only when the previous fit (`previous`, ten
    minutes and new gaps earlier) also found one worth using. The held-out verdict rests on a
    few dozen recent gaps, and a verdict that one fit gives and the next withdraws is noise:
    acted on, it held replicas at dear prices for ten minutes and bought nothing.

    The price must fit BUDGET of the KPA's idle replica time on the held-out gaps (a margin for
    the model's optimism). While `ledger`, the live account of replica time, shows prediction
    to have spent measurably less than the KPA alone would have (`Ledger.paid_for`, a cold
    start avoided or caused priced at the Ready Time plus the panic replica), a fit that finds
    nothing worth using within BUDGET may use the cheapest price that is within the KPA's whole
    idle replica time: the margin is then paid for by what was measured, not assumed. An
    explicit price is scored with the whole panic replica (`kpa_cost.panic_cost`)."""
    tail = idle_tail(spec)
    auto = settings.cold_start_cost is None
    charge = (served_panic_cost if auto else panic_cost)(spec, ready_s, tail)
    spare = 1.0 if auto and ledger is not None and measured_saving(ledger, spec, ready_s) else None
    model = fit(gaps, ready_s, tail, now, settings.cold_start_cost, charge, spare=spare)
    confirmed = previous is not None and previous.rhythm
    if model is not None and auto and model.useful and not confirmed:
        model = replace(model, useful=False)
    return model


def measured_saving(ledger: Ledger, spec: DeciderSpec, ready_s: float) -> bool:
    """Whether the live account shows prediction spending measurably less replica time than
    the KPA alone (`Ledger.paid_for`, each cold start avoided or caused priced at the Ready
    Time plus the KPA's panic replica): what widens the auto price's budget."""
    tail = idle_tail(spec)
    return ledger.paid_for(ready_s + panic_cost(spec, ready_s, tail))
