"""The API's URLs: ``path("durable/", include("django_durable.api.urls"))``.

URL names are in the ``django_durable`` namespace (``django_durable:execution-list``, ...).
"""

from __future__ import annotations

from django.urls import path, register_converter

from . import views
from .schema import SchemaView


class UniqueIdConverter:
    """A sleeping task's unique id: any non-empty text, slashes and line breaks included."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(UniqueIdConverter, "durable_unique_id")

app_name = "django_durable"

urlpatterns = [
    path("executions/", views.ExecutionListView.as_view(), name="execution-list"),
    path(
        "executions/<str:execution_id>/",
        views.ExecutionDetailView.as_view(),
        name="execution-detail",
    ),
    path(
        "executions/<str:execution_id>/cancel/",
        views.ExecutionCancelView.as_view(),
        name="execution-cancel",
    ),
    path(
        "executions/<str:execution_id>/retry/",
        views.ExecutionRetryView.as_view(),
        name="execution-retry",
    ),
    path(
        "sleeping/<str:task_id>/<durable_unique_id:unique_id>/wakeup/",
        views.WakeupView.as_view(),
        name="sleeping-wakeup",
    ),
    path("tasks/", views.TaskListView.as_view(), name="task-list"),
    path("stats/", views.StatsView.as_view(), name="stats"),
    path("health/", views.HealthView.as_view(), name="health"),
    path("metrics/", views.MetricsView.as_view(), name="metrics"),
    path("schema/", SchemaView.as_view(), name="schema"),
]
