"""`tidal simulate`: replay a trace through each policy and compare them (docs/simulator.md).

tidal simulate --trace FILE|synthetic -f service.yaml [--pools tidal.yaml] [--policy NAME ...]
               [--per-service] [--services N] [--sweep] [--warmup DAYS | --history FILE]
               [--days N] [-o json] [--report DIR] [--cores-per-request N]
               [--memory-per-replica Q] [--memory-per-request Q] [--gpu-per-request PCT]
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from tidal.api.autoscaling import (
    CPU,
    GPU,
    MEMORY,
    RT,
    AutoscalingAnnotations,
    metric_settings,
)
from tidal.api.config import PlatformConfig, parse_config
from tidal.api.errors import InvalidSpec
from tidal.api.manifest import load_documents, validate_service
from tidal.api.pools import Pool, parse_pools
from tidal.api.service import Container
from tidal.api.textfile import read_text
from tidal.api.units import parse_quantity
from tidal.autoscaler.kpa import decider_spec
from tidal.autoscaler.signals import MetricTarget, metric_target
from tidal.cli.params import FiniteRange, OutputDirectory
from tidal.scheduler.placement import Demand, never_fits
from tidal.sim.dists import default_service_time, parse_distribution
from tidal.sim.model import POLICIES, ServiceModel
from tidal.sim.report import print_tables, summarize, to_json, write_report
from tidal.sim.runner import Job, Shared, run_jobs
from tidal.sim.sweep import Setting, default_settings, frontiers, settings_for
from tidal.sim.traces import (
    DAY_S,
    MAX_REQUESTS,
    MAX_SPAN_DAYS,
    Trace,
    TraceError,
    load_trace,
    sparse_trace,
    synthetic_trace,
)

SYNTHETIC = "synthetic"
SHAPES = ("diurnal", "sparse")
DEFAULT_RPS = {"diurnal": 5.0, "sparse": 0.0125}


def load_platform(path: str | None) -> tuple[PlatformConfig, tuple[Pool, ...]]:
    """The platform config file: its `pools:` section and the other sections tidal up reads."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(read_text(path)) or {}
        except yaml.YAMLError as exc:
            raise InvalidSpec("", f"{path}: invalid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidSpec("", f"{path}: the config must be a mapping of sections")
    pools = parse_pools(data.pop("pools", None))
    return parse_config(data), pools


def load_manifest(path: str) -> dict[str, Any]:
    """The first Service document of a manifest file."""
    try:
        docs = load_documents(read_text(path))
    except InvalidSpec as exc:
        raise InvalidSpec(exc.field, f"{path}: {exc.message}") from None
    services = [doc for doc in docs if doc.get("kind") == "Service"]
    if not services:
        raise InvalidSpec("kind", "no Service in the file")
    return services[0]


def service_model(
    doc: dict[str, Any], config: PlatformConfig, annotations: dict[str, str] | None = None
) -> ServiceModel:
    """What the simulator needs of a Service manifest, with extra template annotations (a
    sweep point) validated as `tidal apply` would."""
    if annotations:
        doc = copy.deepcopy(doc)
        template = doc.setdefault("spec", {}).setdefault("template", {})
        meta = template.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    valid = validate_service(doc, config.autoscaler, require_command=False)  # nothing runs
    template = valid.service.spec.template
    spec = template.spec
    sized = [{**c.resources.requests, **c.resources.limits} for c in spec.containers]
    demand = Demand(  # a replica's, all its containers together
        cpu=sum(parse_quantity(requests.get("cpu", 0)) for requests in sized),
        memory=sum(parse_quantity(requests.get("memory", 0)) for requests in sized),
        gpus=sum(c.gpus() for c in spec.containers),
    )
    cc = spec.container_concurrency
    return ServiceModel(
        name=valid.name,
        spec=decider_spec(config.autoscaler, valid.autoscaling, cc),
        metric=simulated_metric(valid.autoscaling, template.metadata.annotations, spec.serving),
        container_concurrency=cc,
        timeout_s=float(spec.timeout_seconds),
        demand=demand,
        predictive=valid.predictive,
        progress_deadline_s=valid.progress_deadline_s or config.progress_deadline_s,
        pending_cap_default=config.pending_cap_default,
    )


def simulated_metric(
    ann: AutoscalingAnnotations, annotations: dict[str, str], container: Container
) -> MetricTarget | None:
    """The RT, CPU, memory or GPU target a revision scales on
    (docs/simulator.md#what-is-simulated); None for concurrency and rps."""
    settings = metric_settings(ann, annotations, container)
    if ann.metric in (RT, MEMORY, GPU) or (ann.metric == CPU and settings.cpu_request):
        return metric_target(ann.metric, ann.target, settings.cpu_request, settings.rt_percentile)
    return None


def with_usage(model: ServiceModel, usage: dict[str, float]) -> ServiceModel:
    """The model with what its replicas use (`tidal simulate --memory-per-request` ...); a
    memory metric needs some memory to measure."""
    model = replace(model, **usage)
    memory = model.memory_per_replica or model.memory_per_request
    if model.metric is not None and model.metric.metric == MEMORY and not memory:
        raise ValueError(
            "metric memory: the simulator models memory as --memory-per-replica plus "
            "--memory-per-request x requests in service; give at least one of them"
        )
    return model


def load_service(path: str, config: PlatformConfig) -> ServiceModel:
    """The first Service in a manifest file, as the simulator needs it."""
    return service_model(load_manifest(path), config)


def load_any_trace(
    source: str,
    days: float | None,
    rps: float | None,
    seed: int,
    shape: str,
    services: int | None,
) -> Trace:
    """The trace to replay: a file's first `days`, its `services` busiest services; or a
    synthetic trace of `days` with `services` services."""
    if source == SYNTHETIC:
        rate = DEFAULT_RPS[shape] if rps is None else rps
        length = days or (28.0 if shape == "sparse" else 1.0)
        if length > MAX_SPAN_DAYS:
            raise ValueError(f"--days {length:g}: the simulator replays at most {MAX_SPAN_DAYS}")
        if rate * length * DAY_S > MAX_REQUESTS:
            raise ValueError(
                f"--rps {rate:g} for {length:g} d is about {rate * length * DAY_S:,.0f} requests; "
                f"the simulator replays at most {MAX_REQUESTS:,}"
            )
        if shape == "sparse":
            return sparse_trace(length, rate, seed, services or 1)
        return synthetic_trace(length, rate, seed, services or 1)
    seconds = None if days is None else days * DAY_S
    trace = load_trace(source, seed, busiest=services, seconds=seconds)
    if services is not None and not trace.services:
        raise ValueError("--services needs a trace with several services")
    return trace


def prior_history(path: str, trace: Trace) -> np.ndarray:
    """Per-minute mean concurrency from a history CSV (as `tidal history import --csv` reads),
    for the minutes before the trace starts (NaN where the file has none)."""
    from tidal.autoscaler.predictive.backtest import load_history_csv

    stamps, values = load_history_csv(path)
    start_minute = math.floor(trace.start_epoch / 60.0)
    first = int(stamps[0] // 60)
    if first >= start_minute:
        raise ValueError(f"{path}: the history starts after the trace does; it must precede it")
    series = np.full(start_minute - first, np.nan)
    keep = min(len(values), len(series))
    series[:keep] = values[:keep]
    return series


@click.command("simulate")
@click.option(
    "--trace",
    "source",
    required=True,
    help="Trace file (Azure Functions 2019 or 2021, Azure LLM 2023/2024, BurstGPT, Alibaba "
    "qps.csv, or a CSV with a timestamp[,service][,duration] header), or 'synthetic' for a "
    "seeded trace (see --shape).",
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
@click.option(
    "--per-service",
    is_flag=True,
    help="One service per trace service (function, model...), each from the manifest as a "
    "template, all sharing the pools. Without it the trace is summed into the one service.",
)
@click.option(
    "--services",
    "service_count",
    type=click.IntRange(min=1),
    help="Keep the N busiest services of the trace (synthetic: make N services).",
)
@click.option("--sweep", is_flag=True, help="Run each policy over its knob; report frontiers.")
@click.option(
    "--warmup",
    type=FiniteRange(min=0),
    default=0.0,
    help="Replay the first DAYS as history (predictive learns), score only the rest.",
)
@click.option(
    "--history",
    "history_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Per-minute history CSV (timestamp,value: mean concurrency) before the trace, for "
    "predictive.",
)
@click.option(
    "--days",
    type=FiniteRange(min=0, min_open=True),
    help="Replay the first N days (synthetic: its length).",
)
@click.option("-o", "--output", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--report", "report_dir", type=OutputDirectory(), help="Write plots here.")
@click.option(
    "--slo",
    "slo_s",
    type=FiniteRange(min=0),
    default=1.0,
    show_default=True,
    help="Most a request may wait for a replica (queueing and cold start, on top of its own "
    "service time); longer waits and failures count as SLO misses.",
)
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
@click.option(
    "--shape",
    type=click.Choice(SHAPES),
    default="diurnal",
    show_default=True,
    help="Synthetic trace: busy diurnal, or sparse bursty clusters (28 days by default).",
)
@click.option(
    "--rps",
    type=FiniteRange(min=0, min_open=True),
    help="Synthetic mean req/s (diurnal 5, sparse 0.0125).",
)
@click.option(
    "--cores-per-request",
    type=FiniteRange(min=0),
    default=1.0,
    show_default=True,
    help="CPU a request in service burns (metric cpu).",
)
@click.option(
    "--memory-per-replica",
    default="0",
    show_default=True,
    help="Memory a ready replica holds idle, e.g. 300Mi (metric memory).",
)
@click.option(
    "--memory-per-request",
    default="0",
    show_default=True,
    help="Memory a request in service adds, e.g. 50Mi (metric memory).",
)
@click.option(
    "--gpu-per-request",
    type=FiniteRange(min=0),
    default=100.0,
    show_default=True,
    help="% of its replica's GPU a request in service keeps busy (metric gpu).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), help="Worker processes (default: CPUs).")
def simulate(
    source: str,
    service_file: str,
    pools_file: str | None,
    policies: tuple[str, ...],
    per_service: bool,
    service_count: int | None,
    sweep: bool,
    warmup: float,
    history_file: str | None,
    days: float | None,
    fmt: str,
    report_dir: str | None,
    slo_s: float,
    service_time: str | None,
    startup: str,
    shape: str,
    rps: float | None,
    cores_per_request: float,
    memory_per_replica: str,
    memory_per_request: str,
    gpu_per_request: float,
    seed: int,
    jobs: int | None,
) -> None:
    """Replay a request trace through tidal's autoscaler and scheduler, once per policy."""
    names = policies or POLICIES
    try:
        config, pools = load_platform(pools_file)
        doc = load_manifest(service_file)
        usage = {
            "cores_per_request": cores_per_request,
            "memory_per_replica": parse_quantity(memory_per_replica),
            "memory_per_request": parse_quantity(memory_per_request),
            "gpu_per_request": gpu_per_request,
        }
        template = with_usage(service_model(doc, config), usage)
        unplaceable = never_fits(template.demand, pools)
        if unplaceable:
            where = f"the pools of {pools_file}" if pools_file else "the default pool (no --pools)"
            raise ValueError(f"{service_file}: {unplaceable} in {where}")
        trace = load_any_trace(source, days, rps, seed, shape, service_count)
        if per_service and not trace.services:
            raise ValueError(
                f"--per-service: {trace.name} has one service (give a trace with a service "
                "column, an Azure Functions file, or synthetic --services N)"
            )
        if history_file is not None and per_service:
            raise ValueError("--history is one service's history; with --per-service use --warmup")
        if history_file is not None and template.metric is not None and "predictive" in names:
            raise ValueError(
                f"--history is mean concurrency; predictive on metric {template.metric.metric} "
                "plans on that metric, which it learns from the replay: use --warmup DAYS"
            )
        if warmup * DAY_S >= trace.duration:
            raise ValueError(f"--warmup {warmup:g} d leaves nothing of the trace to score")
        service_dist = (
            parse_distribution(service_time) if service_time else default_service_time(trace)
        )
        startup_dist = parse_distribution(startup)
        history = prior_history(history_file, trace) if history_file else None
        job_list, same = build_jobs(doc, config, template, trace, names, per_service, sweep, usage)
        times = service_dist.sample(len(trace), np.random.default_rng(seed), trace)
    except (InvalidSpec, TraceError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None

    shared = Shared(
        trace,
        pools,
        times,
        startup_dist,
        seed,
        {"prior_history": history, "score_from": warmup * DAY_S},
    )
    err = Console(stderr=True)
    with Progress(
        TextColumn("{task.description:>28}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        tasks = [
            bar.add_task(f"{job.policy} {job.label}", total=trace.duration) for job in job_list
        ]
        try:
            results = run_jobs(
                shared,
                job_list,
                jobs,
                lambda index, t: bar.update(tasks[index], completed=t),
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None

    main = {r.policy: r for r in results if r.setting == "default"}
    summary = summarize(main, slo_s, per_service=per_service)
    if sweep:
        measured = {
            (r.policy, r.setting): summarize({r.policy: r}, slo_s)["policies"][r.policy]
            for r in results
        }
        rows = {
            policy: [
                (
                    s.label,
                    measured[policy, "default" if s.label in same.get(policy, ()) else s.label],
                )
                for s in settings_for(policy)
            ]
            for policy in names
        }
        summary["frontiers"] = frontiers(rows)
    scored = f", scored after {warmup:g} d" if warmup else ""
    span = (
        f"{trace.duration / 3600:.1f} h"
        if trace.duration < 2 * DAY_S
        else (f"{trace.duration / DAY_S:.1f} d")
    )
    fleet = f", {len(trace.services):,} services" if per_service else ""
    title = f"{trace.name} ({len(trace):,} requests{fleet}, {span}{scored})"
    if fmt == "json":
        click.echo(to_json(summary))
    else:
        print_tables(summary, title, Console(width=200) if not sys.stdout.isatty() else None)
        click.echo(
            f"service time {service_dist}, start-up {startup_dist} + pool delay, "
            f"SLO: wait <= {slo_s:g} s, seed {seed}"
        )
    if report_dir is not None:
        files = write_report(main, summary, Path(report_dir), title)
        click.echo(f"report: {', '.join(str(f) for f in files)}", err=fmt == "json")


def build_jobs(
    doc: dict[str, Any],
    config: PlatformConfig,
    template: ServiceModel,
    trace: Trace,
    policies: tuple[str, ...],
    per_service: bool,
    sweep: bool,
    usage: dict[str, float] | None = None,
) -> tuple[list[Job], dict[str, list[str]]]:
    """One job per policy (and per sweep point), with its services built from the manifest
    (and `usage`, what their replicas use); and per policy the labels of the sweep points
    that would replay its default exactly (e.g. the KPA's `window=60s`), which get the
    default's result instead of a replay of their own."""
    jobs: list[Job] = []
    same: dict[str, list[str]] = {}
    for policy in policies:
        for setting in settings_for(policy) if sweep else [Setting()]:
            model = (
                with_usage(service_model(doc, config, setting.annotations), usage or {})
                if setting.annotations
                else template
            )
            if setting.label != "default" and (
                model == template and default_settings(policy, setting.settings)
            ):
                same.setdefault(policy, []).append(setting.label)
                continue
            services = (
                [replace(model, name=name) for name in trace.services] if per_service else [model]
            )
            jobs.append(Job(policy, setting.label, services, setting.settings))
    return jobs, same


if __name__ == "__main__":
    simulate()
