"""The OpenAPI schema of the API (drf-spectacular), limited to the API's own routes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView
from rest_framework.permissions import BasePermission

from .. import __version__
from .exceptions import exception_handler
from .permissions import configured_permissions
from .views import DurableAPIView

__all__ = ["DurableSchemaGenerator", "SchemaView"]


class DurableSchemaGenerator(SchemaGenerator):
    """Documents the API's views only, whatever else the project's URLconf holds."""

    def _initialise_endpoints(self) -> None:
        super()._initialise_endpoints()
        endpoints: list[Any] = list(self.endpoints or [])
        self.endpoints = [
            endpoint
            for endpoint in endpoints
            if issubclass(getattr(endpoint[-1], "cls", object), DurableAPIView)
        ]


class SchemaView(SpectacularAPIView):
    """``GET schema/``: the OpenAPI 3 schema of this API (YAML, or JSON with ``?format=json``
    or ``Accept: application/vnd.oai.openapi+json``), guarded by the API's permission classes."""

    generator_class = DurableSchemaGenerator
    custom_settings = {
        "TITLE": "django-durable API",
        "DESCRIPTION": (
            "Enqueue, inspect, cancel and retry durable task executions, wake sleeping tasks, "
            "and watch the engine."
        ),
        "VERSION": __version__,
        "ENUM_NAME_OVERRIDES": {
            "ExecutionStatusEnum": "django_durable.models.Status",
            "CloseStatusEnum": "django_durable.models.CloseStatus",
            "HealthStatusEnum": [("ok", "ok"), ("unavailable", "unavailable")],
        },
    }

    def get_permissions(self) -> list[BasePermission]:
        return configured_permissions()

    def get_exception_handler(self) -> Any:
        return exception_handler
