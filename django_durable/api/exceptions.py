"""The API's errors and its exception handler: every error is JSON ``{"detail", "code"}``.

Validation errors add ``"errors"`` (DRF's field -> messages mapping). Errors of the engine map
to client errors: an unknown execution or task is a 404, a ``DurableExecutionError`` (invalid
input, options or values) a 400, a value over the size limits a 413; a database that cannot be
reached is a 503.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..errors import DurableExecutionError, DurableExecutionNotFoundError

__all__ = [
    "Conflict",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "exception_handler",
    "is_size_error",
]


class Conflict(exceptions.APIException):
    """The execution is not in a state that allows the operation (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The execution is not in a state that allows this operation."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    """The request body is larger than the API accepts (413)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


class ServiceUnavailable(exceptions.APIException):
    """The database cannot be reached (503)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable; try again later."
    default_code = "unavailable"


def is_size_error(error: DurableExecutionError) -> bool:
    """Whether ``error`` is the serializer's "value larger than MAX_INPUT/OUTPUT_SIZE" error."""
    return "exceeds maximum allowed size" in error.message


def _flatten(detail: Any, prefix: str = "") -> list[str]:
    if isinstance(detail, Mapping):
        lines = []
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "non_field_errors":
                name = prefix
            lines.extend(_flatten(value, name))
        return lines
    if isinstance(detail, list):
        return [line for item in detail for line in _flatten(item, prefix)]
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def _convert(exc: Exception) -> Exception:
    if isinstance(exc, DurableExecutionNotFoundError):
        return exceptions.NotFound(exc.message, code="not_found")
    if isinstance(exc, DurableExecutionError) and not exc.is_internal:
        if is_size_error(exc):
            return PayloadTooLarge(exc.message)
        return exceptions.ValidationError({"non_field_errors": [exc.message]}, code="invalid")
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(str(exc) or PayloadTooLarge.default_detail)
    if isinstance(exc, OperationalError | InterfaceError):
        return ServiceUnavailable()
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with the engine's errors mapped and one JSON shape for every error."""
    response = drf_exception_handler(_convert(exc), context)
    if response is None:
        return None
    data = response.data
    if isinstance(data, Mapping) and set(data) == {"detail"}:
        detail = data["detail"]
        code = getattr(detail, "code", None) or "error"
        response.data = {"detail": str(detail), "code": str(code)}
    else:
        errors = data if isinstance(data, Mapping) else {"non_field_errors": data}
        lines = _flatten(errors)
        if set(errors) == {"non_field_errors"}:
            detail = " ".join(lines)
        else:
            detail = "Invalid request: " + "; ".join(lines)
        code = "invalid"
        response.data = {"detail": detail, "code": code, "errors": _plain(errors)}
    return response


def _plain(detail: Any) -> Any:
    """``ErrorDetail`` strings and ``ReturnDict``\\ s as plain JSON values."""
    if isinstance(detail, Mapping):
        return {str(key): _plain(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_plain(item) for item in detail]
    return str(detail)
