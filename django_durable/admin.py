"""The read-only admin: executions (list, detail with the execution tree, cancel and wake-up
actions) and worker processes. Nothing here edits an execution's state by hand: the actions go
through :func:`~django_durable.handles.cancel_execution`,
:func:`~django_durable.handles.wakeup_sleeping_task` and
:func:`~django_durable.operations.retry_execution`, as the API does.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import json
import pprint
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets, quote, unquote
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from .conf import durable_settings
from .errors import DurableExecutionError
from .handles import cancel_execution, wakeup_sleeping_task
from .models import ERRORED_STATUSES, Status, TaskExecution, Worker
from .operations import retry_execution
from .schedules import ScheduleError, all_schedules
from .serialization import deserialize
from .tasks import registry

__all__ = [
    "CappedCountPaginator",
    "ExecutionTree",
    "TaskExecutionAdmin",
    "WakeupForm",
    "WorkerAdmin",
    "build_execution_tree",
    "format_duration",
    "pretty_stored_value",
]

#: Longest text shown for one input, output or error; the rest is cut with a note.
MAX_DISPLAY_CHARS = 100_000

#: Columns that can hold up to ``MAX_INPUT_SIZE`` / ``MAX_OUTPUT_SIZE`` bytes each: never read
#: for the list, only for one execution's detail page.
LARGE_FIELDS = ("input", "run_output", "output", "error", "children", "finalize")

#: Columns the execution tree reads for each node.
TREE_FIELDS = (
    "id",
    "execution_id",
    "task_id",
    "status",
    "parent_execution_id",
    "index_in_parent_children",
    "is_finalize_of_parent",
    "retry_attempts",
    "started_at",
    "finished_at",
)


# -- formatting -----------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """``seconds`` as a short duration: ``350 ms``, ``12.3 s``, ``4 min 2 s``, ``3 h 5 min``."""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


_UNDER_WAY = frozenset({Status.RUNNING, Status.WAITING_FOR_CHILDREN, Status.WAITING_FOR_FINALIZE})


def execution_duration(row: TaskExecution, now: datetime.datetime | None = None) -> str | None:
    """The duration of ``row``'s current (or last) attempt; ``None`` before it started.

    One under way (running, or waiting for its children or finalize) reads
    ``"12.3 s (so far)"``, measured up to ``now``.
    """
    if row.started_at is None:
        return None
    if row.finished_at is not None:
        return format_duration((row.finished_at - row.started_at).total_seconds())
    if row.status not in _UNDER_WAY:
        return None  # ready again, for a retry: the last attempt's start says nothing now
    elapsed = ((now or timezone.now()) - row.started_at).total_seconds()
    return f"{format_duration(elapsed)} (so far)"


def _json_default(value: Any) -> Any:
    """What ``json.dumps`` cannot write itself, as the closest JSON value."""
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds():g} s"
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        items = list(value)
        try:
            return sorted(items)
        except TypeError:
            return items
    if isinstance(value, bytes):
        return repr(value)
    raise TypeError(f"{type(value).__qualname__} is not JSON serializable")


def pretty_value(value: Any) -> str:
    """``value`` as indented JSON (Python's ``pprint`` when JSON cannot show it)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError):
        return pprint.pformat(value, width=100)


def pretty_stored_value(text: str | None) -> str | None:
    """A stored input or output, deserialized and indented; the raw text if it cannot be read."""
    if text is None:
        return None
    if text == "":
        return ""
    try:
        value = deserialize(text)
    except Exception:
        return text
    return pretty_value(value)


def _pre(text: str | None) -> SafeString | None:
    """``text`` in a ``<pre>`` block, cut at :data:`MAX_DISPLAY_CHARS`."""
    if text is None:
        return None
    if len(text) > MAX_DISPLAY_CHARS:
        return format_html(
            '<pre class="durable-json">{}</pre><p class="help">Cut at {} of {} characters.</p>',
            text[:MAX_DISPLAY_CHARS],
            f"{MAX_DISPLAY_CHARS:,}",
            f"{len(text):,}",
        )
    return format_html('<pre class="durable-json">{}</pre>', text)


def format_time(value: datetime.datetime, *, milliseconds: bool = True) -> str:
    """``value`` in the current time zone, to the millisecond: ``2024-05-01 12:00:00.123 UTC``."""
    local = timezone.localtime(value)
    text = (
        local.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        if milliseconds
        else f"{local:%Y-%m-%d %H:%M:%S}"
    )
    return f"{text} {local.tzname()}"


def status_badge(status: str) -> SafeString:
    """A coloured badge for an execution status."""
    label = Status(status).label if status in Status.values else status
    return format_html(
        '<span class="durable-status durable-status-{}" data-status="{}">{}</span>',
        status,
        status,
        label,
    )


# -- counting big tables --------------------------------------------------------------------


def estimated_row_count(queryset: QuerySet[Any]) -> int | None:
    """PostgreSQL's estimate of the rows in ``queryset``'s table; ``None`` if never analysed.

    ``SELECT reltuples FROM pg_class``: the planner's row estimate, kept fresh by (auto)vacuum
    and ANALYZE; reading it costs nothing whatever the size of the table.
    """
    connection = connections[queryset.db]
    table = connection.ops.quote_name(queryset.model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    if row is None or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


class CappedCountPaginator(Paginator):
    """A paginator that never counts a whole big table.

    It counts at most ``count_limit + 1`` rows (``SELECT COUNT(*) FROM (... LIMIT n)``) and
    reports ``count_limit`` past that, except for an unfiltered list on PostgreSQL, which then
    reports the planner's estimate of the table's rows (when it exceeds ``count_limit``).
    :attr:`count_is_capped` and :attr:`count_is_estimate` say which happened.
    """

    #: Rows counted one by one at most.
    count_limit = 10_000
    count_is_estimate = False
    count_is_capped = False

    @cached_property
    def count(self) -> int:
        """The number of rows, or its estimate, or :attr:`count_limit`."""
        object_list = self.object_list
        if not isinstance(object_list, QuerySet):
            return len(object_list)
        counted = object_list[: self.count_limit + 1].count()
        if counted <= self.count_limit:
            return counted
        # Counted first, so that stale statistics (say, after a purge) are never believed.
        if connections[object_list.db].vendor == "postgresql" and not object_list.query.where:
            estimate = estimated_row_count(object_list)
            if estimate is not None and estimate > self.count_limit:
                self.count_is_estimate = True
                return estimate
        self.count_is_capped = True
        return self.count_limit


# -- the execution tree ---------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionTree:
    """The executions of one root, as nested HTML lists, and how many were read."""

    html: SafeString
    size: int
    truncated: bool
    root_execution_id: str


def _tree_sort_key(row: TaskExecution) -> tuple[bool, int, int]:
    return (row.is_finalize_of_parent, row.index_in_parent_children, row.pk)


def build_execution_tree(
    execution: TaskExecution,
    *,
    link: Callable[[TaskExecution], str],
    limit: int = 2000,
    now: datetime.datetime | None = None,
) -> ExecutionTree:
    """The tree of ``execution``'s root (itself when top-level), ``execution`` highlighted.

    One query reads at most ``limit`` rows of the family in creation order; ``link(row)``
    returns a node's URL. Rows whose parent was not read (cut by ``limit``, or purged) hang
    from the top of the tree.
    """
    root_id = execution.root_execution_id or execution.execution_id
    rows = list(
        type(execution)
        ._default_manager.using(execution._state.db)
        .filter(Q(execution_id=root_id) | Q(root_execution_id=root_id))
        .only(*TREE_FIELDS)
        .order_by("id")[: limit + 1]
    )
    truncated = len(rows) > limit
    rows = rows[:limit]
    by_id = {row.execution_id: row for row in rows}
    children: dict[str, list[TaskExecution]] = {}
    tops: list[TaskExecution] = []
    for row in rows:
        parent = row.parent_execution_id
        if parent and parent in by_id and parent != row.execution_id:
            children.setdefault(parent, []).append(row)
        else:
            tops.append(row)
    for siblings in children.values():
        siblings.sort(key=_tree_sort_key)
    now = now or timezone.now()

    def label(row: TaskExecution) -> SafeString:
        extras = []
        if row.is_finalize_of_parent:
            extras.append(format_html('<span class="durable-tag">{}</span>', "finalize"))
        elif row.parent_execution_id:
            extras.append(
                format_html('<span class="durable-tag">#{}</span>', row.index_in_parent_children)
            )
        if row.retry_attempts:
            retries = "retry" if row.retry_attempts == 1 else "retries"
            extras.append(
                format_html('<span class="durable-tag">{} {}</span>', row.retry_attempts, retries)
            )
        duration = execution_duration(row, now)
        if duration:
            extras.append(format_html('<span class="durable-duration">{}</span>', duration))
        current = row.execution_id == execution.execution_id
        return format_html(
            '<li class="durable-node{}" data-execution-id="{}" data-status="{}"{}>'
            '{} <a href="{}">{}</a> <code>{}</code> {}',
            " durable-node-current" if current else "",
            row.execution_id,
            row.status,
            mark_safe(' aria-current="true"') if current else "",
            status_badge(row.status),
            link(row),
            row.task_id,
            row.execution_id,
            mark_safe(" ".join(extras)),  # each part built by format_html
        )

    # Iterative, so that deep trees (a long looping task) cannot exhaust the stack.
    parts: list[str] = ['<ul class="durable-tree">']
    seen: set[str] = set()
    stack: list[Iterator[TaskExecution]] = [iter(tops)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            parts.append("</ul>")
            if stack:
                parts.append("</li>")
            continue
        if node.execution_id in seen:
            continue
        seen.add(node.execution_id)
        parts.append(label(node))
        kids = children.get(node.execution_id)
        if kids:
            parts.append("<ul>")
            stack.append(iter(kids))
        else:
            parts.append("</li>")
    return ExecutionTree(
        html=mark_safe("".join(parts)),  # every piece above is escaped
        size=len(rows),
        truncated=truncated,
        root_execution_id=root_id,
    )


# -- filters --------------------------------------------------------------------------------


class TaskIdListFilter(admin.SimpleListFilter):
    """Filter by task id, offering the registered tasks (no ``DISTINCT`` over the table)."""

    title = "task id"
    parameter_name = "task_id"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        ids = sorted(task.id for task in registry)
        current = self.value()
        if current and current not in ids:
            ids.append(current)
        return [(task_id, task_id) for task_id in ids]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(task_id=value) if value else queryset


class LevelListFilter(admin.SimpleListFilter):
    """Top-level executions, children, or finalize executions."""

    title = "level"
    parameter_name = "level"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("top", "Top-level"), ("child", "Children"), ("finalize", "Finalize")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "top":
            return queryset.filter(parent_execution_id__isnull=True)
        if value == "child":
            return queryset.filter(parent_execution_id__isnull=False, is_finalize_of_parent=False)
        if value == "finalize":
            return queryset.filter(is_finalize_of_parent=True)
        return queryset


# -- wake-up form ---------------------------------------------------------------------------


class WakeupForm(forms.Form):
    """How to finish sleeping executions: completed with a JSON output, or failed."""

    status = forms.ChoiceField(
        choices=[
            (Status.COMPLETED.value, "Completed, with the output below"),
            (Status.FAILED.value, "Failed, with the error message below"),
        ],
        initial=Status.COMPLETED.value,
        widget=forms.RadioSelect,
    )
    output = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60, "class": "vLargeTextField"}),
        help_text='JSON, e.g. {"paid": true}. Empty means null.',
    )
    error_message = forms.CharField(
        required=False,
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60, "class": "vLargeTextField"}),
        help_text="The message of the error the execution fails with.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        status = data.get("status")
        if status == Status.COMPLETED:
            text = (data.get("output") or "").strip()
            if text:
                try:
                    data["output_value"] = json.loads(text)
                except json.JSONDecodeError as error:
                    self.add_error(
                        "output",
                        f"Not valid JSON: {error.msg} (line {error.lineno}, column {error.colno}).",
                    )
            else:
                data["output_value"] = None
        elif status == Status.FAILED and not (data.get("error_message") or "").strip():
            self.add_error("error_message", "Give the message of the error.")
        return data


# -- the admins -----------------------------------------------------------------------------


_Display = TypeVar("_Display", bound=Callable[..., Any])


def _empty_when_none(method: _Display) -> _Display:
    """Show ``None`` as the admin's empty value (``-``) on detail pages too, not as "None"."""

    @functools.wraps(method)
    def display(self: admin.ModelAdmin, obj: Any) -> Any:
        value = method(self, obj)
        return self.get_empty_value_display() if value is None else value

    return cast(_Display, display)


def _time_display(field: str) -> Callable[[Any, TaskExecution], str | None]:
    """A detail-page field showing the time in ``field`` to the millisecond."""

    @admin.display(description=field.replace("_", " "))
    @_empty_when_none
    def display(self: Any, obj: TaskExecution) -> str | None:
        value = getattr(obj, field)
        return None if value is None else format_time(value)

    return display


class ReadOnlyAdminMixin:
    """No adding, changing or deleting: the rows are the engine's state."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TaskExecution)
class TaskExecutionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Browse executions: filters, search, status colours, links to the family, the tree.

    Cancelling and waking need the model's ``change`` permission (the rows themselves are
    never edited). Change pages are also found by execution id (admin-quoted, as
    :meth:`change_url` builds them), so that links need no query.
    """

    list_display = (
        "execution_id",
        "status_badge",
        "task_id",
        "retries",
        "created",
        "duration",
        "parent_link",
        "root_link",
    )
    list_filter = (
        "status",
        "close_status",
        TaskIdListFilter,
        LevelListFilter,
        "is_sleeping_task",
        ("created_at", admin.DateFieldListFilter),
    )
    # get_search_results() makes exact / prefix lookups that indexes serve; these name them.
    search_fields = ("execution_id", "task_id", "sleeping_task_unique_id")
    search_help_text = (
        "An execution id, a sleeping task's unique id (exact), or the start of a task id."
    )
    sortable_by = ("execution_id", "status_badge", "task_id", "retries", "created")
    list_per_page = 50
    list_max_show_all = 200
    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ["cancel_selected", "wake_selected", "retry_selected"]
    #: Rows that one run of an action handles at most ("select all" over a huge list).
    max_action_rows = 1000
    #: Nodes drawn in the execution tree at most.
    tree_limit = 2000

    fieldsets = (
        (
            None,
            {
                "fields": (
                    "execution_id",
                    "task_id",
                    "status_badge",
                    "close_status",
                    "retry_attempts",
                    "queue",
                    "priority",
                    "executor_id",
                )
            },
        ),
        (
            "Family",
            {
                "fields": (
                    "root_link",
                    "parent_link",
                    "index_in_parent_children",
                    "is_finalize_of_parent",
                    "children_links",
                    "active_children_count",
                    "finalize_link",
                    "retried_from_link",
                )
            },
        ),
        (
            "Values",
            {"fields": ("input_pretty", "run_output_pretty", "output_pretty", "error_pretty")},
        ),
        (
            "Times",
            {
                "fields": (
                    "created_at_display",
                    "start_at_display",
                    "started_at_display",
                    "expires_at_display",
                    "waiting_for_children_started_at_display",
                    "waiting_for_finalize_started_at_display",
                    "finished_at_display",
                    "duration",
                    "closed_at_display",
                    "updated_at_display",
                )
            },
        ),
        (
            "Options",
            {
                "classes": ("collapse",),
                "fields": (
                    "timeout",
                    "retry_options_pretty",
                    "sleep_before_run",
                    "are_children_sequential",
                    "is_sleeping_task",
                    "sleeping_task_unique_id",
                    "idempotency_key",
                    "concurrency_key",
                ),
            },
        ),
        (
            "Engine state",
            {
                "classes": ("collapse",),
                "fields": (
                    "is_finished",
                    "on_children_finished_processing_status",
                    "on_children_finished_processing_expires_at_display",
                    "on_children_finished_processing_finished_at_display",
                    "close_expires_at_display",
                    "needs_promise_cancellation",
                ),
            },
        ),
    )
    #: After which fieldset (1-based) the detail page draws the execution tree.
    tree_after_fieldset = 2

    created_at_display = _time_display("created_at")
    start_at_display = _time_display("start_at")
    started_at_display = _time_display("started_at")
    expires_at_display = _time_display("expires_at")
    waiting_for_children_started_at_display = _time_display("waiting_for_children_started_at")
    waiting_for_finalize_started_at_display = _time_display("waiting_for_finalize_started_at")
    finished_at_display = _time_display("finished_at")
    closed_at_display = _time_display("closed_at")
    updated_at_display = _time_display("updated_at")
    on_children_finished_processing_expires_at_display = _time_display(
        "on_children_finished_processing_expires_at"
    )
    on_children_finished_processing_finished_at_display = _time_display(
        "on_children_finished_processing_finished_at"
    )
    close_expires_at_display = _time_display("close_expires_at")

    class Media:
        css = {"all": ("django_durable/admin.css",)}

    # -- queries ----------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskExecution]:
        """All executions, without the large value columns (see :meth:`get_object`)."""
        return super().get_queryset(request).defer(*LARGE_FIELDS)

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> TaskExecution | None:
        """The execution with primary key ``object_id``, or with that execution id."""
        queryset = self.get_queryset(request).defer(None)
        if from_field is None and not object_id.isdigit():
            return queryset.filter(execution_id=object_id).first()
        try:
            return queryset.get(pk=int(object_id))
        except (TaskExecution.DoesNotExist, ValueError):
            return None

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[TaskExecution], search_term: str
    ) -> tuple[QuerySet[TaskExecution], bool]:
        """Exact execution / sleeping ids, task id prefix: lookups that indexes can serve."""
        term = search_term.strip()
        if not term:
            return queryset, False
        exact = Q(execution_id=term) | Q(sleeping_task_unique_id=term)
        if term.startswith("te_"):
            # An execution id: two unique indexes answer, no scan for a task id prefix.
            return queryset.filter(exact), False
        return queryset.filter(exact | Q(task_id__startswith=term)), False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return flatten_fieldsets(self.fieldsets)

    # -- URLs -------------------------------------------------------------------------------

    def change_url(self, execution_id: str) -> str:
        """The admin page of an execution, by execution id (no query needed)."""
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change",
            args=[quote(execution_id)],
        )

    def changelist_url(self, **params: str) -> str:
        url = reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist"
        )
        if params:
            url += "?" + urlencode(params)
        return url

    def get_urls(self) -> list[URLPattern]:
        info = (self.opts.app_label, self.opts.model_name)
        own = [
            path(
                "schedules/",
                self.admin_site.admin_view(self.schedules_view),
                name="{}_{}_schedules".format(*info),
            ),
            path(
                "<path:object_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="{}_{}_cancel".format(*info),
            ),
            path(
                "<path:object_id>/wakeup/",
                self.admin_site.admin_view(self.wakeup_view),
                name="{}_{}_wakeup".format(*info),
            ),
        ]
        return [*own, *super().get_urls()]

    def _link(self, execution_id: str | None, label: str | None = None) -> SafeString | None:
        if not execution_id:
            return None
        return format_html(
            '<a href="{}" title="{}">{}</a>',
            self.change_url(execution_id),
            execution_id,
            label or execution_id,
        )

    # -- columns and fields -----------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: TaskExecution) -> SafeString:
        return status_badge(obj.status)

    @admin.display(description="retries", ordering="retry_attempts")
    def retries(self, obj: TaskExecution) -> int:
        return obj.retry_attempts

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: TaskExecution) -> str:
        return format_time(obj.created_at, milliseconds=False)

    @admin.display(description="duration")
    @_empty_when_none
    def duration(self, obj: TaskExecution) -> str | None:
        return execution_duration(obj)

    @admin.display(description="parent")
    @_empty_when_none
    def parent_link(self, obj: TaskExecution) -> SafeString | None:
        return self._link(obj.parent_execution_id, obj.parent_task_id)

    @admin.display(description="root")
    @_empty_when_none
    def root_link(self, obj: TaskExecution) -> SafeString | None:
        return self._link(obj.root_execution_id, obj.root_task_id)

    @admin.display(description="finalize")
    @_empty_when_none
    def finalize_link(self, obj: TaskExecution) -> SafeString | None:
        finalize = obj.finalize or {}
        return self._link(finalize.get("execution_id"), finalize.get("task_id"))

    @admin.display(description="retried from")
    @_empty_when_none
    def retried_from_link(self, obj: TaskExecution) -> SafeString | None:
        return self._link(obj.retried_from_execution_id)

    @admin.display(description="children")
    @_empty_when_none
    def children_links(self, obj: TaskExecution) -> SafeString | None:
        records = obj.children or []
        if not records:
            return None
        shown = records[:50]
        items = [
            format_html(
                "<li>{}</li>", self._link(record.get("execution_id"), record.get("task_id"))
            )
            for record in shown
        ]
        more = ""
        if len(records) > len(shown):
            more = format_html("<li>… and {} more</li>", len(records) - len(shown))
        return format_html(
            '<ul class="durable-children">{}{}</ul><a href="{}">List the {} children</a>',
            mark_safe("".join(items)),  # built by format_html
            more,
            self.changelist_url(parent_execution_id=obj.execution_id),
            len(records),
        )

    @admin.display(description="input")
    @_empty_when_none
    def input_pretty(self, obj: TaskExecution) -> SafeString | None:
        if obj.is_sleeping_task:
            return _pre(pretty_value(obj.sleeping_task_unique_id))
        return _pre(pretty_stored_value(obj.input))

    @admin.display(description="run output")
    @_empty_when_none
    def run_output_pretty(self, obj: TaskExecution) -> SafeString | None:
        return _pre(pretty_stored_value(obj.run_output))

    @admin.display(description="output")
    @_empty_when_none
    def output_pretty(self, obj: TaskExecution) -> SafeString | None:
        return _pre(pretty_stored_value(obj.output))

    @admin.display(description="error")
    @_empty_when_none
    def error_pretty(self, obj: TaskExecution) -> SafeString | None:
        if obj.error is None:
            return None
        return _pre(pretty_value(obj.error))

    @admin.display(description="retry options")
    @_empty_when_none
    def retry_options_pretty(self, obj: TaskExecution) -> SafeString | None:
        return _pre(pretty_value(obj.retry_options))

    # -- the detail page --------------------------------------------------------------------

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        """The read-only detail page, with the execution tree and the cancel / wake buttons."""
        if obj is not None:
            tree = build_execution_tree(
                obj, link=lambda row: self.change_url(row.execution_id), limit=self.tree_limit
            )
            context["execution_tree"] = tree
            context["tree_after_fieldset"] = self.tree_after_fieldset
            context["tree_list_url"] = self.changelist_url(root_execution_id=tree.root_execution_id)
            if not obj.is_finished and self.has_cancel_permission(request):
                context["cancel_url"] = self._object_url("cancel", obj)
                if obj.is_sleeping_task:
                    context["wakeup_url"] = self._object_url("wakeup", obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _object_url(self, view: str, obj: TaskExecution) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{view}",
            args=[quote(obj.pk)],
        )

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "title": title,
            "media": self.media,
            **extra,
        }

    def _get_for_view(self, request: HttpRequest, object_id: str) -> TaskExecution:
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise TaskExecution.DoesNotExist(f"Task execution not found [id={object_id}]")
        return obj

    def _not_found(self, request: HttpRequest, object_id: str) -> HttpResponse:
        self.message_user(
            request, f"Task execution {unquote(object_id)!r} not found.", messages.WARNING
        )
        return HttpResponseRedirect(self.changelist_url())

    def schedules_view(self, request: HttpRequest) -> HttpResponse:
        """Every schedule with its next run and the execution of its latest tick."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        now = timezone.now()
        error = None
        try:
            schedules = all_schedules()
        except ScheduleError as exc:
            schedules, error = [], str(exc)
        rows = []
        for schedule in schedules:
            latest = (
                TaskExecution.objects.filter(
                    task_id=schedule.task_id,
                    idempotency_key__startswith=f"schedule:{schedule.name}:",
                )
                .order_by("-id")
                .only("id", "execution_id", "status", "created_at")
                .first()
            )
            rows.append(
                {
                    "schedule": schedule,
                    "next_run_at": format_time(schedule.next_run_at(now), milliseconds=False),
                    "latest": latest,
                    "latest_link": self._link(latest.execution_id) if latest else None,
                    "latest_status": status_badge(latest.status) if latest else None,
                }
            )
        return TemplateResponse(
            request,
            "admin/django_durable/taskexecution/schedules.html",
            self._context(request, "Schedules", rows=rows, error=error),
        )

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Ask to confirm, then cancel one execution (POST)."""
        try:
            obj = self._get_for_view(request, object_id)
        except TaskExecution.DoesNotExist:
            return self._not_found(request, object_id)
        change_url = self._object_url("change", obj)
        if request.method == "POST":
            self._report_cancel(request, self._cancel([obj.execution_id]), finished=0)
            return HttpResponseRedirect(change_url)
        return TemplateResponse(
            request,
            "admin/django_durable/taskexecution/cancel_confirmation.html",
            self._context(
                request,
                f"Cancel {obj.task_id} {obj.execution_id}?",
                original=obj,
                change_url=change_url,
            ),
        )

    def wakeup_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A form to wake one sleeping execution, then the wake-up (POST)."""
        try:
            obj = self._get_for_view(request, object_id)
        except TaskExecution.DoesNotExist:
            return self._not_found(request, object_id)
        change_url = self._object_url("change", obj)
        if not obj.is_sleeping_task or obj.is_finished:
            self.message_user(
                request,
                f"{obj.execution_id} is not a sleeping execution that is waiting.",
                messages.WARNING,
            )
            return HttpResponseRedirect(change_url)
        form = WakeupForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            self._wake(request, [obj], form.cleaned_data)
            return HttpResponseRedirect(change_url)
        return TemplateResponse(
            request,
            "admin/django_durable/taskexecution/wakeup_form.html",
            self._context(
                request,
                "Wake up a sleeping execution",
                form=form,
                executions=[obj],
                change_url=change_url,
            ),
        )

    # -- actions ----------------------------------------------------------------------------

    def has_cancel_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Cancelling and waking need the model's ``change`` permission."""
        opts = self.opts
        codename = get_permission_codename("change", opts)
        return bool(request.user.has_perm(f"{opts.app_label}.{codename}"))

    def _cancel(self, execution_ids: Sequence[str]) -> tuple[int, list[str]]:
        cancelled = 0
        failures = []
        for execution_id in execution_ids:
            try:
                if cancel_execution(execution_id):
                    cancelled += 1
                else:
                    failures.append(f"{execution_id} had already finished")
            except DurableExecutionError as error:
                failures.append(f"{execution_id}: {error}")
        return cancelled, failures

    def _report_cancel(
        self, request: HttpRequest, result: tuple[int, list[str]], *, finished: int
    ) -> None:
        cancelled, failures = result
        if cancelled:
            noun = "execution" if cancelled == 1 else "executions"
            self.message_user(request, f"Cancelled {cancelled} {noun}.", messages.SUCCESS)
        if finished:
            were = "was" if finished == 1 else "were"
            self.message_user(
                request, f"{finished} selected {were} already finished.", messages.WARNING
            )
        for failure in failures[:20]:
            self.message_user(request, f"Not cancelled: {failure}.", messages.WARNING)
        if not cancelled and not finished and not failures:
            self.message_user(request, "Nothing to cancel.", messages.WARNING)

    @admin.action(description="Cancel selected executions", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[TaskExecution]) -> None:
        """Cancel the unfinished executions selected (the finished ones are left alone)."""
        limit = self.max_action_rows
        ids = list(
            queryset.filter(is_finished=False)
            .order_by("id")
            .values_list("execution_id", flat=True)[: limit + 1]
        )
        finished = queryset.filter(is_finished=True)[:limit].count()
        self._report_cancel(request, self._cancel(ids[:limit]), finished=finished)
        if len(ids) > limit:
            self.message_user(
                request,
                f"Only the first {limit} unfinished executions were cancelled; "
                "run the action again for the rest.",
                messages.WARNING,
            )

    @admin.action(description="Wake selected sleeping executions…", permissions=["cancel"])
    def wake_selected(
        self, request: HttpRequest, queryset: QuerySet[TaskExecution]
    ) -> HttpResponse | None:
        """Ask for an output (or an error), then finish the selected sleeping executions."""
        limit = self.max_action_rows
        sleeping = list(
            queryset.filter(is_sleeping_task=True, is_finished=False)
            .order_by("id")
            .only("id", "execution_id", "task_id", "sleeping_task_unique_id", "status")[:limit]
        )
        if not sleeping:
            self.message_user(
                request,
                "None of the selected executions is a sleeping execution that is waiting.",
                messages.WARNING,
            )
            return None
        form = WakeupForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._wake(request, sleeping, form.cleaned_data)
            return None
        return TemplateResponse(
            request,
            "admin/django_durable/taskexecution/wakeup_form.html",
            self._context(
                request,
                "Wake up sleeping executions",
                form=form,
                executions=sleeping,
                action_name="wake_selected",
                selected=request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                select_across=request.POST.get("select_across", "0"),
                change_url=request.get_full_path(),
            ),
        )

    @admin.action(description="Retry selected failed executions", permissions=["cancel"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[TaskExecution]) -> None:
        """Enqueue a new execution, with the same input, of each failed top-level execution
        selected (retrying one twice returns the first retry)."""
        limit = self.max_action_rows
        ids = list(
            queryset.filter(status__in=ERRORED_STATUSES, parent_execution_id__isnull=True)
            .order_by("id")
            .values_list("execution_id", flat=True)[:limit]
        )
        created = 0
        for execution_id in ids:
            try:
                result = retry_execution(execution_id)
            except DurableExecutionError as error:
                self.message_user(request, f"Not retried: {error}", messages.WARNING)
                continue
            if result.created:
                created += 1
            else:
                self.message_user(
                    request,
                    f"{execution_id} was already retried as {result.row.execution_id}.",
                    messages.WARNING,
                )
        if created:
            noun = "execution" if created == 1 else "executions"
            self.message_user(
                request, f"Retried {created} {noun} as new executions.", messages.SUCCESS
            )
        elif not ids:
            self.message_user(
                request,
                "None of the selected executions is a failed top-level execution.",
                messages.WARNING,
            )

    def _wake(
        self, request: HttpRequest, rows: Sequence[TaskExecution], data: dict[str, Any]
    ) -> None:
        status = data["status"]
        woken = 0
        for row in rows:
            try:
                snapshot = wakeup_sleeping_task(
                    row.task_id,
                    row.sleeping_task_unique_id or "",
                    status=status,
                    output=data.get("output_value"),
                    error=data.get("error_message"),
                )
            except DurableExecutionError as error:
                self.message_user(
                    request, f"Not woken: {row.execution_id}: {error}", messages.ERROR
                )
                continue
            if snapshot.status == status:
                woken += 1
            else:
                self.message_user(
                    request,
                    f"Not woken: {row.execution_id} had already finished ({snapshot.status}).",
                    messages.WARNING,
                )
        if woken:
            noun = "execution" if woken == 1 else "executions"
            self.message_user(
                request, f"Woke {woken} sleeping {noun} as {status}.", messages.SUCCESS
            )


class WorkerLivenessFilter(admin.SimpleListFilter):
    """Live workers (beat within 3 heartbeat intervals), stopped ones, and silent ones."""

    title = "liveness"
    parameter_name = "liveness"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "Live"), ("silent", "Silent (presumed dead)"), ("stopped", "Stopped")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        threshold = _live_threshold()
        value = self.value()
        if value == "live":
            return queryset.filter(stopped_at__isnull=True, last_heartbeat_at__gte=threshold)
        if value == "silent":
            return queryset.filter(stopped_at__isnull=True, last_heartbeat_at__lt=threshold)
        if value == "stopped":
            return queryset.filter(stopped_at__isnull=False)
        return queryset


def _live_threshold(now: datetime.datetime | None = None) -> datetime.datetime:
    """Workers that beat after this are live: 3 ``HEARTBEAT_INTERVAL`` s ago."""
    interval = float(durable_settings.HEARTBEAT_INTERVAL)
    return (now or timezone.now()) - timedelta(seconds=3 * interval)


def worker_liveness(worker: Worker, now: datetime.datetime | None = None) -> str:
    """``"live"``, ``"stopped"`` or ``"silent"`` (no heartbeat for 3 intervals)."""
    if worker.stopped_at is not None:
        return "stopped"
    return "live" if worker.last_heartbeat_at >= _live_threshold(now) else "silent"


@admin.register(Worker)
class WorkerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Worker processes and their heartbeats, live ones marked."""

    list_display = (
        "worker_id",
        "liveness",
        "hostname",
        "pid",
        "queue_list",
        "concurrency",
        "started",
        "last_heartbeat",
        "stopped",
        "executions_link",
    )
    list_filter = (WorkerLivenessFilter,)
    search_fields = ("=worker_id", "hostname")
    show_facets = admin.ShowFacets.NEVER

    class Media:
        css = {"all": ("django_durable/admin.css",)}

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: Worker) -> str:
        return format_time(obj.started_at, milliseconds=False)

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def last_heartbeat(self, obj: Worker) -> str:
        return format_time(obj.last_heartbeat_at, milliseconds=False)

    @admin.display(description="stopped", ordering="stopped_at")
    @_empty_when_none
    def stopped(self, obj: Worker) -> str | None:
        return None if obj.stopped_at is None else format_time(obj.stopped_at, milliseconds=False)

    @admin.display(description="liveness")
    def liveness(self, obj: Worker) -> SafeString:
        state = worker_liveness(obj)
        labels = {"live": "Live", "stopped": "Stopped", "silent": "Silent (presumed dead)"}
        return format_html(
            '<span class="durable-liveness durable-liveness-{}">{}</span>', state, labels[state]
        )

    @admin.display(description="executions")
    def executions_link(self, obj: Worker) -> SafeString:
        """The executions this worker is running (its executor id is the worker id)."""
        url = reverse(
            f"{self.admin_site.name}:{TaskExecution._meta.app_label}_"
            f"{TaskExecution._meta.model_name}_changelist"
        )
        query = urlencode({"executor_id": obj.worker_id, "status__exact": Status.RUNNING})
        return format_html('<a href="{}?{}">running</a>', url, query)

    @admin.display(description="queues")
    def queue_list(self, obj: Worker) -> str:
        queues = obj.queues
        if isinstance(queues, list | tuple):
            return ", ".join(str(queue) for queue in queues) or "all"
        return str(queues)
