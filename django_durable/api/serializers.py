"""Request and response bodies of the API, and task values rendered as plain JSON.

Responses are built from rows as plain dicts (:func:`execution_data`, :func:`task_data`) and
formatted by the read-only serializers, which also document them in the OpenAPI schema.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..errors import DurableExecutionError, StoredError
from ..executions import ExecutionSnapshot
from ..models import CloseStatus, Status, TaskExecution
from ..schedules import Schedule
from ..tasks import RetryOptions, Task, TaskKind

__all__ = [
    "EnqueueSerializer",
    "ErrorSerializer",
    "ExecutionDetailSerializer",
    "ExecutionSerializer",
    "HealthSerializer",
    "StatsSerializer",
    "TaskSerializer",
    "WakeupSerializer",
    "execution_data",
    "task_data",
    "to_jsonable",
]

#: Bounds of the 32-bit ``priority`` column.
MIN_PRIORITY, MAX_PRIORITY = -(2**31), 2**31 - 1
#: Longest delay or timeout the API accepts (100 years): later instants overflow datetimes.
MAX_SECONDS = 100 * 365 * 86400.0


# -- task values as JSON --------------------------------------------------------------------


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _key(key: Any) -> str:
    if isinstance(key, str):
        return str.__str__(key)
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, int | float | decimal.Decimal | uuid.UUID):
        return str(_float(key) if isinstance(key, float) else key)
    value = _jsonable(key)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return _float(float.__float__(value))
    if isinstance(value, Mapping):
        return {_key(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, set | frozenset):
        items = [_jsonable(item) for item in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def to_jsonable(value: Any) -> Any:
    """``value`` (an input or output as tasks see it) as a plain JSON value.

    JSON values stay as they are; ``datetime``, ``date`` and ``time`` become ISO 8601 strings,
    ``timedelta`` seconds, ``Decimal`` and ``UUID`` strings, ``bytes`` base64 strings, tuples
    lists, sets sorted lists, non-finite floats ``"NaN"``/``"Infinity"``/``"-Infinity"``, other
    dict keys strings, and anything else ``str(value)``. Never raises.
    """
    try:
        return _jsonable(value)
    except RecursionError:
        return "<value nested too deeply to render>"


def _stored_value(text: str | None) -> Any:
    """A stored value that the serializer cannot read back, as its raw text."""
    return text


# -- executions -----------------------------------------------------------------------------


def _ref(task_id: str | None, execution_id: str | None) -> dict[str, str] | None:
    if not task_id or not execution_id:
        return None
    return {"task_id": task_id, "execution_id": execution_id}


def _retry_options(value: Any) -> dict[str, Any]:
    try:
        return RetryOptions.from_dict(value if isinstance(value, Mapping) else None).to_dict()
    except (TypeError, ValueError):
        return RetryOptions().to_dict()


def execution_data(
    row: TaskExecution, *, detail: bool = False, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The API's view of ``row``: the fields of :class:`ExecutionSnapshot` and more.

    With ``detail``, also the input and output (deserialized, then rendered with
    :func:`to_jsonable`; a stored value that cannot be deserialized is given as its raw text),
    the children and the finalize. ``extra`` is merged in (the wake-up link).
    """
    data: dict[str, Any] = {
        "execution_id": row.execution_id,
        "task_id": row.task_id,
        "status": row.status,
        "close_status": row.close_status,
        "is_finished": row.is_finished,
        "error": StoredError.from_dict(row.error) if isinstance(row.error, Mapping) else None,
        "retry_attempts": row.retry_attempts,
        "retry_options": _retry_options(row.retry_options),
        "timeout": row.timeout,
        "sleep_before_run": row.sleep_before_run,
        "root": _ref(row.root_task_id, row.root_execution_id),
        "parent": None,
        "is_sleeping_task": row.is_sleeping_task,
        "sleeping_task_unique_id": row.sleeping_task_unique_id,
        "are_children_sequential": row.are_children_sequential,
        "active_children_count": row.active_children_count,
        "executor_id": row.executor_id,
        "queue": row.queue,
        "priority": row.priority,
        "idempotency_key": row.idempotency_key,
        "retried_from_execution_id": row.retried_from_execution_id,
        "start_at": row.start_at,
        "started_at": row.started_at,
        "expires_at": row.expires_at,
        "waiting_for_children_started_at": row.waiting_for_children_started_at,
        "waiting_for_finalize_started_at": row.waiting_for_finalize_started_at,
        "finished_at": row.finished_at,
        "closed_at": row.closed_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if row.parent_task_id and row.parent_execution_id:
        data["parent"] = {
            "task_id": row.parent_task_id,
            "execution_id": row.parent_execution_id,
            "index_in_parent_children": row.index_in_parent_children,
            "is_only_child_of_parent": row.is_only_child_of_parent,
            "is_finalize_of_parent": row.is_finalize_of_parent,
        }
    if detail:
        try:
            snapshot = ExecutionSnapshot.from_row(row)
            data["input"] = to_jsonable(snapshot.input)
            data["output"] = to_jsonable(snapshot.output)
        except DurableExecutionError:
            data["input"] = _stored_value(row.input)
            data["output"] = _stored_value(row.output if row.status == Status.COMPLETED else None)
        children = row.children if isinstance(row.children, list) else []
        data["children"] = [
            ref
            for ref in (
                _ref(item.get("task_id"), item.get("execution_id"))
                for item in children
                if isinstance(item, Mapping)
            )
            if ref is not None
        ]
        finalize = row.finalize if isinstance(row.finalize, Mapping) else {}
        data["finalize"] = _ref(finalize.get("task_id"), finalize.get("execution_id"))
        data["wakeup"] = None
    if extra:
        data.update(extra)
    return data


class ExecutionRefSerializer(serializers.Serializer):
    """Another execution, by task id and execution id."""

    task_id = serializers.CharField()
    execution_id = serializers.CharField()


class ParentRefSerializer(ExecutionRefSerializer):
    """The parent of a child execution and the child's place among its children."""

    index_in_parent_children = serializers.IntegerField()
    is_only_child_of_parent = serializers.BooleanField()
    is_finalize_of_parent = serializers.BooleanField()


class StoredErrorSerializer(serializers.Serializer):
    """The error an execution failed (or last failed an attempt) with."""

    error_type = serializers.CharField(help_text='"generic", "not_found", "timed_out", "cancelled"')
    message = serializers.CharField(allow_blank=True)
    is_retryable = serializers.BooleanField()
    is_internal = serializers.BooleanField()


class RetryOptionsSerializer(serializers.Serializer):
    """Retry options: `max_retries` retries after the first attempt, with backoff."""

    max_retries = serializers.IntegerField(min_value=0, max_value=1000, required=False)
    base_delay = serializers.FloatField(min_value=0, max_value=3600, required=False)
    delay_multiplier = serializers.FloatField(min_value=0.1, max_value=10, required=False)
    max_delay = serializers.FloatField(
        min_value=0, max_value=86400, required=False, allow_null=True
    )


class WakeupLinkSerializer(serializers.Serializer):
    """How a webhook wakes this sleeping execution without staff credentials."""

    token = serializers.CharField()
    url = serializers.CharField(help_text="POST here (the token is in the query string).")
    expires_at = serializers.DateTimeField()


@extend_schema_field(OpenApiTypes.ANY)
class AnyValueField(serializers.JSONField):
    """Any JSON value (an input or output)."""


class ExecutionSerializer(serializers.Serializer):
    """An execution as listed: everything but its input, output, children and finalize."""

    execution_id = serializers.CharField()
    task_id = serializers.CharField()
    status = serializers.ChoiceField(choices=Status.choices)
    close_status = serializers.ChoiceField(choices=CloseStatus.choices)
    is_finished = serializers.BooleanField()
    error = StoredErrorSerializer(allow_null=True)
    retry_attempts = serializers.IntegerField()
    retry_options = RetryOptionsSerializer()
    timeout = serializers.FloatField(help_text="Seconds per attempt.")
    sleep_before_run = serializers.FloatField(help_text="Seconds.")
    root = ExecutionRefSerializer(allow_null=True)
    parent = ParentRefSerializer(allow_null=True)
    is_sleeping_task = serializers.BooleanField()
    sleeping_task_unique_id = serializers.CharField(allow_null=True)
    are_children_sequential = serializers.BooleanField()
    active_children_count = serializers.IntegerField()
    executor_id = serializers.CharField(allow_null=True)
    queue = serializers.CharField()
    priority = serializers.IntegerField()
    idempotency_key = serializers.CharField(allow_null=True)
    retried_from_execution_id = serializers.CharField(allow_null=True)
    start_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    waiting_for_children_started_at = serializers.DateTimeField(allow_null=True)
    waiting_for_finalize_started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ExecutionDetailSerializer(ExecutionSerializer):
    """One execution with its input, output, children, finalize and, while it sleeps, the
    link that wakes it."""

    input = AnyValueField(allow_null=True)
    output = AnyValueField(allow_null=True, help_text="null unless completed.")
    children = ExecutionRefSerializer(many=True)
    finalize = ExecutionRefSerializer(allow_null=True)
    wakeup = WakeupLinkSerializer(
        allow_null=True, help_text="Only for a sleeping execution that has not finished."
    )


# -- requests -------------------------------------------------------------------------------


def _check_utf8(value: Any, field: str) -> None:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise serializers.ValidationError(
            {field: ["Contains characters that cannot be encoded as UTF-8 (lone surrogates)."]}
        )
    except (ValueError, RecursionError):
        raise serializers.ValidationError({field: ["Cannot be encoded as JSON."]})


class StrictCharField(serializers.CharField):
    """A string that must be given as a JSON string (DRF's ``CharField`` accepts numbers)."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class EnqueueSerializer(serializers.Serializer):
    """Enqueue an execution of a task marked `api=True`; options override the task's."""

    task_id = StrictCharField(max_length=255)
    input = AnyValueField(
        required=False,
        allow_null=True,
        default=None,
        help_text="The task's input (a sleeping task's unique id string).",
    )
    timeout = serializers.FloatField(
        required=False, min_value=0.001, max_value=MAX_SECONDS, help_text="Seconds per attempt."
    )
    retry = RetryOptionsSerializer(required=False)
    sleep_before_run = serializers.FloatField(
        required=False, min_value=0, max_value=MAX_SECONDS, help_text="Seconds."
    )
    queue = StrictCharField(required=False, max_length=64)
    priority = serializers.IntegerField(
        required=False, min_value=MIN_PRIORITY, max_value=MAX_PRIORITY
    )
    idempotency_key = StrictCharField(
        required=False,
        max_length=255,
        help_text="Enqueueing again with the same key returns the existing execution (200).",
    )

    def validate_input(self, value: Any) -> Any:
        _check_utf8(value, "input")
        return value

    def validate_queue(self, value: str) -> str:
        _check_utf8(value, "queue")
        return value

    def validate_idempotency_key(self, value: str) -> str:
        _check_utf8(value, "idempotency_key")
        return value


class WakeupSerializer(serializers.Serializer):
    """Finish a sleeping execution: `completed` with an `output`, or `failed` with an `error`
    (a message, or an object with a `message`)."""

    status = serializers.ChoiceField(
        choices=[Status.COMPLETED.value, Status.FAILED.value], default=Status.COMPLETED.value
    )
    output = AnyValueField(required=False, allow_null=True, default=None)
    error = AnyValueField(
        required=False,
        allow_null=True,
        default=None,
        help_text='With status "failed": a message, or an object with a "message" string.',
    )

    def validate_output(self, value: Any) -> Any:
        _check_utf8(value, "output")
        return value

    def validate_error(self, value: Any) -> str | None:
        if isinstance(value, Mapping):
            value = value.get("message")
            if value is not None and not isinstance(value, str):
                raise serializers.ValidationError('"message" must be a string.')
        if value is not None and not isinstance(value, str):
            raise serializers.ValidationError(
                'Must be a message string or an object with a "message" string.'
            )
        if value is not None:
            if "\x00" in value:
                raise serializers.ValidationError("Null characters are not allowed.")
            _check_utf8(value, "error")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["status"] == Status.COMPLETED and attrs.get("error") is not None:
            raise serializers.ValidationError({"error": ['Only allowed with status "failed".']})
        if attrs["status"] == Status.FAILED and attrs.get("output") is not None:
            raise serializers.ValidationError({"output": ['Only allowed with status "completed".']})
        return attrs


# -- tasks, stats, health, errors -----------------------------------------------------------


def task_data(task: Task, schedules: Sequence[Schedule] = (), now: Any = None) -> dict[str, Any]:
    """The API's view of a registered task; ``schedules`` are those that enqueue it."""
    now = now or timezone.now()
    next_runs = [schedule.next_run_at(now) for schedule in schedules]
    runs = [
        {"name": schedule.name, "schedule": schedule.expression, "next_run_at": next_run}
        for schedule, next_run in zip(schedules, next_runs, strict=True)
    ]
    return {
        "id": task.id,
        "kind": str(task.kind),
        "description": task.description or "",
        "timeout": task.timeout,
        "retry": task.retry.to_dict(),
        "sleep_before_run": task.sleep_before_run,
        "queue": task.queue,
        "priority": task.priority,
        "api": task.api,
        "schedule": task.schedule,
        "max_concurrency": task.max_concurrency,
        "schedules": runs,
        "next_run_at": min(next_runs, default=None),
    }


class ScheduleSerializer(serializers.Serializer):
    """A schedule that enqueues the task: its name, cron expression and next tick."""

    name = serializers.CharField(help_text="The task id, or the key in DURABLE['SCHEDULES'].")
    schedule = serializers.CharField(help_text="Cron expression (5 fields, or 6 with seconds).")
    next_run_at = serializers.DateTimeField()


class TaskSerializer(serializers.Serializer):
    """A registered task; `api` says whether `POST executions/` may enqueue it."""

    id = serializers.CharField()
    kind = serializers.ChoiceField(choices=[kind.value for kind in TaskKind])
    description = serializers.CharField(allow_blank=True)
    timeout = serializers.FloatField(help_text="Seconds per attempt.")
    retry = RetryOptionsSerializer()
    sleep_before_run = serializers.FloatField()
    queue = serializers.CharField()
    priority = serializers.IntegerField()
    api = serializers.BooleanField()
    schedule = serializers.CharField(allow_null=True)
    max_concurrency = serializers.IntegerField(allow_null=True)
    schedules = ScheduleSerializer(many=True)
    next_run_at = serializers.DateTimeField(
        allow_null=True, help_text="The next tick of the task's schedules (null: none)."
    )


class StorageOperationSerializer(serializers.Serializer):
    """Durations of one storage operation in this process over the last 30 minutes (ms)."""

    operation = serializers.CharField()
    count = serializers.IntegerField()
    min_ms = serializers.FloatField(allow_null=True)
    max_ms = serializers.FloatField(allow_null=True)
    p50_ms = serializers.FloatField(allow_null=True)
    p90_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)


class StatusCountsSerializer(serializers.Serializer):
    """Executions per status (every status is present)."""

    ready = serializers.IntegerField()
    running = serializers.IntegerField()
    failed = serializers.IntegerField()
    timed_out = serializers.IntegerField()
    waiting_for_children = serializers.IntegerField()
    waiting_for_finalize = serializers.IntegerField()
    finalize_failed = serializers.IntegerField()
    completed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class StatsSerializer(serializers.Serializer):
    """Counts by status, the oldest ready execution's age, live workers and storage timings."""

    executions = StatusCountsSerializer()
    total = serializers.IntegerField()
    oldest_ready_age_seconds = serializers.FloatField(
        allow_null=True, help_text="null when nothing is ready to run."
    )
    live_workers = serializers.IntegerField()
    storage = StorageOperationSerializer(many=True)


class HealthSerializer(serializers.Serializer):
    """Whether the database answers, and how the workers keep up."""

    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    database = serializers.ChoiceField(choices=["ok", "unavailable"])
    live_workers = serializers.IntegerField(allow_null=True)
    oldest_ready_age_seconds = serializers.FloatField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    """Every error response: a message, a code, and for invalid requests the field errors."""

    detail = serializers.CharField()
    code = serializers.CharField()
    # Shadows ``Serializer.errors`` in the class body only: DRF moves fields into ``fields``.
    errors = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text="Field -> messages (validation errors only)."
    )
