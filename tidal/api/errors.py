"""Errors raised for bad user input. Each names the field it is about."""

from __future__ import annotations


class InvalidSpec(ValueError):
    """A manifest or config value is wrong. `field` is a dotted path such as
    `spec.template.metadata.annotations[autoscaling.knative.dev/window]`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
