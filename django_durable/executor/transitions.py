"""The engine's writes: what happens after a run, when children finish, and when closing.

:class:`Transitions` turns outcomes into storage operations, following seed-spec §3, §5, §11
and §12: recording an attempt's success or failure (with the retry decision), spawning
children and finalize executions, processing a parent whose children all finished (including
the next step of a sequence), and closing finished executions. The executor and the sweepers
share it; it never runs task code except finalize *functions*.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db import InterfaceError, OperationalError
from django.utils import timezone

from .. import dispatch, wakeups
from ..conf import DurableSettingsSnapshot
from ..errors import (
    DurableExecutionCancelledError,
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutionTimedOutError,
    convert_error,
)
from ..executions import build_execution, root_of, validate_sleeping_unique_id
from ..handles import concurrency_key_of
from ..models import ChildrenProcessingStatus, CloseStatus, Status, TaskExecution
from ..results import ChildSpec, ParentRef, ParentResult, ParentRunResult
from ..serialization import deserialize, serialize
from ..storage.base import Filters, SettleResult, Update
from ..storage.layer import StorageLayer
from ..tasks import RetryOptions, Task, TaskKind, coerce_retry, registry, to_seconds

logger = logging.getLogger("django_durable.executor")

DUMMY_EXECUTION_ID = "dummy"
#: How long the result of an attempt is retried while the database is unreachable.
RECORD_RETRY_SECONDS = 120.0
_RUNNING: Filters = {"status": Status.RUNNING}


def _owned(row: TaskExecution) -> Filters:
    """Precondition of an attempt's writes: still running, and still this attempt's.

    A row handed back (shutdown, a worker taken for dead) and claimed again belongs to the new
    claimer: the late result of the old attempt must not settle it.
    """
    if row.executor_id:
        return {"status": Status.RUNNING, "executor_id": row.executor_id}
    return _RUNNING


_WAITING_FOR_CHILDREN: Filters = {"status": Status.WAITING_FOR_CHILDREN}


@dataclass(slots=True)
class Success:
    """An attempt returned ``value``."""

    value: Any


@dataclass(slots=True)
class Failure:
    """An attempt (or the handling of its result) raised ``error``."""

    error: BaseException


Outcome = Success | Failure


class LocalRunner(Protocol):
    """An executor that may run a new execution itself, without claiming it."""

    executor_id: str

    def reserve(self, row: TaskExecution) -> bool:
        """Reserve capacity for ``row`` if this executor can run it now."""

    def start(self, row: TaskExecution) -> None:
        """Run ``row`` (inserted ``running`` for this executor); uses the reservation."""

    def release(self) -> None:
        """Give back a reservation that will not be used."""


def _call_maybe_async(function: Callable[..., Any], *args: Any) -> Any:
    result = function(*args)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _child_record(row: TaskExecution) -> dict[str, Any]:
    record: dict[str, Any] = {
        "task_id": row.task_id,
        "execution_id": row.execution_id,
        "status": row.status,
    }
    if row.status == Status.COMPLETED:
        record["output"] = deserialize(row.output) if row.output is not None else None
    else:
        record["error"] = dict(
            row.error
            or DurableExecutionError(
                f"Unknown child task execution error [childTaskId={row.task_id}]"
            ).to_dict()
        )
    return record


def _coerce_parent_result(value: Any) -> ParentResult:
    if isinstance(value, ParentResult):
        return value
    if isinstance(value, Mapping) and value.keys() <= {"output", "children"} and value:
        return ParentResult(output=value.get("output"), children=list(value.get("children") or []))
    return ParentResult(output=value, children=[])


def _coerce_child_spec(value: Any) -> ChildSpec:
    if isinstance(value, ChildSpec):
        return value
    if isinstance(value, Task):
        return ChildSpec(value)
    if isinstance(value, Mapping) and "task" in value:
        options = value.get("options") or {}
        return ChildSpec(
            value["task"],
            value.get("input"),
            options.get("timeout"),
            options.get("retry"),
            options.get("sleep_before_run"),
        )
    raise DurableExecutionError(
        f"A child must be made with child(task, input), got {type(value).__name__}"
    )


class Transitions:
    """The engine's state transitions over a :class:`StorageLayer`."""

    def __init__(
        self,
        storage: StorageLayer,
        config: DurableSettingsSnapshot,
        *,
        on_parents_claimed: Callable[[list[TaskExecution], TaskExecution | None], None],
        on_retry_scheduled: Callable[[float], None] | None = None,
        local_runner: LocalRunner | None = None,
    ) -> None:
        self.storage = storage
        self.config = config
        self._on_parents_claimed = on_parents_claimed
        self._on_retry_scheduled = on_retry_scheduled
        self._local = local_runner

    # -- helpers -------------------------------------------------------------------------

    def _lease(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.config.lease_duration + self.config.expire_leeway)

    def _serialize_output(self, value: Any) -> str:
        return serialize(value, max_size=self.config.max_output_size, label="output")

    def _serialize_input(self, value: Any) -> str:
        return serialize(value, max_size=self.config.max_input_size, label="input")

    def settle(
        self,
        execution_id: str,
        update: Update,
        filters: Filters | None = None,
        *,
        top_level: bool = False,
    ) -> SettleResult:
        """Write ``update``; if it finishes the row, settle its family, then follow up.

        ``top_level``: the row is known to have no parent (its family needs no transaction).
        """
        now = timezone.now()
        result = self.storage.settle_by_id(
            now, execution_id, update, filters, self._lease(now), top_level=top_level
        )
        self.after_settle(result)
        return result

    def after_settle(self, result: SettleResult) -> None:
        if not result.updated:
            return
        wakeups.notify_finished()
        if result.needs_close:
            wakeups.notify(wakeups.CLOSE)
        if result.parents_to_process:
            self._on_parents_claimed(result.parents_to_process, result.finished_row)

    # -- attempts ----------------------------------------------------------------------------

    def record_outcome(self, row: TaskExecution, task: Task | None, outcome: Outcome) -> None:
        """Record the end of an attempt of ``row`` (claimed, ``running``).

        While the database is unreachable (a restart, a failover) the write is tried again with
        backoff for up to ``RECORD_RETRY_SECONDS``: a result is not given up lightly. Every
        write filters on ``status = running``, so a write that did commit before the
        connection broke makes the repeated one a no-op.
        """
        deadline = time.monotonic() + RECORD_RETRY_SECONDS
        delay = 0.05
        while True:
            try:
                self._record_outcome(row, task, outcome)
                return
            except (OperationalError, InterfaceError) as error:
                if time.monotonic() >= deadline:
                    logger.error(
                        "event=record_failed execution=%s error=%r: it stays running until it "
                        "expires",
                        row.execution_id,
                        str(error),
                    )
                    return
                logger.warning(
                    "event=record_retry execution=%s delay=%.2f error=%r",
                    row.execution_id,
                    delay,
                    str(error),
                )
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _record_outcome(self, row: TaskExecution, task: Task | None, outcome: Outcome) -> None:
        try:
            if isinstance(outcome, Success):
                assert task is not None
                try:
                    self._record_success(row, task, outcome.value)
                except (OperationalError, InterfaceError):
                    raise
                except Exception as error:
                    self.record_failure(row, error)
            else:
                self.record_failure(row, outcome.error)
        except (OperationalError, InterfaceError):
            raise
        except Exception as error:
            logger.exception("Recording the result of %s failed", row.execution_id)
            try:
                final = convert_error(
                    error,
                    prefix=f"Error in running task execution [executionId={row.execution_id}]",
                    is_retryable=False,
                )
                self.settle(
                    row.execution_id,
                    {"status": Status.FAILED, "error": dict(final.to_dict())},
                    _owned(row),
                )
            except Exception:
                logger.exception(
                    "Could not record %s: it stays running until it expires", row.execution_id
                )

    def record_failure(self, row: TaskExecution, raw_error: BaseException) -> None:
        """The retry decision of seed-spec §5 for a failed attempt."""
        error = convert_error(raw_error)
        retry = RetryOptions.from_dict(row.retry_options)
        stored = dict(error.to_dict())
        if error.is_retryable and row.retry_attempts < retry.max_retries:
            delay = retry.delay(row.retry_attempts)
            now = timezone.now()
            start_at = now + timedelta(seconds=delay)
            self.storage.update_by_id(
                now,
                row.execution_id,
                {
                    "status": Status.READY,
                    "error": stored,
                    "retry_attempts": row.retry_attempts + 1,
                    "start_at": start_at,
                },
                _owned(row),
                row,
            )
            logger.info(
                "event=retrying task=%s execution=%s delay=%.3f attempt=%d error=%r",
                row.task_id,
                row.execution_id,
                delay,
                row.retry_attempts + 1,
                error.message,
            )
            if self._on_retry_scheduled is not None:
                self._on_retry_scheduled(delay)
            wakeups.notify(wakeups.READY, row.queue)
            dispatch.ready([(row.execution_id, start_at)])
            return
        if isinstance(raw_error, DurableExecutionTimedOutError):
            status = Status.TIMED_OUT
        elif isinstance(raw_error, DurableExecutionCancelledError):
            status = Status.CANCELLED
        else:
            status = Status.FAILED
        logger.info(
            "event=%s task=%s execution=%s error=%r",
            status,
            row.task_id,
            row.execution_id,
            error.message,
        )
        self.settle(
            row.execution_id,
            {"status": status, "error": stored},
            _owned(row),
            top_level=row.parent_execution_id is None,
        )

    def _record_success(self, row: TaskExecution, task: Task, value: Any) -> None:
        if task.kind == TaskKind.TASK:
            self.settle(
                row.execution_id,
                {"status": Status.COMPLETED, "output": self._serialize_output(value)},
                _owned(row),
                top_level=row.parent_execution_id is None,
            )
            logger.debug("event=completed task=%s execution=%s", row.task_id, row.execution_id)
            return
        self._record_parent_run(row, task, _coerce_parent_result(value))

    def _record_parent_run(self, row: TaskExecution, task: Task, result: ParentResult) -> None:
        specs = [_coerce_child_spec(spec) for spec in result.children or ()]
        maximum = self.config.max_children_per_execution
        if len(specs) > maximum:
            raise DurableExecutionError(
                "Parent task tried to spawn more than max children tasks "
                f"[taskId={task.id}] [attempted={len(specs)}] [max={maximum}]"
            )
        now = timezone.now()
        if not specs:
            self._finish_parent_without_children(row, task, result.output, now)
            return
        run_output = self._serialize_output(result.output)
        sequential = task.kind == TaskKind.SEQUENTIAL_TASKS
        rows: list[TaskExecution] = []
        summaries: list[dict[str, str]] = []
        for index, spec in enumerate(specs):
            child_task = registry.get(spec.task.id if isinstance(spec.task, Task) else spec.task)
            if child_task is None:
                raise DurableExecutionNotFoundError(
                    f"Child task not found [taskId={getattr(spec.task, 'id', spec.task)}]"
                )
            if sequential and index > 0:
                summaries.append({"task_id": child_task.id, "execution_id": DUMMY_EXECUTION_ID})
                continue
            child_row = self._build_child(
                row, child_task, spec, index, len(specs), now, input_value=spec.input
            )
            rows.append(child_row)
            summaries.append({"task_id": child_task.id, "execution_id": child_row.execution_id})
        self.storage.update_by_id_and_insert_children(
            now,
            row.execution_id,
            {
                "status": Status.WAITING_FOR_CHILDREN,
                "run_output": run_output,
                "children": summaries,
                "active_children_count": len(rows),
            },
            rows,
            _owned(row),
            row,
        )
        wakeups.notify(wakeups.READY, wakeups.one_queue(row.queue for row in rows))
        dispatch.rows_ready(rows)

    def _build_child(
        self,
        parent: TaskExecution,
        task: Task,
        spec: ChildSpec,
        index: int,
        count: int,
        now: datetime,
        *,
        input_value: Any = None,
        input_text: str | None = None,
    ) -> TaskExecution:
        timeout = (
            task.timeout if spec.timeout is None else to_seconds(spec.timeout, "timeout", task.id)
        )
        retry = task.retry if spec.retry is None else coerce_retry(spec.retry, task.id)
        sleep = (
            task.sleep_before_run
            if spec.sleep_before_run is None
            else to_seconds(spec.sleep_before_run, "sleep before run", task.id)
        )
        unique_id = None
        if task.kind == TaskKind.SLEEPING_TASK:
            if input_text is not None:
                input_value = deserialize(input_text)
            unique_id = validate_sleeping_unique_id(task, input_value)
            input_text = self._serialize_input(None)
        elif input_text is None:
            task.validate_input(input_value)
            input_text = self._serialize_input(input_value)
        concurrency_key = None
        if task.concurrency_key is not None and task.kind != TaskKind.SLEEPING_TASK:
            value = input_value if input_value is not None else deserialize(input_text)
            concurrency_key = concurrency_key_of(task, value)
        return build_execution(
            task,
            now=now,
            input=input_text,
            timeout=timeout,
            retry=retry,
            sleep_before_run=sleep,
            sleeping_task_unique_id=unique_id,
            root=root_of(parent),
            parent=ParentRef(parent.task_id, parent.execution_id, index, count == 1, False),
            queue=None if task.queue_is_explicit else parent.queue,
            concurrency_key=concurrency_key,
        )

    def _build_finalize(
        self, parent: TaskExecution, finalize: Task, finalize_input: Any, now: datetime
    ) -> TaskExecution:
        return build_execution(
            finalize,
            now=now,
            input=self._serialize_input(finalize_input),
            timeout=finalize.timeout,
            retry=finalize.retry,
            sleep_before_run=finalize.sleep_before_run,
            root=root_of(parent),
            parent=ParentRef(parent.task_id, parent.execution_id, 0, False, True),
            queue=None if finalize.queue_is_explicit else parent.queue,
            concurrency_key=(
                concurrency_key_of(finalize, finalize_input)
                if finalize.concurrency_key is not None
                else None
            ),
        )

    def _run_finalize_function(
        self, row: TaskExecution, task: Task, finalize_input: dict[str, Any]
    ) -> Update:
        from ..context import TaskContext
        from ..executions import row_parent, row_root

        ctx = TaskContext(
            task_id=row.task_id,
            execution_id=row.execution_id,
            attempt=row.retry_attempts,
            root=row_root(row),
            parent=row_parent(row),
        )
        try:
            output = _call_maybe_async(
                task.call_finalize, ctx, ParentRunResult.from_value(finalize_input)
            )
            return {"status": Status.COMPLETED, "output": self._serialize_output(output)}
        except Exception as error:
            message = error.message if isinstance(error, DurableExecutionError) else str(error)
            return {
                "status": Status.FINALIZE_FAILED,
                "error": dict(DurableExecutionError(message or type(error).__name__).to_dict()),
            }

    def _finish_parent_without_children(
        self, row: TaskExecution, task: Task, output: Any, now: datetime
    ) -> None:
        finalize_input = {"output": output, "children": []}
        if task.finalize is None:
            self.settle(
                row.execution_id,
                {"status": Status.COMPLETED, "output": self._serialize_output(finalize_input)},
                _owned(row),
            )
        elif isinstance(task.finalize, Task):
            finalize_row = self._build_finalize(row, task.finalize, finalize_input, now)
            self.storage.update_by_id_and_insert_children(
                now,
                row.execution_id,
                {
                    "status": Status.WAITING_FOR_FINALIZE,
                    "waiting_for_children_started_at": now,
                    "children": [],
                    "finalize": {
                        "task_id": finalize_row.task_id,
                        "execution_id": finalize_row.execution_id,
                    },
                },
                [finalize_row],
                _owned(row),
                row,
            )
            wakeups.notify(wakeups.READY, finalize_row.queue)
            dispatch.rows_ready([finalize_row])
        else:
            update = self._run_finalize_function(row, task, finalize_input)
            update.update({"waiting_for_finalize_started_at": now, "children": []})
            self.settle(row.execution_id, update, _owned(row))

    # -- parents whose children finished -------------------------------------------------------

    def _fail_parent(
        self, parent: TaskExecution, error: DurableExecutionError, status: str
    ) -> None:
        self.settle(
            parent.execution_id,
            {
                "status": status,
                "error": dict(error.to_dict()),
                "on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSED,
            },
            _WAITING_FOR_CHILDREN,
        )

    def process_children_finished(
        self, parent: TaskExecution, finished_child: TaskExecution | None = None
    ) -> None:
        """Process a parent claimed because all its children finished (seed-spec §11.2).

        A deterministic failure (a non-retryable error, e.g. an invalid unique id for the next
        sleeping step, or a finalize input too large) fails the parent; anything else (the
        database went away) leaves it ``processing`` until its lease expires and it is tried
        again.
        """
        try:
            self._process_children_finished(parent, finished_child)
        except Exception as error:
            converted = convert_error(error)
            if converted.is_retryable:
                logger.exception(
                    "event=children_processing_failed execution=%s", parent.execution_id
                )
                return
            try:
                self._fail_parent(parent, converted, Status.FAILED)
            except Exception:
                logger.exception(
                    "event=children_processing_failed execution=%s", parent.execution_id
                )

    def _process_children_finished(
        self, parent: TaskExecution, finished_child: TaskExecution | None
    ) -> None:
        task = registry.get(parent.task_id)
        if task is None:
            self._fail_parent(
                parent,
                DurableExecutionNotFoundError(f"Task not found [taskId={parent.task_id}]"),
                Status.FAILED,
            )
            return
        if parent.are_children_sequential or task.kind == TaskKind.SEQUENTIAL_TASKS:
            self._process_sequential_step(parent, task, finished_child)
            return
        summaries = parent.children or []
        rows = {
            child.execution_id: child
            for child in self.storage.get_by_parent_execution_id(parent.execution_id)
        }
        ordered = [rows.get(summary["execution_id"]) for summary in summaries]
        missing = sum(1 for child in ordered if child is None)
        if missing:
            self._fail_parent(
                parent,
                DurableExecutionNotFoundError(
                    "Some children task executions not found "
                    f"[parentTaskId={parent.task_id}] [notFound={missing}] [total={len(summaries)}]"
                ),
                Status.FAILED,
            )
            return
        records = [_child_record(child) for child in ordered if child is not None]
        run_output = deserialize(parent.run_output) if parent.run_output is not None else None
        finalize_input = {"output": run_output, "children": records}
        now = timezone.now()
        processed = {"on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSED}
        if task.finalize is None:
            self.settle(
                parent.execution_id,
                {
                    "status": Status.COMPLETED,
                    "output": self._serialize_output(finalize_input),
                    **processed,
                },
                _WAITING_FOR_CHILDREN,
            )
        elif isinstance(task.finalize, Task):
            finalize_row = self._build_finalize(parent, task.finalize, finalize_input, now)
            self.storage.update_by_id_and_insert_children(
                now,
                parent.execution_id,
                {
                    "status": Status.WAITING_FOR_FINALIZE,
                    "finalize": {
                        "task_id": finalize_row.task_id,
                        "execution_id": finalize_row.execution_id,
                    },
                    **processed,
                },
                [finalize_row],
                _WAITING_FOR_CHILDREN,
                parent,
            )
            wakeups.notify(wakeups.READY, finalize_row.queue)
            dispatch.rows_ready([finalize_row])
        else:
            update = self._run_finalize_function(parent, task, finalize_input)
            update.update({"waiting_for_finalize_started_at": now, **processed})
            self.settle(parent.execution_id, update, _WAITING_FOR_CHILDREN)

    def _process_sequential_step(
        self, parent: TaskExecution, task: Task, finished_child: TaskExecution | None
    ) -> None:
        summaries: list[dict[str, str]] = list(parent.children or [])
        next_index = next(
            (i for i, s in enumerate(summaries) if s["execution_id"] == DUMMY_EXECUTION_ID), None
        )
        if next_index == 0 or not summaries:
            self._fail_parent(
                parent,
                DurableExecutionError(
                    f"Sequential tasks is in an invalid state [taskId={parent.task_id}]"
                ),
                Status.FAILED,
            )
            return
        previous_index = (len(summaries) if next_index is None else next_index) - 1
        previous_id = summaries[previous_index]["execution_id"]
        if finished_child is not None and finished_child.execution_id == previous_id:
            previous: TaskExecution | None = finished_child  # just written: no need to read it
        else:
            previous = self.storage.get_by_id(previous_id)
        if previous is None:
            self._fail_parent(
                parent,
                DurableExecutionNotFoundError(
                    "Sequential task not found "
                    f"[parentTaskId={parent.task_id}] [index={previous_index}]"
                ),
                Status.FAILED,
            )
            return
        processed = {"on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSED}
        if previous.status != Status.COMPLETED:
            message = (previous.error or {}).get("message") or "Unknown error"
            self._fail_parent(
                parent,
                DurableExecutionError(
                    f"Sequential task failed [parentTaskId={parent.task_id}] "
                    f"[index={previous_index}]: {message}"
                ),
                Status.FINALIZE_FAILED,
            )
            return
        if next_index is None:
            self.settle(
                parent.execution_id,
                {"status": Status.COMPLETED, "output": previous.output, **processed},
                _WAITING_FOR_CHILDREN,
            )
            return
        step_task = registry.get(summaries[next_index]["task_id"])
        if step_task is None:
            self._fail_parent(
                parent,
                DurableExecutionNotFoundError(
                    f"Child task not found [taskId={summaries[next_index]['task_id']}]"
                ),
                Status.FAILED,
            )
            return
        now = timezone.now()
        step = self._build_child(
            parent,
            step_task,
            ChildSpec(step_task),
            next_index,
            len(summaries),
            now,
            input_text=previous.output
            if previous.output is not None
            else self._serialize_input(None),
        )
        summaries[next_index] = {"task_id": step_task.id, "execution_id": step.execution_id}
        # The next step usually runs here at once: inserted already claimed by this executor,
        # it needs no claim and no wake-up (a hop of a chain is one write, not three).
        local = self._local is not None and self._local.reserve(step)
        if local:
            assert self._local is not None
            step.status = Status.RUNNING
            step.executor_id = self._local.executor_id
            step.started_at = now
            step.expires_at = now + timedelta(seconds=self.config.expire_leeway + step.timeout)
        updated = self.storage.update_by_id_and_insert_children(
            now,
            parent.execution_id,
            {
                "children": summaries,
                "active_children_count": 1,
                "on_children_finished_processing_status": ChildrenProcessingStatus.IDLE,
            },
            [step],
            _WAITING_FOR_CHILDREN,
            parent,
        )
        if local:
            assert self._local is not None
            if updated:
                self._local.start(step)
            else:
                self._local.release()
        else:
            wakeups.notify(wakeups.READY, step.queue)
            if updated is not False:
                dispatch.rows_ready([step])

    # -- closing ---------------------------------------------------------------------------------

    def close(self, row: TaskExecution) -> None:
        """Close a finished execution claimed ``closing`` (seed-spec §11.4)."""
        try:
            self._close(row)
        except Exception:
            # Left ``closing``: the lease expires and the close is tried again.
            logger.exception("Closing %s failed", row.execution_id)

    def _close(self, row: TaskExecution) -> None:
        now = timezone.now()
        if row.is_finalize_of_parent and row.parent_execution_id:
            if row.status == Status.COMPLETED:
                update: Update = {"status": Status.COMPLETED, "output": row.output}
            else:
                update = {
                    "status": Status.FINALIZE_FAILED,
                    "error": row.error
                    or dict(
                        DurableExecutionError(
                            "Finalize task failed with an unknown error "
                            f"[parentTaskId={row.parent_task_id}] [finalizeTaskId={row.task_id}] "
                            f"[finalizeExecutionId={row.execution_id}]"
                        ).to_dict()
                    ),
                }
            self.settle(row.parent_execution_id, update, {"status": Status.WAITING_FOR_FINALIZE})
        if row.status != Status.COMPLETED and (row.children or row.finalize):
            message = (row.error or {}).get("message") or "Unknown error"
            error = DurableExecutionCancelledError(
                f"Parent task failed [parentTaskId={row.task_id}] "
                f"[parentExecutionId={row.execution_id}]: {message}"
            )
            self.storage.update_by_parent_execution_id_and_is_finished(
                now,
                row.execution_id,
                False,
                {
                    "status": Status.CANCELLED,
                    "error": dict(error.to_dict()),
                    "needs_promise_cancellation": True,
                },
            )
            wakeups.notify(wakeups.CANCEL)
            wakeups.notify(wakeups.CLOSE)
            wakeups.notify_finished()
        self.storage.update_by_id(
            now, row.execution_id, {"close_status": CloseStatus.CLOSED}, {"is_finished": True}
        )
