"""Parsing of Kubernetes-style quantities ("500m", "2Gi"), Go-style durations ("1m30s") and the
timestamps of CSV files (traces, history)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,  # not Go's, but history spans are given in days
}

# Epoch times past these are milliseconds, microseconds, nanoseconds (1e11 s is the year 5138;
# 1e11 ms is 1973), as log and metrics exporters write them.
_EPOCH_UNITS = ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3))

_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)([a-zA-Z]*)$")
_QUANTITY_SUFFIXES = {
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
}


def parse_duration(value: str | int | float) -> float:
    """Seconds from a Go duration string ("1h30m", "500ms", "60s", plus "d" for days) or a plain
    number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r} (examples: 30s, 1m30s, 500ms)")
    return total


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a float: "500m" -> 0.5, "2Gi" -> 2147483648."""
    if isinstance(value, bool):
        raise ValueError(f"expected a quantity, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(value.strip())
    if not match or match.group(2) not in _QUANTITY_SUFFIXES:
        raise ValueError(f"invalid quantity {value!r} (examples: 500m, 2, 512Mi, 4Gi)")
    return float(match.group(1)) * _QUANTITY_SUFFIXES[match.group(2)]


def epoch_unit(text: str) -> float:
    """How many of a file's numeric timestamps make a second, read off one of them: epoch
    milliseconds, microseconds and nanoseconds are too large to be seconds. 1 for anything
    else (seconds, or an ISO time)."""
    try:
        value = abs(float(text))
    except ValueError:
        return 1.0
    return next((unit for bound, unit in _EPOCH_UNITS if value >= bound), 1.0)


def parse_timestamp(text: str, unit: float = 1.0) -> float:
    """Epoch seconds from an ISO 8601 time (naive times are UTC) or a number of `unit`s of a
    second since the epoch (`epoch_unit`)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"bad timestamp {text!r} (a finite number)")
        return value / unit
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"bad timestamp {text!r} (ISO time or epoch seconds)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
