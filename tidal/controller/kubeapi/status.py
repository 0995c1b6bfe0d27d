"""Errors as Kubernetes `Status` objects, which kubectl prints (with every cause's field)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tidal.api.errors import InvalidSpec

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
    504: "Timeout",
}
# What the Kubernetes API server answers for a path it does not serve (a resource type or
# subresource it lacks, e.g. `kubectl scale ksvc`: Knative Services have no scale subresource).
NO_SUCH_PATH = "the server could not find the requested resource"


def reason_for(code: int) -> str:
    """Kubernetes' StatusReason for an HTTP status; kubectl prints it in brackets."""
    return REASONS.get(code, "InternalError" if code >= 500 else "BadRequest")


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or reason_for(code)
        self.details = details

    def status(self) -> dict[str, Any]:
        """The failure as a Status's fields (without its kind, as the exec error channel
        carries it)."""
        body: dict[str, Any] = {
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    def response(self) -> web.Response:
        body = {"kind": "Status", "apiVersion": "v1", **self.status()}
        return web.json_response(body, status=self.code)


def not_found(qualified: str, name: str) -> ApiError:
    return ApiError(
        404, f'{qualified} "{name}" not found', details={"name": name, "kind": qualified}
    )


def _cause(field: str, message: str) -> dict[str, str]:
    return {"reason": "FieldValueInvalid", "message": message, "field": field}


def causes_of(exc: InvalidSpec) -> list[dict[str, str]]:
    """One cause per problem: from a list of errors the exception carries (items with `field`
    and `message`), else from a message of several `path: message` lines, else the error's own
    field and message."""
    for value in vars(exc).values():
        if (
            isinstance(value, list | tuple)
            and value
            and all(hasattr(v, "field") and hasattr(v, "message") for v in value)
        ):
            return [_cause(str(v.field), str(v.message)) for v in value]
    lines = [line.strip(" -*") for line in str(exc).splitlines() if line.strip(" -*")]
    if len(lines) <= 1:
        return [_cause(exc.field, exc.message)]
    causes = []
    for line in lines:
        field, sep, message = line.partition(": ")
        causes.append(
            _cause(field, message) if sep else {"reason": "FieldValueInvalid", "message": line}
        )
    return causes


def qualified(resource: str, group: str) -> str:
    """`services.serving.knative.dev`, or `secrets` for the core group, as the API server
    names a resource in its messages."""
    return f"{resource}.{group}" if group else resource


def invalid(kind: str, group: str, name: str, exc: InvalidSpec) -> ApiError:
    causes = causes_of(exc)
    summary = "; ".join(
        f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes
    )
    return ApiError(
        422,
        f'{qualified(kind, group)} "{name}" is invalid: {summary}',
        details={"name": name, "group": group, "kind": kind, "causes": causes},
    )


def conflict(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        details={"name": name, "group": group, "kind": plural},
    )
