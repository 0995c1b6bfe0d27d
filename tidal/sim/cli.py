"""`tidal simulate`: replay a trace through each policy and compare them.

tidal simulate --trace FILE|synthetic -f service.yaml [--pools tidal.yaml]
               [--policy NAME ...] [--days N] [-o json] [--report DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from tidal.api.config import PlatformConfig, parse_config
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import load_documents, validate_service
from tidal.api.pools import Pool, parse_pools
from tidal.api.predictive import parse_predictive_annotations
from tidal.api.units import parse_quantity
from tidal.autoscaler.kpa import decider_spec
from tidal.scheduler.placement import Demand
from tidal.sim.dists import default_service_time, parse_distribution
from tidal.sim.model import POLICIES, ServiceModel
from tidal.sim.model import simulate as run_simulation
from tidal.sim.report import print_table, summarize, to_json, write_report
from tidal.sim.traces import DAY_S, Trace, TraceError, load_trace, synthetic_trace

SYNTHETIC = "synthetic"


def load_platform(path: str | None) -> tuple[PlatformConfig, tuple[Pool, ...]]:
    """The platform config file: its `pools:` section and the other sections tidal up reads."""
    data: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise InvalidSpec("", "the config must be a mapping of sections")
    pools = parse_pools(data.pop("pools", None))
    return parse_config(data), pools


def load_service(path: str, config: PlatformConfig) -> ServiceModel:
    """The first Service in a manifest file, as the simulator needs it."""
    docs = load_documents(Path(path).read_text())
    services = [doc for doc in docs if doc.get("kind") == "Service"]
    if not services:
        raise InvalidSpec("kind", "no Service in the file")
    valid = validate_service(services[0], config.autoscaler)
    template = valid.service.spec.template
    spec = template.spec
    container = spec.containers[0]
    requests = {**container.resources.requests, **container.resources.limits}
    demand = Demand(
        cpu=parse_quantity(requests.get("cpu", 0)),
        memory=parse_quantity(requests.get("memory", 0)),
        gpus=container.gpus(),
    )
    cc = spec.container_concurrency
    return ServiceModel(
        name=valid.name,
        spec=decider_spec(config.autoscaler, valid.autoscaling, cc),
        container_concurrency=cc,
        timeout_s=float(spec.timeout_seconds),
        demand=demand,
        predictive=parse_predictive_annotations(template.metadata.annotations),
        progress_deadline_s=valid.progress_deadline_s or config.progress_deadline_s,
        pending_cap_default=config.pending_cap_default,
    )


def load_any_trace(source: str, days: float | None, rps: float, seed: int) -> Trace:
    if source == SYNTHETIC:
        return synthetic_trace(days or 1.0, rps, seed)
    trace = load_trace(source, seed)
    return trace if days is None else trace.head(days * DAY_S)


@click.command("simulate")
@click.option(
    "--trace",
    "source",
    required=True,
    help="Trace file (Azure Functions 2019, Azure LLM 2023, Alibaba qps.csv, or a CSV with a "
    "timestamp[,duration] header), or 'synthetic' for a seeded diurnal trace.",
)
@click.option("-f", "--filename", "service_file", required=True, help="Knative Service YAML.")
@click.option("--pools", "pools_file", help="Platform config (tidal.yaml) with pools and prices.")
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Choice(POLICIES),
    help="Policies to compare (repeat; default: all).",
)
@click.option("--days", type=float, help="Replay the first N days (synthetic: its length).")
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), help="Write plots here.")
@click.option("--slo", "slo_s", type=float, default=1.0, show_default=True, help="Latency SLO (s).")
@click.option(
    "--service-time",
    help="Service time distribution (default: the trace's durations, its token model, or "
    "azure-functions). E.g. const:0.2, exp:0.5, alibaba-predict, tokens:5000,50.",
)
@click.option(
    "--startup",
    default="alibaba-load",
    show_default=True,
    help="Replica start-up time distribution, added to the pool's startupDelay.",
)
@click.option("--rps", type=float, default=5.0, show_default=True, help="Synthetic mean req/s.")
@click.option("--seed", type=int, default=0, show_default=True)
def simulate(
    source: str,
    service_file: str,
    pools_file: str | None,
    policies: tuple[str, ...],
    days: float | None,
    fmt: str,
    report_dir: str | None,
    slo_s: float,
    service_time: str | None,
    startup: str,
    rps: float,
    seed: int,
) -> None:
    """Replay a request trace through tidal's autoscaler and scheduler, once per policy."""
    try:
        config, pools = load_platform(pools_file)
        service = load_service(service_file, config)
        trace = load_any_trace(source, days, rps, seed)
        service_dist = (
            parse_distribution(service_time) if service_time else default_service_time(trace)
        )
        startup_dist = parse_distribution(startup)
    except (InvalidSpec, TraceError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    names = policies or POLICIES
    err = Console(stderr=True)
    with Progress(
        TextColumn("{task.description:>16}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        tasks = {name: bar.add_task(name, total=trace.duration) for name in names}

        def progress(name: str, t: float) -> None:
            bar.update(tasks[name], completed=t)

        try:
            results = run_simulation(
                trace, service, names, pools, service_dist, startup_dist, seed, progress
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    summary = summarize(results, slo_s)
    title = f"{trace.name} ({len(trace):,} requests, {trace.duration / 3600:.1f} h)"
    if fmt == "json":
        click.echo(to_json(summary))
    else:
        print_table(summary, title, Console(width=200) if not sys.stdout.isatty() else None)
        click.echo(
            f"service time {service_dist}, start-up {startup_dist} + pool delay, "
            f"SLO {slo_s:g} s, seed {seed}"
        )
    if report_dir is not None:
        files = write_report(results, summary, Path(report_dir), title)
        click.echo(f"report: {', '.join(str(f) for f in files)}", err=fmt == "json")


if __name__ == "__main__":
    simulate()
