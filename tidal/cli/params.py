"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click


class FiniteRange(click.FloatRange):
    """A FloatRange that also refuses nan and inf (nan passes any bound, comparing false)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class OutputDirectory(click.Path):
    """A directory to write into, created if missing: one that cannot be is refused before
    the command runs, not after a replay of minutes."""

    def __init__(self) -> None:
        super().__init__(file_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.fail(f"cannot create directory {str(path)!r}: {exc.strerror or exc}", param, ctx)
        if not os.access(path, os.W_OK):
            self.fail(f"directory {str(path)!r} is not writable", param, ctx)
        return path


class OutputFile(click.Path):
    """A file to write, in a directory that exists and is writable (checked up front)."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        parent = Path(path).parent
        if not parent.is_dir():
            self.fail(f"directory {str(parent)!r} does not exist", param, ctx)
        if not os.access(parent, os.W_OK):
            self.fail(f"directory {str(parent)!r} is not writable", param, ctx)
        return path


class HttpUrl(click.ParamType):
    """An http:// or https:// URL with a host (the admin API, a controller)."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        parts = urlsplit(str(value))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(f"{value!r} is not an http(s) URL with a host (e.g. http://127.0.0.1:8081)")
        return str(value)
