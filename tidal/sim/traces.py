"""Request traces for the simulator: loaders, seeded synthetic generators, Poisson spreading.

Formats (docs/simulator.md):
- Azure Functions 2019 (`HashFunction,HashOwner,HashApp,minute_1..`): invocations per function per
  minute, spread within each minute; one service per function (`per_service`), or all summed.
- Azure LLM 2023 (`TIMESTAMP,ContextTokens,GeneratedTokens`): one row per request.
- Alibaba GenTD26 `qps.csv` (`timestamp_anon,value,container_ip,request_type`): QPS samples per
  container on a 57 s grid; the generative rows are summed per timestamp into a system rate.
- Azure Functions 2019 as published (`HashOwner,HashApp,HashFunction,Trigger,1..1440`): the
  same counts, minute columns named by number.
- Request CSVs, one row per request, recognised by their columns (any order, any case): a
  `timestamp` (ISO time or epoch seconds; epoch milliseconds, microseconds and nanoseconds are
  recognised by their size), optional `service` (or `model`, `func`, `function`: which service
  it is for), `duration` (seconds) and token counts (`ContextTokens`/`GeneratedTokens` as in
  Azure LLM 2023 and 2024, `Request tokens`/`Response tokens` as in BurstGPT). Azure Functions
  2021 (`app,func,end_timestamp,duration`) gives each invocation's end: it arrived `duration`
  before. Rows may come in any order; they are sorted by arrival.

A trace may carry several services: `services` names them (valid DNS labels) and `service_of`
gives each request's index into it.

Counts per interval become arrival times by a seeded Poisson process: given n events in an
interval, a Poisson process places them as n independent uniform times in it.
"""

from __future__ import annotations

import csv
import heapq
import math
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import numpy as np

from tidal.api.textfile import not_text
from tidal.api.units import epoch_unit, parse_timestamp

DAY_S = 86_400.0
# Traces beyond these are refused with a clear error rather than exhausting memory: the
# replay keeps per-second series over the span and a few numbers per request.
MAX_SPAN_DAYS = 366
MAX_REQUESTS = 20_000_000
AZURE_HINT = " (--services N keeps the N busiest functions, --days a part of the day)"
ALIBABA_STEP_S = 57.0  # the qps.csv sampling grid
SYNTHETIC_EPOCH = datetime(2024, 1, 1, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
# Request CSV columns (lower case): the names each goes by in the traces people publish.
TIME_COLUMNS = ("timestamp",)
END_COLUMNS = ("end_timestamp",)  # Azure Functions 2021: when each invocation ended
SERVICE_COLUMNS = ("service", "model", "func", "function")
TOKEN_COLUMNS = (("contexttokens", "generatedtokens"), ("request tokens", "response tokens"))


class TraceError(ValueError):
    """A bad trace file; the message names the file and line."""

    def __init__(self, path: str | Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line = str(path), line


@dataclass(frozen=True)
class Trace:
    """Arrivals in seconds from the trace start (sorted), with what the file gives per request.

    `start_epoch` is the wall time of t = 0 (for calendar-aware policies); `duration` is the
    span the trace covers (a per-minute trace covers whole minutes even if the last is empty)."""

    name: str
    arrivals: np.ndarray
    duration: float
    start_epoch: float = 0.0
    service_times: np.ndarray | None = None
    context_tokens: np.ndarray | None = None
    generated_tokens: np.ndarray | None = None
    services: tuple[str, ...] = ()
    service_of: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.arrivals)

    def _select(self, keep: np.ndarray, **changes: object) -> Trace:
        def cut(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[keep]

        return replace(
            self,
            arrivals=self.arrivals[keep],
            service_times=cut(self.service_times),
            context_tokens=cut(self.context_tokens),
            generated_tokens=cut(self.generated_tokens),
            service_of=cut(self.service_of),
            **changes,
        )

    def busiest(self, count: int) -> Trace:
        """Only the `count` services with the most requests (ties: first named), renumbered
        busiest first."""
        if self.service_of is None or count >= len(self.services):
            return self
        totals = np.bincount(self.service_of, minlength=len(self.services))
        order = np.argsort(-totals, kind="stable")[:count]
        index = np.full(len(self.services), -1)
        index[order] = np.arange(len(order))
        kept = self._select(index[self.service_of] >= 0)
        return replace(
            kept,
            services=tuple(self.services[k] for k in order),
            service_of=index[kept.service_of],
        )

    def head(self, seconds: float) -> Trace:
        """The first `seconds` of the trace."""
        keep = int(np.searchsorted(self.arrivals, seconds, side="left"))
        return self._select(slice(0, keep), duration=min(self.duration, seconds))  # type: ignore[arg-type]


def spread_counts(
    starts: np.ndarray, counts: np.ndarray, width: float, rng: np.random.Generator
) -> np.ndarray:
    """Sorted arrival times: `counts[k]` uniform times in [starts[k], starts[k] + width)."""
    counts = np.asarray(counts, dtype=np.int64)
    base = np.repeat(np.asarray(starts, dtype=float), counts)
    return np.sort(base + rng.uniform(0.0, width, size=base.size))


def dns_label(text: str, taken: set[str] | None = None, limit: int = 40) -> str:
    """A valid service name (DNS-1035 label) from a trace's service id: lower case, other
    characters to '-', a letter first, at most `limit` long; a number is added when the name
    is in `taken` (and the result is added to it)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()  # é -> e
    name = re.sub(r"[^a-z0-9-]+", "-", ascii_text.strip().lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = "s-" + name
    name = name[:limit].rstrip("-")
    if taken is not None:
        base, n = name, 2
        while name in taken:
            suffix = f"-{n}"
            name = base[: limit - len(suffix)].rstrip("-") + suffix
            n += 1
        taken.add(name)
    return name


def load_trace(
    path: str | Path,
    seed: int = 0,
    functions: int | None = None,
    busiest: int | None = None,
    seconds: float | None = None,
) -> Trace:
    """Load a trace file, recognising its format from the header. `functions` limits an Azure
    Functions file to its first N functions; `busiest` keeps the N services with the most
    requests (`Trace.busiest`) and `seconds` the first seconds (`Trace.head`), chosen while an
    Azure Functions file is read."""
    try:
        return _load_trace(Path(path), seed, functions, busiest, seconds)
    except UnicodeDecodeError as exc:
        raise not_text(path, exc) from None


def _load_trace(
    path: Path,
    seed: int,
    functions: int | None,
    busiest: int | None,
    seconds: float | None,
) -> Trace:
    with _open(path) as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise TraceError(path, 1, "empty file: expected a header row")
    names = _names(header)
    if "hashfunction" in names and _first_minute(names) is not None:
        trace = load_azure_functions(path, seed, functions, busiest, seconds)
    elif names[0] == "timestamp_anon" and "request_type" in names:
        trace = load_alibaba_qps(path, seed)
    elif names[0] == "timestamp_anon" or _request_columns(names) is not None:
        trace = load_requests(path)
    else:
        raise _unknown_format(path, header)
    if seconds is not None:
        trace = trace.head(seconds)
    return trace if busiest is None or not trace.services else trace.busiest(busiest)


def _unknown_format(path: Path, header: list[str]) -> TraceError:
    return TraceError(
        path,
        1,
        f"unknown trace format (columns {', '.join(header)}); expected a `timestamp` column "
        "(one row per request), `end_timestamp` and `duration` (Azure Functions 2021), "
        "`HashFunction` with minute columns (Azure Functions 2019) or `timestamp_anon` "
        "(Alibaba qps.csv)",
    )


def _open(path: Path) -> TextIO:
    """A CSV file for reading; a UTF-8 byte-order mark (spreadsheets write one) is dropped."""
    return path.open(newline="", encoding="utf-8-sig")


def _names(header: list[str]) -> list[str]:
    return [name.strip().lower() for name in header]


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) for each non-empty data row."""
    with _open(path) as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [(reader.line_num, row) for row in reader if row]
    return header, rows


def _timestamp(text: str, path: Path, line: int, unit: float = 1.0) -> float:
    try:
        return parse_timestamp(text, unit)
    except ValueError as error:
        raise TraceError(path, line, str(error)) from None


def _number(text: str, what: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(path, line, f"bad {what} {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise TraceError(path, line, f"bad {what} {text!r} (a number >= 0)")
    return value


def _check_size(path: Path, line: int, span_s: float, requests: float, hint: str = "") -> None:
    """Refuse a trace the replay could not hold (MAX_SPAN_DAYS, MAX_REQUESTS)."""
    if span_s > MAX_SPAN_DAYS * DAY_S:
        days = f"{span_s / DAY_S:,.0f}"
        raise TraceError(
            path,
            line,
            f"the trace spans {days} days; the simulator replays at most {MAX_SPAN_DAYS}",
        )
    if requests > MAX_REQUESTS:
        raise TraceError(
            path,
            line,
            f"the trace holds {requests:,.0f} requests; "
            f"the simulator replays at most {MAX_REQUESTS:,}{hint}",
        )


@dataclass(frozen=True)
class _Columns:
    """Where a request CSV keeps each field (None: it has none)."""

    time: int | None
    end: int | None
    service: int | None
    duration: int | None
    context: int | None
    generated: int | None


def _request_columns(names: list[str]) -> _Columns | None:
    """The columns of a request CSV (`TIME_COLUMNS` etc.), or None when the header is not one:
    it needs a timestamp, or an end time and a duration."""

    def find(options: tuple[str, ...]) -> int | None:
        return next((names.index(o) for o in options if o in names), None)

    tokens = next((pair for pair in TOKEN_COLUMNS if set(pair) <= set(names)), None)
    columns = _Columns(
        time=find(TIME_COLUMNS),
        end=find(END_COLUMNS),
        service=find(SERVICE_COLUMNS),
        duration=find(("duration",)),
        context=None if tokens is None else names.index(tokens[0]),
        generated=None if tokens is None else names.index(tokens[1]),
    )
    if columns.time is None and (columns.end is None or columns.duration is None):
        return None
    return columns


def load_requests(path: str | Path) -> Trace:
    """One row per request (`_request_columns`): generic, Azure LLM 2023/2024, BurstGPT, Azure
    Functions 2021. Rows are sorted by arrival (stably: rows at the same time keep their order)."""
    path = Path(path)
    header, rows = _rows(path)
    names = _names(header)
    if names[0] == "timestamp_anon":  # an Alibaba file of another kind than qps.csv
        names[0] = "timestamp"
    columns = _request_columns(names)
    if columns is None:
        raise TraceError(path, 1, "no `timestamp` column")
    time_col, end_col, service_col = columns.time, columns.end, columns.service
    duration_col, context_col, generated_col = columns.duration, columns.context, columns.generated
    # Azure Functions 2021 names functions by hash, as the 2019 files do.
    service_prefix = "fn-" if service_col is not None and names[service_col] == "func" else ""
    stamp_col = time_col if time_col is not None else end_col
    assert stamp_col is not None
    unit = epoch_unit(rows[0][1][stamp_col]) if rows and len(rows[0][1]) > stamp_col else 1.0
    service_ids: dict[str, int] = {}
    owners: list[int] = []
    times, durations, context, generated, lines = [], [], [], [], []
    for line, row in rows:
        if len(row) != len(header):
            raise TraceError(path, line, f"expected {len(header)} fields, got {len(row)}")
        stamp = _timestamp(row[stamp_col], path, line, unit)
        lines.append(line)
        if service_col is not None:
            key = row[service_col].strip()
            if not key:
                raise TraceError(path, line, f"empty {header[service_col].strip()}")
            owners.append(service_ids.setdefault(key, len(service_ids)))
        if duration_col is not None:
            durations.append(_number(row[duration_col], "duration", path, line))
        if time_col is None:
            stamp -= durations[-1]  # it arrived `duration` before it ended
        times.append(stamp)
        if context_col is not None and generated_col is not None:
            context.append(_number(row[context_col], header[context_col].strip(), path, line))
            generated.append(_number(row[generated_col], header[generated_col].strip(), path, line))
    if not times:
        raise TraceError(path, 2, "no requests")
    order = np.argsort(np.asarray(times), kind="stable")
    stamps = np.asarray(times)[order]
    arrivals = stamps - stamps[0]
    _check_size(path, lines[-1], float(arrivals[-1]), len(arrivals))

    def sort(values: list[float]) -> np.ndarray | None:
        return np.asarray(values)[order] if values else None

    ids = [service_prefix + key[:12] if service_prefix else key for key in service_ids]
    return Trace(
        name=path.stem,
        arrivals=arrivals,
        duration=float(arrivals[-1]) + 1.0,
        start_epoch=float(stamps[0]),
        service_times=sort(durations),
        context_tokens=sort(context),
        generated_tokens=sort(generated),
        **_services(ids, np.asarray(owners, dtype=np.int64)[order] if owners else []),
    )


def _services(ids: list[str], owners: list[int] | np.ndarray) -> dict[str, object]:
    """Trace fields for per-request service ids (nothing when there are none)."""
    if not ids:
        return {}
    taken: set[str] = set()
    names = tuple(dns_label(i, taken) for i in ids)
    return {"services": names, "service_of": np.asarray(owners, dtype=np.int64)}


def load_azure_functions(
    path: str | Path,
    seed: int = 0,
    functions: int | None = None,
    busiest: int | None = None,
    seconds: float | None = None,
) -> Trace:
    """Azure Functions 2019 per-minute invocations, one service per function (named after the
    first 12 characters of its hash). The minute columns are `minute_1..` (the invitro sample)
    or `1..1440` (the published files, after `Trigger`). Of the first `functions` rows, only
    the first `seconds` (whole minutes) and the `busiest` functions in them (most invocations
    first, ties in file order, as `Trace.busiest`) are kept, chosen as the file is read: a
    published day holds tens of thousands of functions and far more invocations than a
    replay can hold."""
    path = Path(path)
    with _open(path) as handle:
        reader = csv.reader(handle)
        header = next(reader)
        names = _names(header)
        first_minute = _first_minute(names)
        assert first_minute is not None
        function_col = names.index("hashfunction")
        minutes = len(header) - first_minute
        if seconds is not None:
            minutes = min(minutes, max(1, math.ceil(seconds / 60.0)))
        end = first_minute + minutes
        # (invocations, -row, counts, id); a min-heap of the busiest when choosing them.
        kept: list[tuple[int, int, np.ndarray, str]] = []
        total, line, n = 0, 1, -1
        for row in reader:
            if not row:
                continue
            n += 1
            if functions is not None and n >= functions:
                break
            line = reader.line_num
            if len(row) != len(header):
                raise TraceError(path, line, f"expected {len(header)} fields, got {len(row)}")
            try:
                counts = np.array(row[first_minute:end], dtype=np.int64)
            except ValueError:
                raise TraceError(path, line, "invocation counts must be whole numbers") from None
            if (counts < 0).any():
                raise TraceError(path, line, "negative invocation count")
            item = (int(counts.sum()), -n, counts, "fn-" + row[function_col][:12])
            if busiest is None:
                kept.append(item)
                total += item[0]
                _check_size(path, line, minutes * 60.0, total, AZURE_HINT)
            elif len(kept) < busiest:
                heapq.heappush(kept, item)
            elif item[:2] > kept[0][:2]:
                heapq.heapreplace(kept, item)
    if not kept:
        raise TraceError(path, 2, "no functions")
    if busiest is not None:
        kept.sort(key=lambda item: (-item[0], -item[1]))
        _check_size(path, line, minutes * 60.0, sum(item[0] for item in kept), AZURE_HINT)
    counts = np.concatenate([item[2] for item in kept])  # function-major, then minute
    starts = np.tile(np.arange(minutes) * 60.0, len(kept))
    owners = np.repeat(np.arange(len(kept)), minutes)
    rng = np.random.default_rng(seed)
    times = np.repeat(starts, counts) + rng.uniform(0.0, 60.0, size=int(counts.sum()))
    who = np.repeat(owners, counts)
    order = np.lexsort((who, times))
    ids = [item[3] for item in kept]
    return Trace(path.stem, times[order], minutes * 60.0, **_services(ids, who[order]))


def _first_minute(names: list[str]) -> int | None:
    """The column of an Azure Functions file's first minute, if the header has one."""
    for first in ("minute_1", "1"):
        if first in names:
            return names.index(first)
    return None


def load_alibaba_qps(path: str | Path, seed: int = 0, kind: str = "Generative Requests") -> Trace:
    """Alibaba GenTD26 qps.csv: the `kind` rows summed per timestamp give the system rate over
    the next 57 s; arrivals are a seeded Poisson process at that rate."""
    path = Path(path)
    _, rows = _rows(path)
    rate: dict[float, float] = {}
    for line, row in rows:
        if len(row) != 4:
            raise TraceError(path, line, f"expected 4 fields, got {len(row)}")
        stamp = _timestamp(row[0], path, line)
        if row[3] == kind:
            rate[stamp] = rate.get(stamp, 0.0) + _number(row[1], "QPS value", path, line)
    if not rate:
        raise TraceError(path, 2, f"no {kind!r} rows")
    stamps = np.array(sorted(rate))
    rates = np.array([rate[s] for s in stamps])
    _check_size(
        path, rows[-1][0], float(stamps[-1] - stamps[0]), float(rates.sum()) * ALIBABA_STEP_S
    )
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rates * ALIBABA_STEP_S)
    starts = stamps - stamps[0]
    arrivals = spread_counts(starts, counts, ALIBABA_STEP_S, rng)
    return Trace(path.stem, arrivals, float(starts[-1]) + ALIBABA_STEP_S, float(stamps[0]))


def synthetic_rate(
    days: float,
    mean_rps: float = 5.0,
    seed: int = 0,
    trough: float = 0.1,
    weekend: float = 0.5,
    bursts_per_day: float = 2.0,
    burst_factor: float = 4.0,
    noise: float = 0.15,
) -> np.ndarray:
    """Requests/s per minute: a daily cycle peaking at 14:00 (`trough` x peak at night), weekends
    at `weekend` x weekdays, `bursts_per_day` bursts of 5-30 min at `burst_factor` x, lognormal
    noise of sigma `noise`; scaled so that the mean is `mean_rps`. Minute 0 is a Monday 00:00."""
    rng = np.random.default_rng(seed)
    minutes = round(days * 1440)
    t = np.arange(minutes) / 1440.0  # days
    daily = trough + (1 - trough) * (0.5 - 0.5 * np.cos(2 * np.pi * (t - 14 / 24 + 0.5)))
    weekday = np.where((np.floor(t) % 7) >= 5, weekend, 1.0)
    rate = daily * weekday * rng.lognormal(-(noise**2) / 2, noise, size=minutes)
    for _ in range(rng.poisson(bursts_per_day * days)):
        begin = int(rng.integers(0, max(minutes, 1)))
        rate[begin : begin + int(rng.integers(5, 31))] *= burst_factor
    return rate * (mean_rps / max(rate.mean(), 1e-12))


def synthetic_trace(
    days: float = 1.0, mean_rps: float = 5.0, seed: int = 0, services: int = 1, **shape: float
) -> Trace:
    """A seeded diurnal trace (see `synthetic_rate`): Poisson counts per minute, spread. With
    `services` > 1, that many services of Zipf-distributed sizes (`service_sizes`), each with
    its own noise and bursts, together at `mean_rps`."""
    if services <= 1:
        rate = synthetic_rate(days, mean_rps, seed, **shape)
        rng = np.random.default_rng(seed + 1)
        counts = rng.poisson(rate * 60.0)
        arrivals = spread_counts(np.arange(len(rate)) * 60.0, counts, 60.0, rng)
        return Trace(f"synthetic-{days:g}d", arrivals, len(rate) * 60.0, SYNTHETIC_EPOCH)
    parts = [
        synthetic_trace(days, mean_rps * share, seed + 101 * k, **shape).arrivals
        for k, share in enumerate(service_sizes(services))
    ]
    return _merge(f"synthetic-{days:g}d-{services}s", parts, round(days * 1440) * 60.0)


def service_sizes(services: int, exponent: float = 1.2) -> np.ndarray:
    """Shares of traffic of `services` services, largest first (Zipf: k^-exponent)."""
    weights = np.arange(1, services + 1, dtype=float) ** -exponent
    return weights / weights.sum()


def _merge(name: str, parts: list[np.ndarray], duration: float) -> Trace:
    """One trace from per-service arrivals, services named `svc-1`, `svc-2`, ..."""
    times = np.concatenate(parts)
    who = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    order = np.lexsort((who, times))
    names = tuple(f"svc-{k + 1}" for k in range(len(parts)))
    return Trace(
        name, times[order], duration, SYNTHETIC_EPOCH, services=names, service_of=who[order]
    )


def sparse_trace(
    days: float = 28.0,
    mean_rps: float = 0.0125,
    seed: int = 0,
    services: int = 1,
    burst_size: float = 8.0,
    burst_gap_s: float = 6.0,
    night: float = 0.05,
    weekend: float = 0.3,
) -> Trace:
    """A seeded sparse, bursty trace shaped like a GPU inference service: clusters of requests
    (geometric sizes of mean `burst_size`, exponential gaps of mean `burst_gap_s` inside a
    cluster) that start as a Poisson process whose rate follows a working day (9:00-18:00 at
    full rate, `night` x outside, a ramp between) and a week (`weekend` x on Saturday and
    Sunday), so idle gaps run from minutes at midday to hours at night. Several services get
    Zipf-distributed sizes. The default is about 30,000 requests over 28 days."""
    rng = np.random.default_rng(seed)
    minutes = round(days * 1440)
    t = np.arange(minutes) / 1440.0
    hour = (t % 1.0) * 24.0
    day_shape = np.clip(np.minimum(hour - 7.0, 20.0 - hour) / 2.0, 0.0, 1.0)
    weekday = np.where((np.floor(t) % 7) >= 5, weekend, 1.0)
    shape = (night + (1.0 - night) * day_shape) * weekday
    parts = []
    for share in service_sizes(services):
        cluster_rate = mean_rps * share / burst_size * shape / shape.mean()  # clusters/s
        starts = spread_counts(
            np.arange(minutes) * 60.0, rng.poisson(cluster_rate * 60.0), 60.0, rng
        )
        sizes = rng.geometric(1.0 / burst_size, size=len(starts))
        elapsed = np.cumsum(rng.exponential(burst_gap_s, size=int(sizes.sum())))
        first = np.repeat(np.cumsum(sizes) - sizes, sizes)  # each request's cluster head
        times = np.repeat(starts, sizes) + elapsed - elapsed[first]
        parts.append(np.sort(times[times < minutes * 60.0]))
    name = f"sparse-{days:g}d" + (f"-{services}s" if services > 1 else "")
    if services == 1:
        return Trace(name, parts[0], minutes * 60.0, SYNTHETIC_EPOCH)
    return replace(_merge(name, parts, minutes * 60.0), name=name)
