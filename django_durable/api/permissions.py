"""Who may call the API: ``DURABLE["API_PERMISSION_CLASSES"]`` (staff only by default), and
the bearer of a signed wake-up token on the wake-up route."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from ..conf import durable_settings
from ..tokens import read_wakeup_token

__all__ = ["TOKEN_QUERY_PARAM", "configured_permissions", "token_execution_id"]

#: The query parameter that carries a wake-up token.
TOKEN_QUERY_PARAM = "token"


def configured_permissions() -> list[BasePermission]:
    """Instances of the permission classes named in ``DURABLE["API_PERMISSION_CLASSES"]``.

    Read at every request, so that ``override_settings(DURABLE=...)`` takes effect at once.
    """
    return [permission_class() for permission_class in durable_settings.API_PERMISSION_CLASSES]


def token_execution_id(request: Request, error: exceptions.APIException) -> str:
    """The execution id of the wake-up token in the request's ``?token=``.

    Called when the configured permissions refused ``request``: without a token ``error`` (the
    refusal) is raised again; a forged or expired token is a 403.
    """
    token: Any = request.query_params.get(TOKEN_QUERY_PARAM)
    if not token:
        raise error
    execution_id = read_wakeup_token(token)
    if execution_id is None:
        raise exceptions.PermissionDenied(
            "The wake-up token is invalid or has expired: ask for a new one.",
            code="invalid_token",
        )
    return execution_id
