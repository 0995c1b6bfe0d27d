"""`tidal forecast`, `tidal history import` and `tidal backtest`."""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import numpy as np

from tidal.api.units import parse_duration
from tidal.cli.client import TIDAL, Client, console, output
from tidal.cli.params import FiniteRange, OutputFile
from tidal.cli.progress import progress
from tidal.cli.tables import new_table
from tidal.store.history import RETENTION_DAYS

PROMETHEUS_MAX_POINTS = 10_000  # Prometheus refuses query_range answers over 11,000 points


@click.command()
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option(
    "--hours",
    type=click.IntRange(min=1, max=24),
    default=6,
    show_default=True,
    help="Hours of the 24-hour plan to print.",
)
@click.option("--plot", type=OutputFile(), help="Draw history and plan to a PNG.")
@click.option("-o", "--output", "fmt", type=click.Choice(["json", "yaml"]))
@click.pass_obj
def forecast(
    client: Client, name: str, namespace: str, hours: int, plot: str | None, fmt: str | None
) -> None:
    """The service's forecast and 24-hour replica plan, the priced warm decision, its mode and
    why the current count was chosen, its Ready Time."""
    view = client.call("GET", f"{TIDAL}/namespaces/{namespace}/services/{name}/forecast")
    if plot:
        draw(view, Path(plot))
    if fmt:
        output(view, fmt)
        return
    periods = ", ".join(_period_name(p) for p in view["periodsMinutes"]) or "none found"
    ready = view["readyTimeP90Seconds"]
    console.print(f"[bold]{namespace}/{name}[/] revision {view['revision']}", markup=True)
    console.print(f"mode: {view['mode']} ({view['reason']})", markup=False)
    console.print(
        f"periods: {periods}; forecast: {view['method']} at quantile "
        f"{view['quantile']:g} from {view['historyMinutes']} minutes of history "
        f"({view['forecastReason']})",
        markup=False,
    )
    console.print(
        "Ready Time: "
        + (
            f"p90 {ready:.2f}s over {view['readyTimeSamples']} starts"
            if ready is not None
            else "not measured yet"
        )
        + f"; scale-up lead {view['leadMinutes']} min; target {view['targetPerReplica']:g}"
        f" {view.get('unit', '')} ({view.get('metric', 'concurrency')}) per replica",
        markup=False,
    )
    console.print(_warm_line(view.get("warm")), markup=False)
    if view.get("account"):
        console.print(_account_line(view["account"]), markup=False)
    table = new_table("HOUR (UTC)", "DEMAND", f"Q{view['quantile'] * 100:g}", "REPLICAS")
    for hour in range(min(hours, 24)):
        span = slice(hour * 60, (hour + 1) * 60)
        start = datetime.fromtimestamp(view["start"] + hour * 3600, UTC)
        table.add_row(
            start.strftime("%a %H:%M"),
            f"{np.mean(view['demand'][span]):.2f}",
            f"{max(view['upper'][span]):.2f}",
            str(max(view["replicas"][span])),
        )
    console.print(table)


def _warm_line(warm: dict[str, Any] | None) -> str:
    """One line on the priced decision to keep a replica warm while the service is idle."""
    if not warm:
        return "warm decision: not available"
    if not warm["fitted"]:
        return (
            f"warm decision: {warm['gaps']} idle gaps seen, need {warm['needGaps']}; "
            "idle replicas follow the KPA"
        )
    price = f"a cold start priced {warm['coldStartCostReplicaSeconds']:g} replica-s" + (
        " (auto: the most the KPA's own replica time affords)" if warm["autoPrice"] else ""
    )
    if warm["expectedColdStartsVsKpa"] is None:
        expect = (
            f"the newest of {warm['gaps']} idle gaps are all shorter than the KPA's "
            f"{warm['kpaTailSeconds']:g} s tail and in one slice of the day: no cold start "
            "of its to beat yet"
        )
    else:
        expect = (
            f"expects {warm['expectedColdStartsVsKpa']:.2f}x the KPA's cold starts at "
            f"{warm['expectedReplicaTimeVsKpa']:.2f}x its idle replica time over "
            f"{warm['gaps']} idle gaps"
        )
    used = "" if warm["used"] else "; no gain over the KPA's tail, so idle replicas follow it"
    return f"warm decision: {price}; {expect}{used}"


def _account_line(account: dict[str, Any]) -> str:
    """One line on the live account of replica time that can widen the auto price's budget."""
    verdict = (
        "a measured saving: the auto price may use up to the KPA's idle replica time"
        if account["savingMeasured"]
        else "no saving measured beyond its noise: the auto price keeps its margin"
    )
    return (
        f"measured (a week's half-life): {account['spentReplicaSeconds']:,.0f} replica-s "
        f"spent against the KPA alone's {account['kpaReplicaSeconds']:,.0f}; cold starts "
        f"avoided {account['coldStartsAvoided']:g}, caused {account['coldStartsCaused']:g}; "
        f"{verdict}"
    )


def _period_name(minutes: int) -> str:
    return {1440: "daily", 10080: "weekly"}.get(minutes, f"{minutes} min")


def draw(view: dict[str, Any], path: Path) -> None:
    """History, forecast with its quantile band, planned and actual replicas on one time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def times(start: float, count: int) -> list[datetime]:
        return [datetime.fromtimestamp(start + 60 * i, UTC) for i in range(count)]

    recent = view["recent"]
    past = times(recent["start"], len(recent["demand"]))
    future = times(view["start"], len(view["demand"]))
    demand = [np.nan if v is None else v for v in recent["demand"]]
    ready = [np.nan if v is None else v for v in recent["readyReplicas"]]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(12, 7))
    top.plot(past, demand, color="tab:blue", linewidth=0.8, label="history")
    top.plot(future, view["demand"], color="tab:orange", linewidth=1, label="forecast")
    top.fill_between(
        future,
        view["demand"],
        view["upper"],
        color="tab:orange",
        alpha=0.25,
        label=f"quantile {view['quantile']:g}",
    )
    top.set_ylabel("demand")
    top.legend(loc="upper left")
    top.set_title(
        f"{view['namespace']}/{view['service']} ({view['revision']}): "
        f"mode {view['mode']}, lead {view['leadMinutes']} min"
    )
    bottom.step(future, view["replicas"], where="post", color="tab:green", label="planned")
    bottom.step(past[-len(ready) :], ready, where="post", color="tab:gray", label="actual ready")
    bottom.set_ylabel("replicas")
    bottom.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@click.group()
def history() -> None:
    """Metric history that predictive scaling learns from."""


@history.command("import")
@click.argument("name")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(exists=True, dir_okay=False),
    help="timestamp,value rows (ISO time, or epoch seconds or milliseconds).",
)
@click.option("--prometheus", help="Prometheus base URL, read with its query_range API.")
@click.option("--query", help="PromQL giving the service's demand (summed if several series).")
@click.option("--days", default="14d", show_default=True, help="How far back (Prometheus).")
@click.option("--step", default="60s", show_default=True, help="Resolution (Prometheus).")
@click.option(
    "--field",
    type=click.Choice(["avg_concurrency", "requests"]),
    default="avg_concurrency",
    show_default=True,
    help="What the values are: mean concurrency or requests per minute.",
)
@click.pass_obj
def import_history(
    client: Client,
    name: str,
    namespace: str,
    csv_path: str | None,
    prometheus: str | None,
    query: str | None,
    days: str,
    step: str,
    field: str,
) -> None:
    """Give a service weeks of history at once, from a CSV file or a Prometheus server."""
    if (csv_path is None) == (prometheus is None):
        raise click.UsageError("give exactly one of --csv FILE and --prometheus URL --query Q")
    if csv_path is not None:
        from tidal.autoscaler.predictive.backtest import load_history_csv

        try:
            stamps, values = load_history_csv(csv_path)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    else:
        if not query:
            raise click.UsageError("--prometheus needs --query")
        try:
            back_s, step_s = parse_duration(days), parse_duration(step)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        stamps, values = query_range(prometheus or "", query, back_s, step_s)
    keep = ~np.isnan(values)  # JSON has no NaN: minutes without a value stay out
    body = {"timestamps": stamps[keep].tolist(), "values": values[keep].tolist(), "field": field}
    with progress(f"importing {int(keep.sum())} points into {namespace}/{name}"):
        path = f"{TIDAL}/namespaces/{namespace}/services/{name}/history"
        result = client.call("POST", path, body)
    span = f" ({result['from']} to {result['to']})" if result.get("from") else ""
    click.echo(f"imported {result['minutes']} minutes of history into {namespace}/{name}{span}")
    if result.get("tooOld"):
        click.echo(
            f"left out {result['tooOld']} minutes older than the {RETENTION_DAYS} days of "
            "history tidal keeps"
        )


def query_range(
    base: str, query: str, back_s: float, step_s: float, now: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus' /api/v1/query_range over the last `back_s` seconds, in chunks it accepts;
    several series are summed per timestamp."""
    end = time.time() if now is None else now
    start = end - back_s
    totals: dict[float, float] = {}
    chunk = step_s * PROMETHEUS_MAX_POINTS
    chunks = max(1, math.ceil((end - start) / (chunk + step_s)))
    with progress("querying Prometheus", total=chunks) as advance:
        while start < end:
            start = _query_chunk(base, query, start, min(end, start + chunk), step_s, totals)
            advance(1)
    stamps = np.array(sorted(totals))
    return stamps, np.array([totals[t] for t in stamps])


def _query_chunk(
    base: str, query: str, start: float, stop: float, step_s: float, totals: dict[float, float]
) -> float:
    """One query_range call, summed into `totals`; returns the next chunk's start."""
    params = urllib.parse.urlencode(
        {"query": query, "start": start, "end": stop, "step": f"{step_s:g}s"}
    )
    url = f"{base.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            answer = json.loads(response.read())
    except (urllib.error.URLError, ValueError) as exc:
        raise click.ClickException(f"Prometheus query_range at {base} failed: {exc}") from None
    if answer.get("status") != "success":
        raise click.ClickException(f"Prometheus answered: {answer.get('error', answer)}")
    for series in answer["data"]["result"]:
        for stamp, value in series["values"]:
            totals[float(stamp)] = totals.get(float(stamp), 0.0) + float(value)
    return stop + step_s


@click.command()
@click.option(
    "--history",
    "history_path",
    type=click.Path(exists=True, dir_okay=False),
    help="CSV of timestamp,value (per minute or coarser; gaps allowed).",
)
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(exists=True, dir_okay=False),
    help="A request trace (any `tidal simulate --trace` format), taken as requests/s per minute.",
)
@click.option(
    "--target",
    type=FiniteRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Per-replica capacity that turns demand into replicas.",
)
@click.option("--quantile", type=FiniteRange(min=0, max=1), default=0.95, show_default=True)
@click.option(
    "--lead",
    type=click.IntRange(min=0, max=24 * 60),
    default=2,
    show_default=True,
    help="Scale-up lead (Ready Time), minutes.",
)
@click.option("-o", "--output", "fmt", type=click.Choice(["json", "yaml"]))
def backtest(
    history_path: str | None,
    trace_path: str | None,
    target: float,
    quantile: float,
    lead: int,
    fmt: str | None,
) -> None:
    """Walk forward fold by fold (a day; an hour or 10 minutes for short histories): fit on
    what came before, forecast the fold; tidal against seasonal-naive and Holt-Winters computed
    in the same run. Every figure is lower-is-better."""
    from tidal.autoscaler.predictive.backtest import backtest as run_backtest
    from tidal.autoscaler.predictive.backtest import fold_minutes, load_history_csv, trace_rate

    if (history_path is None) == (trace_path is None):
        raise click.UsageError("give exactly one of --history CSV and --trace FILE")
    try:
        if history_path is not None:
            stamps, values = load_history_csv(history_path)
        else:
            stamps, values = trace_rate(trace_path or "")
        folds = max(0, len(values) // fold_minutes(len(values)) - 2)
        with progress("backtest: folds", total=folds) as advance:
            result = run_backtest(
                values,
                target,
                quantile,
                lead,
                float(stamps[0]) if len(stamps) else 0.0,
                on_day=lambda: advance(1),
            )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt:
        output(result, fmt)
        return
    table = new_table("METHOD", "MASE ↓", "UNDER-PROVISIONED MINUTES ↓", "REPLICA-MINUTES ↓")
    for method, figures in result["methods"].items():
        mase = figures.get("mase")
        table.add_row(
            method,
            "-" if mase is None else f"{mase:.3f}",
            str(figures["under_provisioned_minutes"]),
            f"{figures['replica_minutes']:.0f}",
        )
    console.print(table)
    chosen = ", ".join(f"{m} {n}" for m, n in sorted(result["chosen"].items()))
    console.print(
        f"{result['folds']} folds of {result['foldMinutes']} min forecast, target {target:g}, "
        f"quantile {quantile:g}, lead {lead} min. Lower is better in every column. MASE: mean "
        "absolute error of the forecast over the in-sample error of same-minute-yesterday "
        "(previous minute with under two days). tidal picks its method per fold by held-out "
        f"error; it chose: {chosen}.",
        markup=False,
    )
