"""The `tidal.dev/*` annotations of a revision template that steer predictive autoscaling
(class `predictive.tidal.dev`, alias `ahpa.autoscaling.knative.dev`).

They mirror AHPA's knobs (docs/predictive.md): `scaleStrategy` -> `mode`,
`prediction.quantile` -> `quantile`, `prediction.scaleUpForward` -> `scale-up-lead`,
`stabilizationWindowSeconds` -> `stabilization-window`, `instanceBounds` -> `bounds`; and
tidal's own price knob, `cold-start-cost`.

| annotation | values | default |
|---|---|---|
| `tidal.dev/mode` | observer, auto, proactive, reactive | auto (observer until `min-history`) |
| `tidal.dev/cold-start-cost` | auto, or a duration 1s..1d of replica time | auto |
| `tidal.dev/quantile` | 0.5..0.999, or a percentage 50..99.9 ("95" = 0.95) | 0.95 |
| `tidal.dev/scale-up-lead` | duration 0s..1h; overrides the measured Ready Time | measured |
| `tidal.dev/stabilization-window` | duration 0s..1h; scale-in takes the max within it | 300s |
| `tidal.dev/min-history` | duration 0s..28d ("2d", "36h") | 2d |
| `tidal.dev/bounds` | cron windows, see `parse_bounds` | none |
| `tidal.dev/timezone` | IANA zone for `bounds` | UTC |

`cold-start-cost` is what one cold start is worth, in seconds of one warm replica's time (the
pool price cancels out: holding a replica and starting one are paid in the same pool). `auto`
picks, at each fit, the highest price whose expected replica time over the service's own idle
gaps stays within the KPA's; a larger value buys fewer cold starts with more replica time.

`min-history` defaults to two days: two full daily cycles are the least from which a daily
period can be confirmed (an autocorrelation at lag 1 d needs two cycles) and a per-minute-of-day
profile has more than one sample. AHPA asks for 7 days; tidal plans from 2 days with a daily
profile and adds the weekly one once 14 days exist.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tidal.api.errors import InvalidSpec
from tidal.api.units import parse_duration

PREFIX = "tidal.dev/"
OBSERVER = "observer"
AUTO = "auto"
PROACTIVE = "proactive"
REACTIVE = "reactive"
MODES = (OBSERVER, AUTO, PROACTIVE, REACTIVE)

MODE = PREFIX + "mode"
QUANTILE = PREFIX + "quantile"
SCALE_UP_LEAD = PREFIX + "scale-up-lead"
STABILIZATION_WINDOW = PREFIX + "stabilization-window"
MIN_HISTORY = PREFIX + "min-history"
BOUNDS = PREFIX + "bounds"
TIMEZONE = PREFIX + "timezone"
COLD_START_COST = PREFIX + "cold-start-cost"
KNOWN_ANNOTATIONS = frozenset(
    (
        MODE,
        QUANTILE,
        SCALE_UP_LEAD,
        STABILIZATION_WINDOW,
        MIN_HISTORY,
        BOUNDS,
        TIMEZONE,
        COLD_START_COST,
    )
)

DAY_S = 86_400.0
HOUR_S = 3_600.0
DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")  # index = datetime.weekday()


@dataclass(frozen=True)
class CronBound:
    """One bounds window: on `days` (0 = Monday), minutes of the day in [start, end).

    `end <= start` wraps past midnight: the window opens on a listed day and closes the next
    morning. `min_replicas`/`max_replicas` None keep the revision's min/max-scale.
    """

    days: frozenset[int]
    start: int
    end: int
    min_replicas: int | None = None
    max_replicas: int | None = None


@dataclass(frozen=True)
class PredictiveAnnotations:
    """Validated `tidal.dev/*` values of one revision. Durations are seconds."""

    mode: str = AUTO
    quantile: float = 0.95
    scale_up_lead: float | None = None
    stabilization_window: float = 300.0
    min_history: float = 2 * DAY_S
    bounds: tuple[CronBound, ...] = field(default=())
    timezone: str = "UTC"
    cold_start_cost: float | None = None  # replica-seconds; None = auto


def parse_predictive_annotations(
    annotations: dict[str, str],
    field_prefix: str = "spec.template.metadata.annotations",
    also_known: frozenset[str] = frozenset(),
) -> PredictiveAnnotations:
    """Validate the `tidal.dev/*` annotations. Raises InvalidSpec naming the annotation, e.g.
    `spec.template.metadata.annotations[tidal.dev/quantile]`. Unknown `tidal.dev/*` keys are
    errors unless listed in `also_known` (keys other tidal features own)."""

    def error(key: str, message: str) -> InvalidSpec:
        return InvalidSpec(f"{field_prefix}[{key}]", message)

    for key in annotations:
        domain, _, name = key.rpartition("/")
        if domain.endswith(f".{PREFIX[:-1]}"):  # predictive.tidal.dev/quantile: not ours
            raise error(
                key, f"tidal's annotations are {PREFIX}NAME: did you mean {PREFIX + name!r}?"
            )
        if key.startswith(PREFIX) and key not in KNOWN_ANNOTATIONS | also_known:
            known = ", ".join(sorted(KNOWN_ANNOTATIONS))
            raise error(key, f"unknown annotation {key!r}; known: {known}")

    values: dict[str, object] = {}
    parsers = {
        MODE: ("mode", _mode),
        QUANTILE: ("quantile", _quantile),
        SCALE_UP_LEAD: ("scale_up_lead", lambda t: _duration(t, HOUR_S, "1h")),
        STABILIZATION_WINDOW: ("stabilization_window", lambda t: _duration(t, HOUR_S, "1h")),
        MIN_HISTORY: ("min_history", lambda t: _duration(t, 28 * DAY_S, "28d")),
        BOUNDS: ("bounds", parse_bounds),
        TIMEZONE: ("timezone", _timezone),
        COLD_START_COST: ("cold_start_cost", _cold_start_cost),
    }
    for key, (name, parse) in parsers.items():
        if key in annotations:
            try:
                values[name] = parse(annotations[key])
            except ValueError as exc:
                raise error(key, str(exc)) from None
    return PredictiveAnnotations(**values)  # type: ignore[arg-type]


def _mode(text: str) -> str:
    if text not in MODES:
        raise ValueError(f"invalid value {text!r}: must be one of {', '.join(MODES)}")
    return text


def _quantile(text: str) -> float:
    """0.5..0.999, or a percentage 50..99.9 as AHPA writes it (`quantile: 95`)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if value > 1.0:
        value /= 100.0
    if not 0.5 <= value <= 0.999:
        raise ValueError(
            f"invalid value {text!r}: must be in 0.5..0.999 or a percentage in 50..99.9"
        )
    return value


def _duration(text: str, high: float, high_text: str) -> float:
    """A duration ("300s", "5m", "1h30m", "2d") within [0, high]."""
    days = re.fullmatch(r"(\d+(?:\.\d+)?)d", text.strip())
    try:
        seconds = float(days.group(1)) * DAY_S if days else parse_duration(text)
    except ValueError:
        raise ValueError(f"invalid duration {text!r} (examples: 90s, 5m, 36h, 2d)") from None
    if not 0 <= seconds <= high:
        raise ValueError(f"expected 0s <= value <= {high_text}, got {text!r}")
    return seconds


def _cold_start_cost(text: str) -> float | None:
    """`auto`, or a duration of replica time (1s..1d)."""
    if text.strip() == "auto":
        return None
    seconds = _duration(text, DAY_S, "1d")
    if seconds < 1:
        raise ValueError(f"expected auto or 1s <= value <= 1d, got {text!r}")
    return seconds


def _timezone(text: str) -> str:
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {text!r} (an IANA name such as Europe/Rome)") from None
    return text


_WINDOW = re.compile(r"(\S+)\s+(\d{2}):(\d{2})-(\d{2}):(\d{2})((?:\s+(?:min|max)=\d+)*)")
_LIMIT = re.compile(r"(min|max)=(\d+)")


def parse_bounds(text: str) -> tuple[CronBound, ...]:
    """Parse `tidal.dev/bounds`: windows separated by `;`, each `DAYS HH:MM-HH:MM [min=N] [max=N]`.

    DAYS is `*` or a comma list of days and day ranges (`MON-FRI`, `SAT,SUN`, `MON,WED-FRI`).
    Times are wall-clock in `tidal.dev/timezone`; the end is exclusive, `24:00` is allowed, and
    an end at or before the start wraps past midnight. Example, the AHPA doc's working-hours
    floor plus a night cap:

        MON-FRI 08:00-18:00 min=2 max=10; * 00:00-06:00 max=1

    The first window that matches a minute sets its bounds (like a routing table).
    """
    windows = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        match = _WINDOW.fullmatch(part)
        if match is None:
            raise ValueError(
                f"invalid window {part!r}: expected 'DAYS HH:MM-HH:MM [min=N] [max=N]', "
                "e.g. 'MON-FRI 08:00-18:00 min=2'"
            )
        days = _days(match.group(1), part)
        h1, m1, h2, m2 = (int(match.group(i)) for i in range(2, 6))
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"invalid time in window {part!r}: use 00:00..24:00")
        limits = dict(_LIMIT.findall(match.group(6)))
        lo = int(limits["min"]) if "min" in limits else None
        hi = int(limits["max"]) if "max" in limits else None
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min={lo} is greater than max={hi} in window {part!r}")
        windows.append(CronBound(days, h1 * 60 + m1, (h2 * 60 + m2) % 1440, lo, hi))
    if not windows:
        raise ValueError(f"no window in {text!r}; example: 'MON-FRI 08:00-18:00 min=2'")
    return tuple(windows)


def _days(text: str, part: str) -> frozenset[int]:
    if text == "*":
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.upper().split(","):
        first, _, last = item.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(
                f"invalid days {text!r} in window {part!r}: use *, MON..SUN, ranges and commas"
            )
        a, b = DAYS.index(first), DAYS.index(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return frozenset(days)
