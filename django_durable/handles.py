"""Enqueueing executions, handles on them (inspect, wait, cancel) and waking sleeping tasks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import (
    DatabaseError,
    IntegrityError,
    close_old_connections,
    connections,
    transaction,
)
from django.utils import timezone

from . import dispatch, tracing, wakeups
from .conf import durable_settings
from .errors import (
    DurableExecutionCancelledError,
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutionTimedOutError,
    convert_error,
)
from .executions import ExecutionSnapshot, build_execution, validate_sleeping_unique_id
from .models import Status, TaskExecution
from .serialization import serialize
from .storage import get_storage
from .tasks import RetryOptions, Task, TaskKind, coerce_retry, get_task, registry, to_seconds

__all__ = ["TaskHandle", "enqueue", "enqueue_many", "get_handle", "wakeup_sleeping_task"]

T = TypeVar("T")

#: How often ``wait()`` re-reads the row when no in-process event wakes it first.
WAIT_MAX_POLL_INTERVAL = 0.25


def _registered(task: Task | str) -> Task:
    task_id = task.id if isinstance(task, Task) else task
    found = registry.get(task_id)
    if found is None:
        raise DurableExecutionNotFoundError(f"Task not found [taskId={task_id}]")
    return found


@tracing.traced_enqueue
def enqueue(
    task: Task | str,
    input: Any = None,
    *,
    timeout: Any = None,
    retry: Any = None,
    sleep_before_run: Any = None,
    queue: str | None = None,
    priority: int | None = None,
    idempotency_key: str | None = None,
) -> TaskHandle:
    """Store a new execution of ``task`` with ``input``; see :meth:`Task.enqueue`."""
    task = _registered(task)
    unique_id = None
    if task.kind == TaskKind.SLEEPING_TASK:
        unique_id = validate_sleeping_unique_id(task, input)
        input = None
    effective_timeout, effective_retry, effective_sleep = _options(
        task, timeout, retry, sleep_before_run
    )
    if task.kind != TaskKind.SLEEPING_TASK:
        task.validate_input(input)
    input_text = serialize(input, max_size=durable_settings.MAX_INPUT_SIZE, label="input")
    concurrency_key = concurrency_key_of(task, input)
    if idempotency_key is not None:
        if (
            not isinstance(idempotency_key, str)
            or not idempotency_key
            or len(idempotency_key) > 255
        ):
            raise DurableExecutionError(
                f"idempotency_key must be a non-empty string of at most 255 characters "
                f"[taskId={task.id}]"
            )
        existing = _find_idempotent(task.id, idempotency_key)
        if existing is not None:
            return TaskHandle(task.id, existing)
    row = build_execution(
        task,
        now=timezone.now(),
        input=input_text,
        timeout=effective_timeout,
        retry=effective_retry,
        sleep_before_run=effective_sleep,
        sleeping_task_unique_id=unique_id,
        queue=queue,
        priority=priority,
        idempotency_key=idempotency_key,
        concurrency_key=concurrency_key,
    )
    try:
        insert_executions([row])
    except IntegrityError as error:
        if idempotency_key is not None:
            existing = _find_idempotent(task.id, idempotency_key)
            if existing is not None:
                return TaskHandle(task.id, existing)
        if unique_id is not None:
            raise DurableExecutionError(
                f"A sleeping task execution with this unique id already exists "
                f"[taskId={task.id}] [sleepingTaskUniqueId={unique_id}]"
            ) from error
        raise convert_error(error, is_retryable=False) from error
    return TaskHandle(task.id, row.execution_id)


@tracing.traced_enqueue
def enqueue_many(
    task: Task | str,
    inputs: Iterable[Any],
    *,
    timeout: Any = None,
    retry: Any = None,
    sleep_before_run: Any = None,
    queue: str | None = None,
    priority: int | None = None,
) -> list[TaskHandle]:
    """Store one execution of ``task`` per input in one statement; return their handles.

    Every input is validated and serialized first: if one is invalid nothing is stored.
    """
    task = _registered(task)
    if task.kind == TaskKind.SLEEPING_TASK:
        return [
            enqueue(task, unique_id, timeout=timeout, queue=queue, priority=priority)
            for unique_id in inputs
        ]
    effective_timeout, effective_retry, effective_sleep = _options(
        task, timeout, retry, sleep_before_run
    )
    now = timezone.now()
    rows = []
    for value in inputs:
        task.validate_input(value)
        rows.append(
            build_execution(
                task,
                now=now,
                input=serialize(value, max_size=durable_settings.MAX_INPUT_SIZE, label="input"),
                timeout=effective_timeout,
                retry=effective_retry,
                sleep_before_run=effective_sleep,
                queue=queue,
                priority=priority,
                concurrency_key=concurrency_key_of(task, value),
            )
        )
    insert_executions(rows)
    return [TaskHandle(task.id, row.execution_id) for row in rows]


def _options(
    task: Task, timeout: Any, retry: Any, sleep_before_run: Any
) -> tuple[float, RetryOptions, float]:
    """The task's options with the enqueue-time overrides that were given, validated."""
    return (
        task.timeout
        if timeout is None
        else to_seconds(timeout, "timeout", task.id, allow_zero=False),
        task.retry if retry is None else coerce_retry(retry, task.id),
        task.sleep_before_run
        if sleep_before_run is None
        else to_seconds(sleep_before_run, "sleep before run", task.id),
    )


def concurrency_key_of(task: Task, input: Any) -> str | None:
    """The concurrency key of an execution of ``task`` with ``input`` (``None`` if none)."""
    if task.concurrency_key is None:
        return None
    try:
        return str(task.concurrency_key(input))
    except Exception as error:
        raise DurableExecutionError(
            f"Could not compute the concurrency key of task {task.id}: {error}"
        ) from error


def _find_idempotent(task_id: str, key: str) -> str | None:
    return (
        TaskExecution.objects.filter(task_id=task_id, idempotency_key=key)
        .values_list("execution_id", flat=True)
        .first()
    )


def insert_executions(rows: list[TaskExecution]) -> None:
    """Insert new executions and wake the workers (on commit, inside ``atomic()``).

    Inside the caller's transaction the rows commit (or roll back) with it, and so does the
    wake-up of other processes where the insert carries it (PostgreSQL). Outside one, database
    errors other than integrity errors become :class:`DurableExecutionError`.
    """
    if not rows:
        return
    in_transaction = connections["default"].in_atomic_block
    try:
        announced = get_storage().insert_many(rows, announce=True)
    except IntegrityError:
        raise
    except DatabaseError as error:
        if in_transaction:
            raise  # the caller's transaction is broken: its own error says so
        raise convert_error(error) from error
    queue = wakeups.one_queue(row.queue for row in rows)
    if in_transaction:
        # Transactional enqueue: the rows are part of the caller's transaction.
        transaction.on_commit(lambda: _wake_workers(announced, queue))
    else:
        _wake_workers(announced, queue)
    dispatch.rows_ready(rows)


def _wake_workers(announced: bool, queue: str | None) -> None:
    """Wake this process's executors, and other processes' unless the insert told them."""
    if announced:
        wakeups.notify_local(wakeups.READY, queue)
    else:
        wakeups.notify(wakeups.READY)


def get_handle(task: Task | str, execution_id: str | None = None) -> TaskHandle:
    """A handle on an existing execution.

    ``get_handle(task, execution_id)`` checks that the execution belongs to ``task``;
    ``get_handle(execution_id)`` finds the task from the row. Unknown ids raise
    :class:`DurableExecutionNotFoundError`.
    """
    if execution_id is None:
        if isinstance(task, Task):
            raise TypeError("get_handle(task, execution_id) needs an execution id")
        execution_id, task_id = task, None
    else:
        task_id = _registered(task).id
    row = get_storage().get_by_id(execution_id)
    if row is None:
        raise DurableExecutionNotFoundError(
            f"Task execution not found [executionId={execution_id}]"
        )
    if task_id is not None and row.task_id != task_id:
        raise DurableExecutionNotFoundError(
            "Task execution belongs to another task "
            f"[providedTaskId={task_id}] [taskId={row.task_id}] [executionId={execution_id}]"
        )
    return TaskHandle(row.task_id, execution_id)


def cancel_execution(execution_id: str) -> bool:
    """Cancel an unfinished execution; return whether it was cancelled by this call."""
    error = DurableExecutionCancelledError().to_dict()
    # No lease: a parent this finishes is left for any executor's children sweeper (woken
    # below), since this process may run no executor.
    result = get_storage().settle_by_id(
        timezone.now(),
        execution_id,
        {"status": Status.CANCELLED, "error": dict(error), "needs_promise_cancellation": True},
        {"is_finished": False},
    )
    if result.updated:
        wakeups.notify(wakeups.CANCEL)
        if result.needs_close:
            wakeups.notify(wakeups.CLOSE)
        wakeups.notify(wakeups.CHILDREN)
        wakeups.notify_finished()
    return result.updated


def _to_async(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """``function`` on Django's thread-sensitive executor, releasing its connection after:
    outside a request nothing else would close it."""

    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(call, thread_sensitive=True)


class TaskHandle:
    """A handle on one execution: inspect it, wait for it to finish, or cancel it."""

    __slots__ = ("execution_id", "task_id")

    def __init__(self, task_id: str, execution_id: str) -> None:
        self.task_id = task_id
        self.execution_id = execution_id

    def __repr__(self) -> str:
        return f"<TaskHandle {self.task_id} {self.execution_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other.execution_id == self.execution_id

    def __hash__(self) -> int:
        return hash(self.execution_id)

    def get_execution(self) -> ExecutionSnapshot:
        """The execution now; :class:`DurableExecutionNotFoundError` if it no longer exists."""
        try:
            row = get_storage().get_by_id(self.execution_id)
        except DatabaseError as error:
            raise convert_error(error) from error
        if row is None:
            raise DurableExecutionNotFoundError(
                f"Task execution not found [executionId={self.execution_id}]"
            )
        return ExecutionSnapshot.from_row(row)

    def wait(
        self, timeout: float | timedelta | None = None, *, poll_interval: float | None = None
    ) -> ExecutionSnapshot:
        """Block until the execution finished and return it.

        Raises :class:`DurableExecutionTimedOutError` (a ``TimeoutError``) if ``timeout``
        seconds pass first. Finishes recorded in this process wake the wait at once; others
        are seen by polling (every ``poll_interval``, at most 0.25 s by default).
        """
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        deadline = None if timeout is None else time.monotonic() + timeout
        max_interval = poll_interval or WAIT_MAX_POLL_INTERVAL
        interval = min(0.005, max_interval)
        while True:
            generation = wakeups.finished_generation()
            snapshot = self.get_execution()
            if snapshot.is_finished:
                return snapshot
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DurableExecutionTimedOutError(
                    f"Task execution did not finish within {timeout} seconds "
                    f"[executionId={self.execution_id}] [status={snapshot.status}]"
                )
            sleep = interval if remaining is None else min(interval, remaining)
            wakeups.wait_for_finished(generation, sleep)
            interval = min(interval * 2, max_interval)

    def cancel(self) -> None:
        """Cancel the execution (and, through it, its children); no-op once finished."""
        cancel_execution(self.execution_id)

    async def aget_execution(self) -> ExecutionSnapshot:
        """Async twin of :meth:`get_execution`."""
        return await _to_async(self.get_execution)()

    async def await_finished(
        self, timeout: float | timedelta | None = None, *, poll_interval: float | None = None
    ) -> ExecutionSnapshot:
        """Async twin of :meth:`wait`: polls without holding a thread between reads."""
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        max_interval = poll_interval or WAIT_MAX_POLL_INTERVAL
        interval = min(0.005, max_interval)
        while True:
            snapshot = await self.aget_execution()
            if snapshot.is_finished:
                return snapshot
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise DurableExecutionTimedOutError(
                    f"Task execution did not finish within {timeout} seconds "
                    f"[executionId={self.execution_id}] [status={snapshot.status}]"
                )
            await asyncio.sleep(interval if remaining is None else min(interval, remaining))
            interval = min(interval * 2, max_interval)

    async def acancel(self) -> None:
        """Async twin of :meth:`cancel`."""
        await _to_async(self.cancel)()


def wakeup_sleeping_task(
    task: Task | str,
    unique_id: str,
    *,
    status: str = "completed",
    output: Any = None,
    error: Any = None,
) -> ExecutionSnapshot:
    """Finish the sleeping execution woken by ``unique_id`` with ``output`` or ``error``.

    Returns the finished execution; if it had already finished (woken, timed out,
    cancelled) that execution is returned unchanged.
    """
    task = get_task(task)
    if task.kind != TaskKind.SLEEPING_TASK:
        raise DurableExecutionError(f"Task is not a sleeping task [taskId={task.id}]")
    storage = get_storage()
    row = storage.get_by_sleeping_task_unique_id(unique_id)
    if row is None:
        raise DurableExecutionNotFoundError(
            f"Sleeping task execution not found [sleepingTaskUniqueId={unique_id}]"
        )
    if row.task_id != task.id:
        raise DurableExecutionNotFoundError(
            "Sleeping task execution belongs to another task "
            f"[providedTaskId={task.id}] [sleepingTaskId={row.task_id}] "
            f"[sleepingTaskUniqueId={unique_id}]"
        )
    if row.is_finished:
        return ExecutionSnapshot.from_row(row)
    update: dict[str, Any]
    if status == Status.COMPLETED:
        update = {
            "status": Status.COMPLETED,
            "output": serialize(output, max_size=durable_settings.MAX_OUTPUT_SIZE, label="output"),
        }
    elif status == Status.FAILED:
        message = error.message if isinstance(error, DurableExecutionError) else error
        if isinstance(error, BaseException) and not isinstance(error, DurableExecutionError):
            message = str(error)
        if isinstance(error, dict):
            message = error.get("message")
        update = {
            "status": Status.FAILED,
            "error": dict(DurableExecutionError(str(message or "Unknown error")).to_dict()),
        }
    else:
        raise DurableExecutionError(
            "Invalid status for sleeping task execution "
            f"[executionId={row.execution_id}] [status={status}]"
        )
    result = storage.settle_by_id(
        timezone.now(), row.execution_id, update, {"is_sleeping_task": True, "is_finished": False}
    )
    if result.updated and row.parent_execution_id:
        wakeups.notify(wakeups.CHILDREN)
    if result.needs_close:
        wakeups.notify(wakeups.CLOSE)
    wakeups.notify_finished()
    finished = storage.get_by_id(row.execution_id)
    if finished is None or not finished.is_finished:
        raise DurableExecutionError(
            f"Task execution is not a sleeping task execution [executionId={row.execution_id}]"
        )
    return ExecutionSnapshot.from_row(finished)


async def awakeup_sleeping_task(
    task: Task | str, unique_id: str, **options: Any
) -> ExecutionSnapshot:
    """Async twin of :func:`wakeup_sleeping_task`."""
    return await _to_async(wakeup_sleeping_task)(task, unique_id, **options)
