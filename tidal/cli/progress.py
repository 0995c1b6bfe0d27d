"""Progress bars for long CLI commands: shown on a terminal (stderr), silent when piped."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

# A single apply of this many documents or more shows a spinner while the server works.
PROGRESS_MIN_DOCS = 5

_stderr = Console(stderr=True)


def interactive() -> bool:
    """Whether progress should be drawn: stderr is a terminal."""
    return _stderr.is_terminal


@contextmanager
def progress(
    description: str, total: int | None = None, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """A bar with `total` steps (a spinner when None); yields `advance(steps)`. Off the
    terminal, or when not `enabled`, it draws nothing and `advance` does nothing."""
    if not (enabled and interactive()):
        yield lambda _steps: None
        return
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    with Progress(*columns, TimeElapsedColumn(), console=_stderr, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda steps: bar.advance(task, steps)
