"""Operator actions shared by the admin, the API and the commands: retrying a failed execution
as a new one."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError
from django.utils import timezone

from .errors import DurableExecutionError, DurableExecutionNotFoundError
from .executions import build_execution
from .handles import insert_executions
from .models import ERRORED_STATUSES, TaskExecution
from .storage import get_storage
from .tasks import RetryOptions, TaskKind, registry

__all__ = ["RetryConflictError", "RetryResult", "retry_execution", "retry_idempotency_key"]


class RetryConflictError(DurableExecutionError):
    """The execution cannot be retried: it is not finished with an error, it is a child, or
    its task is a sleeping task or no longer registered."""


@dataclass(frozen=True, slots=True)
class RetryResult:
    """The new execution (or the one an earlier retry of the same execution created)."""

    row: TaskExecution
    created: bool


def retry_idempotency_key(execution_id: str) -> str:
    """The idempotency key of the retry of ``execution_id``: a second retry returns the first."""
    return f"retry:{execution_id}"


def retry_execution(execution_id: str) -> RetryResult:
    """Enqueue a new execution of a failed top-level execution's task with the same input.

    The stored input text is copied verbatim; timeout, retry options, queue, priority and
    concurrency key are those of the old execution; it runs at once. The new row has
    ``retried_from_execution_id`` set and the idempotency key ``retry:<execution_id>``, so
    retrying the same execution again returns the same new execution (``created`` False).
    Raises :class:`DurableExecutionNotFoundError` for an unknown id and
    :class:`RetryConflictError` when the execution cannot be retried.
    """
    storage = get_storage()
    old = storage.get_by_id(execution_id)
    if old is None:
        raise DurableExecutionNotFoundError(
            f"Task execution not found [executionId={execution_id}]"
        )
    if old.status not in ERRORED_STATUSES:
        raise RetryConflictError(
            f"Only a failed, timed out, finalize failed or cancelled execution can be retried; "
            f"this one is {old.status} [executionId={execution_id}]"
        )
    if old.parent_execution_id:
        raise RetryConflictError(
            "Only top-level executions can be retried; retry its root "
            f"{old.root_execution_id or old.parent_execution_id} instead "
            f"[executionId={execution_id}]"
        )
    task = registry.get(old.task_id)
    if task is None:
        raise RetryConflictError(
            f"Task {old.task_id} is no longer registered, so its execution cannot be retried "
            f"[executionId={execution_id}]"
        )
    if task.kind == TaskKind.SLEEPING_TASK:
        raise RetryConflictError(
            "A sleeping task execution cannot be retried (its unique id is taken): enqueue a new "
            f"one with a new unique id [executionId={execution_id}]"
        )
    key = retry_idempotency_key(execution_id)
    existing = _find(task.id, key)
    if existing is not None:
        return RetryResult(existing, created=False)
    row = build_execution(
        task,
        now=timezone.now(),
        input=old.input,
        timeout=old.timeout,
        retry=RetryOptions.from_dict(old.retry_options),
        sleep_before_run=0.0,
        queue=old.queue,
        priority=old.priority,
        idempotency_key=key,
        concurrency_key=old.concurrency_key,
    )
    row.retried_from_execution_id = old.execution_id
    try:
        insert_executions([row])
    except IntegrityError:
        existing = _find(task.id, key)
        if existing is None:
            raise
        return RetryResult(existing, created=False)
    return RetryResult(row, created=True)


def _find(task_id: str, key: str) -> TaskExecution | None:
    return TaskExecution.objects.filter(task_id=task_id, idempotency_key=key).first()
