"""The filters of ``GET executions/`` (django-filter)."""

from __future__ import annotations

import datetime
from typing import Any

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from ..models import CloseStatus, Status, TaskExecution

__all__ = ["ExecutionFilter"]


class BoundedIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time that can also be expressed in UTC (the database's time zone)."""

    def to_python(self, value: Any) -> datetime.datetime | None:
        result: datetime.datetime | None = super().to_python(value)
        if result is not None:
            try:
                # In UTC: PostgreSQL refuses offsets beyond ±15:59 that Python accepts.
                result = result.astimezone(datetime.UTC)
            except (OverflowError, ValueError):
                raise forms.ValidationError(
                    "Enter a date-time between years 1 and 9999 in UTC.", code="invalid"
                )
        return result


class BoundedIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """``IsoDateTimeFilter`` that refuses instants outside ``datetime``'s range with a 400."""

    field_class = BoundedIsoDateTimeField


class ExecutionFilter(django_filters.FilterSet):
    """Filters of the execution list; several values of ``status`` or ``close_status`` are
    combined with OR (``?status=failed&status=timed_out``), different filters with AND."""

    status = django_filters.MultipleChoiceFilter(
        choices=Status.choices, help_text="One or more statuses."
    )
    close_status = django_filters.MultipleChoiceFilter(
        choices=CloseStatus.choices, help_text="One or more close statuses."
    )
    task_id = django_filters.CharFilter(field_name="task_id", help_text="Executions of this task.")
    parent = django_filters.CharFilter(
        field_name="parent_execution_id",
        help_text="Children (and finalize) of this execution id.",
    )
    root = django_filters.CharFilter(
        field_name="root_execution_id",
        help_text="Descendants of this top-level execution id (not the root itself).",
    )
    is_finished = django_filters.BooleanFilter(field_name="is_finished")
    created_after = BoundedIsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Created at or after (ISO 8601)."
    )
    created_before = BoundedIsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Created before (ISO 8601)."
    )

    class Meta:
        model = TaskExecution
        fields = [
            "status",
            "close_status",
            "task_id",
            "parent",
            "root",
            "is_finished",
            "created_after",
            "created_before",
        ]
