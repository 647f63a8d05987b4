"""Building new execution rows, and the snapshot of an execution handed to callers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .errors import DurableExecutionError, StoredError
from .models import FINISHED_STATUSES, Status, TaskExecution, generate_execution_id
from .results import ExecutionRef, ParentRef
from .serialization import deserialize
from .tasks import RetryOptions, Task, TaskKind, is_valid_priority


def validate_sleeping_unique_id(task: Task, value: Any) -> str:
    """The unique id a sleeping task is woken by, validated (seed-spec §3.5)."""
    if value is None:
        raise DurableExecutionError(
            "A unique id string is required to enqueue a sleeping task "
            f"[taskId={task.id}] [input=undefined]"
        )
    if not isinstance(value, str):
        raise DurableExecutionError(
            "Input must be a unique id string for sleeping task "
            f"[taskId={task.id}] [input={type(value).__name__}]"
        )
    if not value:
        raise DurableExecutionError(
            f"A non-empty unique id string is required for sleeping task [taskId={task.id}]"
        )
    if len(value) > 255:
        raise DurableExecutionError(
            "The unique id string must be shorter than 256 characters for sleeping task "
            f"[taskId={task.id}] [inputLength={len(value)}]"
        )
    return value


_ROW_FIELDS = TaskExecution._meta.concrete_fields
_ROW_INDEX = {field.attname: index for index, field in enumerate(_ROW_FIELDS)}
#: A new row's values in field order: the constant defaults (callable ones are filled per row).
_ROW_TEMPLATE = [
    field.default if field.has_default() and not callable(field.default) else None
    for field in _ROW_FIELDS
]
_ROW_CALLABLE_DEFAULTS = [
    (index, field)
    for index, field in enumerate(_ROW_FIELDS)
    if field.has_default() and callable(field.default)
]


def _new_row(**values: Any) -> TaskExecution:
    """``TaskExecution(**values)`` built from positional arguments: a quarter of the cost of
    keyword arguments, on the path of every enqueue and every spawned child."""
    row = list(_ROW_TEMPLATE)
    for index, field in _ROW_CALLABLE_DEFAULTS:
        if field.attname not in values:
            row[index] = field.get_default()
    for name, value in values.items():
        row[_ROW_INDEX[name]] = value
    return TaskExecution(*row)  # type: ignore[misc]  # django-stubs types only keywords


def build_execution(
    task: Task,
    *,
    now: datetime,
    input: str,
    timeout: float,
    retry: RetryOptions,
    sleep_before_run: float,
    sleeping_task_unique_id: str | None = None,
    root: ExecutionRef | None = None,
    parent: ParentRef | None = None,
    queue: str | None = None,
    priority: int | None = None,
    idempotency_key: str | None = None,
    concurrency_key: str | None = None,
    execution_id: str | None = None,
) -> TaskExecution:
    """An unsaved row for a new execution of ``task`` (seed-spec §7 initial values)."""
    if queue is not None and (not isinstance(queue, str) or not queue or len(queue) > 64):
        raise DurableExecutionError(
            f"queue must be a non-empty string of at most 64 characters [taskId={task.id}]"
        )
    if priority is not None and not is_valid_priority(priority):
        raise DurableExecutionError(
            f"priority must be an integer between -2**31 and 2**31 - 1 [taskId={task.id}]"
        )
    row = _new_row(
        execution_id=execution_id or generate_execution_id(),
        task_id=task.id,
        retry_options=retry.to_dict(),
        sleep_before_run=sleep_before_run,
        timeout=timeout,
        are_children_sequential=task.kind == TaskKind.SEQUENTIAL_TASKS,
        input=input,
        start_at=now + timedelta(seconds=sleep_before_run),
        created_at=now,
        updated_at=now,
        queue=queue or task.queue,
        priority=task.priority if priority is None else priority,
        idempotency_key=idempotency_key,
        concurrency_key=concurrency_key,
        max_concurrency=task.max_concurrency if concurrency_key is not None else None,
    )
    if root is not None:
        row.root_task_id = root.task_id
        row.root_execution_id = root.execution_id
    if parent is not None:
        row.parent_task_id = parent.task_id
        row.parent_execution_id = parent.execution_id
        row.index_in_parent_children = parent.index_in_parent_children
        row.is_only_child_of_parent = parent.is_only_child_of_parent
        row.is_finalize_of_parent = parent.is_finalize_of_parent
    if task.kind == TaskKind.SLEEPING_TASK:
        # Sleeping tasks are never claimed: they wait, running, for a wake-up or their expiry.
        row.is_sleeping_task = True
        row.sleeping_task_unique_id = sleeping_task_unique_id
        row.status = Status.RUNNING
        row.started_at = now
        row.expires_at = now + timedelta(seconds=sleep_before_run + timeout)
    return row


def root_of(row: TaskExecution) -> ExecutionRef:
    """The root of ``row``'s descendants: its own root, or itself when top-level."""
    if row.root_execution_id and row.root_task_id:
        return ExecutionRef(row.root_task_id, row.root_execution_id)
    return ExecutionRef(row.task_id, row.execution_id)


def row_root(row: TaskExecution) -> ExecutionRef | None:
    if row.root_execution_id and row.root_task_id:
        return ExecutionRef(row.root_task_id, row.root_execution_id)
    return None


def row_parent(row: TaskExecution) -> ParentRef | None:
    if row.parent_execution_id and row.parent_task_id:
        return ParentRef(
            row.parent_task_id,
            row.parent_execution_id,
            row.index_in_parent_children,
            row.is_only_child_of_parent,
            row.is_finalize_of_parent,
        )
    return None


@dataclass(frozen=True, slots=True)
class ExecutionSnapshot:
    """An execution as callers see it (seed-spec §27): values deserialized, times as datetimes.

    Fields that do not apply to the status are ``None`` (``output`` unless completed,
    ``error`` unless failed/retrying, ...).
    """

    task_id: str
    execution_id: str
    status: Status
    input: Any
    output: Any
    error: StoredError | None
    retry_attempts: int
    root: ExecutionRef | None
    parent: ParentRef | None
    sleeping_task_unique_id: str | None
    are_children_sequential: bool
    retry_options: RetryOptions
    sleep_before_run: float
    timeout: float
    executor_id: str | None
    start_at: datetime
    started_at: datetime | None
    expires_at: datetime | None
    waiting_for_children_started_at: datetime | None
    waiting_for_finalize_started_at: datetime | None
    finished_at: datetime | None
    children: list[ExecutionRef]
    active_children_count: int
    finalize: ExecutionRef | None
    queue: str
    priority: int
    created_at: datetime
    updated_at: datetime

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def is_completed(self) -> bool:
        return self.status == Status.COMPLETED

    @classmethod
    def from_row(cls, row: TaskExecution) -> ExecutionSnapshot:
        try:
            status = Status(row.status)
        except ValueError:
            raise DurableExecutionError(
                f"Invalid task execution status [status={row.status}]"
            ) from None
        output = None
        if status == Status.COMPLETED and row.output is not None:
            output = deserialize(row.output)
        input_value = deserialize(row.input) if row.input else None
        if row.is_sleeping_task:
            input_value = row.sleeping_task_unique_id
        return cls(
            task_id=row.task_id,
            execution_id=row.execution_id,
            status=status,
            input=input_value,
            output=output,
            error=StoredError.from_dict(row.error) if row.error else None,
            retry_attempts=row.retry_attempts,
            root=row_root(row),
            parent=row_parent(row),
            sleeping_task_unique_id=row.sleeping_task_unique_id,
            are_children_sequential=row.are_children_sequential,
            retry_options=RetryOptions.from_dict(row.retry_options),
            sleep_before_run=row.sleep_before_run,
            timeout=row.timeout,
            executor_id=row.executor_id,
            start_at=row.start_at,
            started_at=row.started_at,
            expires_at=row.expires_at,
            waiting_for_children_started_at=row.waiting_for_children_started_at,
            waiting_for_finalize_started_at=row.waiting_for_finalize_started_at,
            finished_at=row.finished_at,
            children=[ExecutionRef(c["task_id"], c["execution_id"]) for c in row.children or ()],
            active_children_count=row.active_children_count,
            finalize=(
                ExecutionRef(row.finalize["task_id"], row.finalize["execution_id"])
                if row.finalize
                else None
            ),
            queue=row.queue,
            priority=row.priority,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
