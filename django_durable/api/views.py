"""The API's views: executions (list, enqueue, detail, cancel, retry), wake-ups, tasks, stats,
health, metrics and the OpenAPI schema.

Every view answers JSON (metrics: Prometheus text), checks the body size before reading it,
and turns every client mistake into a 4xx with a message (see :mod:`.exceptions`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import DatabaseError
from django.urls import reverse
from django.utils import timezone
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from drf_spectacular.utils import extend_schema as _extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ..conf import durable_settings
from ..errors import DurableExecutionError
from ..handles import cancel_execution, enqueue, wakeup_sleeping_task
from ..health import check_health
from ..models import TaskExecution
from ..operations import RetryConflictError, retry_execution
from ..schedules import all_schedules, schedules_of_task
from ..storage import get_storage
from ..tasks import TaskKind, registry
from ..tokens import make_wakeup_token, wakeup_token_expires_at, wakeup_url
from . import stats as stats_module
from .exceptions import Conflict, PayloadTooLarge, ServiceUnavailable, exception_handler
from .filters import ExecutionFilter
from .pagination import ExecutionCursorPagination
from .parsers import DurableJSONParser
from .permissions import TOKEN_QUERY_PARAM, configured_permissions, token_execution_id
from .renderers import PROMETHEUS_CONTENT_TYPE, DurableJSONRenderer, PrometheusTextRenderer
from .serializers import (
    EnqueueSerializer,
    ErrorSerializer,
    ExecutionDetailSerializer,
    ExecutionSerializer,
    HealthSerializer,
    StatsSerializer,
    TaskSerializer,
    WakeupSerializer,
    execution_data,
    task_data,
)

__all__ = [
    "DurableAPIView",
    "ExecutionCancelView",
    "ExecutionDetailView",
    "ExecutionListView",
    "ExecutionRetryView",
    "HealthView",
    "MetricsView",
    "StatsView",
    "TaskListView",
    "WakeupView",
]

#: Bytes a request body may have beyond the largest serialized value it carries (the JSON
#: around it, and escapes that take more room in the body than once parsed).
BODY_SIZE_MARGIN = 64 * 1024
#: The longest execution id the table holds; longer ids in a URL match nothing.
MAX_EXECUTION_ID_LENGTH = 32
#: Fields of a row that the list never shows (they can be large).
LIST_DEFERRED_FIELDS = ("input", "run_output", "output", "children", "finalize")


def extend_schema(**kwargs: Any) -> Any:
    """drf-spectacular's ``extend_schema`` built on its ``AutoSchema`` whatever the project's
    ``DEFAULT_SCHEMA_CLASS`` (the API must not require a REST_FRAMEWORK setting)."""
    decorate = _extend_schema(**kwargs)

    def decorator(function: Any) -> Any:
        function.kwargs = {**getattr(function, "kwargs", {}), "schema": AutoSchema}
        return decorate(function)

    return decorator


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    descriptions = {
        400: "Invalid request (malformed JSON, wrong types, invalid input or options).",
        401: "Not authenticated (when an authentication class asks for credentials).",
        403: "Not allowed by DURABLE['API_PERMISSION_CLASSES'].",
        404: "No such execution or task.",
        409: "The execution is not in a state that allows the operation.",
        413: "The request body is too large.",
        415: "The request body is not JSON.",
        503: "The database is unavailable.",
    }
    return {
        code: OpenApiResponse(response=ErrorSerializer, description=descriptions[code])
        for code in codes
    }


def _missing_execution(execution_id: str) -> exceptions.NotFound:
    return exceptions.NotFound(
        f"Task execution not found [executionId={execution_id}]", code="not_found"
    )


def _get_execution(execution_id: str) -> TaskExecution:
    if len(execution_id) > MAX_EXECUTION_ID_LENGTH or "\x00" in execution_id:
        raise _missing_execution(execution_id[:MAX_EXECUTION_ID_LENGTH])
    row = get_storage().get_by_id(execution_id)
    if row is None:
        raise _missing_execution(execution_id)
    return row


def _detail_url(request: Request, execution_id: str) -> str:
    return request.build_absolute_uri(
        reverse("django_durable:execution-detail", kwargs={"execution_id": execution_id})
    )


def _detail(request: Request, row: TaskExecution) -> dict[str, Any]:
    """The detail representation of ``row`` (with a wake-up link while it sleeps)."""
    extra: dict[str, Any] = {}
    if row.is_sleeping_task and not row.is_finished and row.sleeping_task_unique_id:
        token = make_wakeup_token(row.execution_id)
        extra["wakeup"] = {
            "token": token,
            "url": request.build_absolute_uri(wakeup_url(row, token=token)),
            "expires_at": wakeup_token_expires_at(token),
        }
    return ExecutionDetailSerializer(execution_data(row, detail=True, extra=extra)).data


class DurableAPIView(APIView):
    """The base of the API's views: JSON in and out, permissions from the settings, body size
    limits and the API's exception handler."""

    schema = AutoSchema()
    renderer_classes = [DurableJSONRenderer]
    parser_classes = [DurableJSONParser]
    #: The setting that bounds the value a request body carries (``None``: no value).
    body_value_setting: ClassVar[str | None] = None

    def get_permissions(self) -> list[BasePermission]:
        return configured_permissions()

    def get_exception_handler(self) -> Any:
        return exception_handler

    def max_body_size(self) -> int:
        """Largest accepted ``Content-Length``: the value's size limit plus a margin, and at
        most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` when that is set."""
        limit = BODY_SIZE_MARGIN
        if self.body_value_setting:
            limit += int(getattr(durable_settings, self.body_value_setting))
        django_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return limit if django_limit is None else min(limit, int(django_limit))

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > self.max_body_size():
            raise PayloadTooLarge(
                f"The request body has {length} bytes; at most {self.max_body_size()} are "
                "accepted (DURABLE['MAX_INPUT_SIZE'] / ['MAX_OUTPUT_SIZE'] plus "
                f"{BODY_SIZE_MARGIN} bytes, and DATA_UPLOAD_MAX_MEMORY_SIZE)."
            )
        super().initial(request, *args, **kwargs)


class ExecutionListView(DurableAPIView, generics.ListAPIView):
    """``GET executions/``: list and filter; ``POST executions/``: enqueue a task by id."""

    queryset = TaskExecution.objects.all()
    serializer_class = ExecutionSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = ExecutionFilter
    pagination_class = ExecutionCursorPagination
    body_value_setting = "MAX_INPUT_SIZE"

    def get_queryset(self) -> Any:
        return TaskExecution.objects.defer(*LIST_DEFERRED_FIELDS)

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        if args and not kwargs.get("data"):
            args = ([execution_data(row) for row in args[0]], *args[1:])
        return super().get_serializer(*args, **kwargs)

    @extend_schema(
        operation_id="executions_list",
        summary="List executions",
        description=(
            "Newest first, paginated by cursor (follow `next`). Several values of `status` or "
            "`close_status` are combined with OR, different filters with AND. Inputs, outputs "
            "and children are only in the detail."
        ),
        responses={200: ExecutionSerializer(many=True), **_errors(400, 401, 403, 503)},
        tags=["executions"],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="executions_create",
        summary="Enqueue a task",
        description=(
            "Enqueue an execution of a task marked `api=True`. Options left out take the "
            "task's. With an `idempotency_key` already used for this task the existing "
            "execution is returned (200) instead of a new one (201)."
        ),
        request=EnqueueSerializer,
        responses={
            201: ExecutionDetailSerializer,
            200: OpenApiResponse(
                ExecutionDetailSerializer, description="An execution with this idempotency key."
            ),
            **_errors(400, 401, 403, 404, 413, 415, 503),
        },
        examples=[
            OpenApiExample(
                "Enqueue",
                value={"task_id": "example.extract_title", "input": {"path": "a.txt"}},
                request_only=True,
            )
        ],
        tags=["executions"],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = EnqueueSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        task_id = data.pop("task_id")
        task = registry.get(task_id)
        if task is None:
            raise exceptions.NotFound(f"No task is registered with id {task_id!r}.")
        if not task.api:
            raise exceptions.PermissionDenied(
                f"Task {task_id} may not be enqueued through the API: define it with api=True.",
                code="task_not_allowed",
            )
        input_value = data.pop("input", None)
        if task.concurrency_key is not None and task.kind != TaskKind.SLEEPING_TASK:
            try:
                task.validate_input(input_value)
                task.concurrency_key(input_value)
            except DurableExecutionError:
                raise
            except Exception as exc:
                raise DurableExecutionError(
                    f"The concurrency key of task {task_id} cannot be computed from this input: "
                    f"{exc!r}"
                ) from exc
        key = data.get("idempotency_key")
        existed = (
            key is not None
            and TaskExecution.objects.filter(task_id=task.id, idempotency_key=key).exists()
        )
        handle = enqueue(task, input_value, **data)
        row = _get_execution(handle.execution_id)
        return Response(
            _detail(request, row),
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
            headers={"Location": _detail_url(request, row.execution_id)},
        )


_EXECUTION_ID = OpenApiParameter(
    "execution_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="An execution id (te_...)."
)


class ExecutionDetailView(DurableAPIView):
    """``GET executions/<execution_id>/``."""

    @extend_schema(
        operation_id="executions_retrieve",
        summary="Get an execution",
        parameters=[_EXECUTION_ID],
        responses={200: ExecutionDetailSerializer, **_errors(401, 403, 404, 503)},
        tags=["executions"],
    )
    def get(self, request: Request, execution_id: str) -> Response:
        return Response(_detail(request, _get_execution(execution_id)))


class ExecutionCancelView(DurableAPIView):
    """``POST executions/<execution_id>/cancel/``."""

    @extend_schema(
        operation_id="executions_cancel",
        summary="Cancel an execution",
        description=(
            "Cancels an unfinished execution (and, through it, its children). 409 when it has "
            "already finished."
        ),
        parameters=[_EXECUTION_ID],
        request=None,
        responses={200: ExecutionDetailSerializer, **_errors(401, 403, 404, 409, 413, 503)},
        tags=["executions"],
    )
    def post(self, request: Request, execution_id: str) -> Response:
        row = _get_execution(execution_id)
        if row.is_finished or not cancel_execution(row.execution_id):
            row = _get_execution(execution_id)
            raise Conflict(
                f"Task execution already finished with status {row.status}, so it cannot be "
                f"cancelled [executionId={row.execution_id}]",
                code="already_finished",
            )
        return Response(_detail(request, _get_execution(execution_id)))


class ExecutionRetryView(DurableAPIView):
    """``POST executions/<execution_id>/retry/``."""

    @extend_schema(
        operation_id="executions_retry",
        summary="Retry a failed execution",
        description=(
            "Enqueues a new execution of a failed, timed out, finalize failed or cancelled "
            "top-level execution's task with the same input (and timeout, retry options, queue "
            "and priority); the new execution's `retried_from_execution_id` names the old one. "
            "Retrying the same execution again returns that new execution (200)."
        ),
        parameters=[_EXECUTION_ID],
        request=None,
        responses={
            201: ExecutionDetailSerializer,
            200: OpenApiResponse(
                ExecutionDetailSerializer, description="The execution an earlier retry created."
            ),
            **_errors(401, 403, 404, 409, 413, 503),
        },
        tags=["executions"],
    )
    def post(self, request: Request, execution_id: str) -> Response:
        _get_execution(execution_id)
        try:
            result = retry_execution(execution_id)
        except RetryConflictError as exc:
            raise Conflict(exc.message, code="not_retryable")
        return Response(
            _detail(request, result.row),
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
            headers={"Location": _detail_url(request, result.row.execution_id)},
        )


class WakeupView(DurableAPIView):
    """``POST sleeping/<task_id>/<unique_id>/wakeup/``: staff, or ``?token=`` for this
    execution."""

    body_value_setting = "MAX_OUTPUT_SIZE"

    def check_permissions(self, request: Request) -> None:
        self.token_execution_id: str | None = None
        try:
            super().check_permissions(request)
        except (exceptions.NotAuthenticated, exceptions.PermissionDenied) as error:
            self.token_execution_id = token_execution_id(request, error)

    @extend_schema(
        operation_id="sleeping_wakeup",
        summary="Wake a sleeping task",
        description=(
            "Finishes the sleeping execution woken by `unique_id`: `completed` with `output`, "
            "or `failed` with `error`. Callers pass the API's permission classes (staff by "
            "default) or bring the execution's wake-up `token` (see the detail's `wakeup`), "
            "which wakes that execution and no other. 409 when it has already finished."
        ),
        parameters=[
            OpenApiParameter("task_id", OpenApiTypes.STR, OpenApiParameter.PATH),
            OpenApiParameter(
                "unique_id",
                OpenApiTypes.STR,
                OpenApiParameter.PATH,
                description="The unique id the sleeping task was enqueued with.",
            ),
            OpenApiParameter(
                TOKEN_QUERY_PARAM,
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                required=False,
                description="A wake-up token for this execution, instead of staff credentials.",
            ),
        ],
        request=WakeupSerializer,
        responses={
            200: ExecutionDetailSerializer,
            **_errors(400, 401, 403, 404, 409, 413, 415, 503),
        },
        examples=[
            OpenApiExample(
                "Completed",
                value={"status": "completed", "output": {"paid": True}},
                request_only=True,
            ),
            OpenApiExample(
                "Failed", value={"status": "failed", "error": "Card declined"}, request_only=True
            ),
        ],
        tags=["sleeping tasks"],
    )
    def post(self, request: Request, task_id: str, unique_id: str) -> Response:
        task = registry.get(task_id)
        if task is None or task.kind != TaskKind.SLEEPING_TASK:
            raise exceptions.NotFound(f"No sleeping task is registered with id {task_id!r}.")
        if len(unique_id) > 255 or "\x00" in unique_id:
            row = None
        else:
            row = get_storage().get_by_sleeping_task_unique_id(unique_id)
        if row is None or row.task_id != task.id:
            raise exceptions.NotFound(
                f"Sleeping task execution not found [taskId={task.id}] "
                f"[sleepingTaskUniqueId={unique_id[:255]}]"
            )
        if self.token_execution_id is not None and self.token_execution_id != row.execution_id:
            raise exceptions.PermissionDenied(
                "The wake-up token is for another execution.", code="invalid_token"
            )
        serializer = WakeupSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if row.is_finished:
            raise Conflict(
                f"Sleeping task execution already finished with status {row.status} "
                f"[executionId={row.execution_id}]",
                code="already_finished",
            )
        snapshot = wakeup_sleeping_task(
            task, unique_id, status=data["status"], output=data["output"], error=data["error"]
        )
        row = _get_execution(snapshot.execution_id)
        if row.status != data["status"]:
            raise Conflict(
                f"Sleeping task execution finished with status {row.status} before this "
                f"wake-up [executionId={row.execution_id}]",
                code="already_finished",
            )
        return Response(_detail(request, row))


class TaskListView(DurableAPIView):
    """``GET tasks/``: the registered tasks."""

    @extend_schema(
        operation_id="tasks_list",
        summary="List registered tasks",
        responses={200: TaskSerializer(many=True), **_errors(401, 403)},
        tags=["tasks"],
    )
    def get(self, request: Request) -> Response:
        tasks = sorted(registry, key=lambda task: task.id)
        schedules = all_schedules()
        now = timezone.now()
        data = [task_data(task, schedules_of_task(task.id, schedules), now) for task in tasks]
        return Response(TaskSerializer(data, many=True).data)


class StatsView(DurableAPIView):
    """``GET stats/``."""

    @extend_schema(
        operation_id="stats_retrieve",
        summary="Counts and timings",
        description=(
            "Executions by status (one GROUP BY), the age of the oldest execution that is due, "
            "live workers, and timings of this web process's storage operations."
        ),
        responses={200: StatsSerializer, **_errors(401, 403, 503)},
        tags=["operations"],
    )
    def get(self, request: Request) -> Response:
        return Response(StatsSerializer(stats_module.collect_stats()).data)


class HealthView(DurableAPIView):
    """``GET health/``: open to anyone (load balancers, orchestrators); reveals no ids."""

    authentication_classes = []

    def get_permissions(self) -> list[BasePermission]:
        return [AllowAny()]

    @extend_schema(
        operation_id="health_retrieve",
        summary="Health check",
        description=(
            "200 when the database answers, 503 when it does not. Needs no credentials. "
            "`live_workers` 0 means no worker runs executions: alert on it separately."
        ),
        auth=[],
        responses={
            200: HealthSerializer,
            503: OpenApiResponse(HealthSerializer, description="The database is unavailable."),
        },
        tags=["operations"],
    )
    def get(self, request: Request) -> Response:
        report = check_health()
        database = "ok" if report.database_ok else "unavailable"
        return Response(
            {
                "status": database,
                "database": database,
                "live_workers": report.live_workers,
                "oldest_ready_age_seconds": report.oldest_ready_age_seconds,
            },
            status=status.HTTP_200_OK
            if report.database_ok
            else status.HTTP_503_SERVICE_UNAVAILABLE,
        )


class MetricsView(DurableAPIView):
    """``GET metrics/``: Prometheus text."""

    renderer_classes = [PrometheusTextRenderer]

    @extend_schema(
        operation_id="metrics_retrieve",
        summary="Prometheus metrics",
        description=(
            "`durable_executions{status}`, `durable_task_executions{task_id,status}`, "
            "`durable_oldest_ready_age_seconds`, `durable_live_workers`, the summaries "
            "`durable_claim_latency_seconds` and `durable_run_duration_seconds` (recent "
            "executions) and `durable_storage_operation_duration_seconds` (this web process's "
            "storage calls), in the text exposition format 0.0.4."
        ),
        responses={
            (200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="Metrics."),
            (401, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR, description="Not authenticated."
            ),
            (403, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="Not allowed."),
            (503, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR, description="The database is unavailable."
            ),
        },
        tags=["operations"],
    )
    def get(self, request: Request) -> Response:
        try:
            text = _metrics_text()
        except DatabaseError as exc:
            raise ServiceUnavailable() from exc
        return Response(text, content_type=PROMETHEUS_CONTENT_TYPE)


def _metrics_text() -> str:
    """``prometheus_client``'s rendering when it is installed, else the built-in text."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return stats_module.prometheus_text(stats_module.collect_stats())
    from ..metrics import render_metrics

    return render_metrics()
