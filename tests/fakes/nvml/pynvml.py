"""A fake `pynvml` (nvidia-ml-py) for tests: no GPU, no driver, no CUDA.

Devices and their readings come from the JSON file named by FAKE_NVML_STATE, read on every call
so a test can change them while a platform runs: {"0": {"gpu": 90, "used": 1073741824}, ...}.
A device missing from the file reads 0 % and 0 bytes; an index past FAKE_NVML_COUNT (default 8)
does not exist.
"""

from __future__ import annotations

import json
import os
from types import SimpleNamespace


class NVMLError(Exception):
    pass


def _state() -> dict[str, dict[str, float]]:
    path = os.environ.get("FAKE_NVML_STATE")
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def nvmlInit() -> None:
    if os.environ.get("FAKE_NVML_BROKEN"):
        raise NVMLError("Driver Not Loaded")


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetHandleByIndex(index: int) -> str:
    if not 0 <= index < int(os.environ.get("FAKE_NVML_COUNT", "8")):
        raise NVMLError("Invalid Argument")
    return str(index)


def nvmlDeviceGetHandleByUUID(uuid: str) -> str:
    return uuid


def nvmlDeviceGetUtilizationRates(handle: str) -> SimpleNamespace:
    reading = _state().get(handle, {})
    return SimpleNamespace(gpu=int(reading.get("gpu", 0)), memory=0)


def nvmlDeviceGetMemoryInfo(handle: str) -> SimpleNamespace:
    reading = _state().get(handle, {})
    return SimpleNamespace(used=int(reading.get("used", 0)), total=80 * 2**30, free=0)
