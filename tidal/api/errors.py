"""Errors raised for bad user input. Each names the field it is about."""

from __future__ import annotations

from collections.abc import Iterable


class InvalidSpec(ValueError):
    """A manifest or config value is wrong. `field` is a dotted path such as
    `spec.template.metadata.annotations[autoscaling.knative.dev/window]`.

    One error may carry several problems (`problems`, each a (field, message) pair), so that a
    manifest with three mistakes is reported in one go; `field` and `message` are the first's."""

    def __init__(
        self, field: str, message: str, problems: Iterable[tuple[str, str]] | None = None
    ) -> None:
        self.problems = list(problems) if problems else [(field, message)]
        field, message = self.problems[0]
        super().__init__("\n".join(f"{f}: {m}" if f else m for f, m in self.problems))
        self.field = field
        self.message = message

    @classmethod
    def combine(cls, errors: Iterable[InvalidSpec]) -> InvalidSpec:
        """One error holding every problem of `errors` (which must not be empty)."""
        return cls("", "", [p for error in errors for p in error.problems])

    def prefixed(self, prefix: str) -> InvalidSpec:
        """The same problems with `prefix` (e.g. `document 2: `) before each field."""
        named = [(f"{prefix}{f}" if f else prefix.rstrip(": "), m) for f, m in self.problems]
        return InvalidSpec("", "", named)
