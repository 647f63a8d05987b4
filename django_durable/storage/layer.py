"""The storage as the engine sees it: derived fields, retries, stats and batching.

Every engine write goes through :class:`StorageLayer`, which completes the update with the
derived fields of :func:`~django_durable.state.derive_update`, retries retryable storage
errors with exponential backoff (25 ms doubling, capped at 1 s), records per-operation timing
and, when batching is on, coalesces concurrent single-row calls into one statement through a
:class:`~django_durable.storage.batching.BatchProcessor` per operation (seed-spec §20).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    connections,
)

from ..errors import DurableExecutionError
from ..models import TaskExecution
from ..state import derive_update, with_finalize_close
from .base import (
    Filters,
    GetByIdRequest,
    SettleRequest,
    SettleResult,
    TaskExecutionsStorage,
    Update,
    UpdateByIdAndInsertChildrenRequest,
    UpdateByIdRequest,
    UpdateByParentRequest,
)
from .batching import BatchProcessor
from .stats import OperationStats, StorageStats

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors that retrying cannot fix.
_PERMANENT_DB_ERRORS = (IntegrityError, DataError, ProgrammingError, NotSupportedError)

#: Children above which a spawn skips batching (seed: 5, for inserts and spawns).
MAX_BATCHED_ROWS = 5


def is_retryable_storage_error(error: BaseException) -> bool:
    """Whether a failed storage call may succeed if tried again."""
    if isinstance(error, DurableExecutionError):
        return error.is_retryable
    if isinstance(error, _PERMANENT_DB_ERRORS):
        return False
    return isinstance(error, Exception)


class StorageLayer:
    """The engine's storage: derived fields, retries, stats and batching over a storage."""

    def __init__(
        self,
        storage: TaskExecutionsStorage,
        *,
        batching: bool = True,
        batching_interval: float = 0.0,
        max_retries: int = 1,
        stats: bool = True,
        using: str = "default",
    ) -> None:
        self.storage = storage
        self.max_retries = max(0, min(10, max_retries))
        self.using = using
        self._stats = StorageStats() if stats else None

        def processor(
            name: str, process: Callable[[list[Any]], Any], weight: int
        ) -> BatchProcessor[Any, Any]:
            return BatchProcessor(
                name,
                lambda items: self._call(name, lambda: process(items)),
                batch_weight=weight,
                interval=batching_interval,
                enabled=batching,
            )

        s = storage
        self._get = processor("get_many_by_id", s.get_many_by_id, 100)
        self._update = processor("update_many_by_id", s.update_many_by_id, 100)
        self._spawn = processor(
            "update_many_by_id_and_insert_children_if_updated",
            s.update_many_by_id_and_insert_children_if_updated,
            100,
        )
        self._settle = processor(
            "update_many_by_id_and_settle", s.update_many_by_id_and_settle, 100
        )
        self._get_children = processor(
            "get_many_by_parent_execution_id", s.get_many_by_parent_execution_id, 3
        )
        self._update_children = processor(
            "update_many_by_parent_execution_id_and_is_finished",
            s.update_many_by_parent_execution_id_and_is_finished,
            3,
        )
        self._processors = [
            self._get,
            self._update,
            self._spawn,
            self._settle,
            self._get_children,
            self._update_children,
        ]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for processor in self._processors:
            processor.start()

    def shutdown(self) -> None:
        """Flush and stop the batch processors; later calls go directly to the storage."""
        for processor in self._processors:
            processor.shutdown()

    def metrics(self) -> list[OperationStats]:
        """Timing summaries per storage operation (empty when stats are off)."""
        return self._stats.summaries() if self._stats else []

    # -- retries and stats -------------------------------------------------------------------

    def _in_transaction(self) -> bool:
        """Whether the calling thread is inside ``transaction.atomic()`` on our database."""
        return connections[self.using].in_atomic_block

    def _batch(self, eligible: bool = True) -> bool:
        # Inside the caller's transaction the call must run on the caller's connection: a batch
        # thread would write outside that transaction (not rolled back with it) and, on SQLite,
        # wait for the write lock that the caller holds while the caller waits for it.
        return eligible and not self._in_transaction()

    def _call(self, name: str, function: Callable[[], T]) -> T:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                result = function()
            except Exception as error:
                if attempt >= self.max_retries or not is_retryable_storage_error(error):
                    raise
                if isinstance(error, DatabaseError) and self._in_transaction():
                    # The caller's transaction may be broken: it decides what happens next.
                    raise
                logger.warning(
                    "Storage operation %s failed (attempt %d), retrying: %s",
                    name,
                    attempt + 1,
                    error,
                )
                self._recover_connection(error)
                time.sleep(min(0.025 * 2**attempt, 1.0))
                attempt += 1
                continue
            if self._stats is not None:
                self._stats.record(name, (time.perf_counter() - started) * 1000)
            return result

    def _recover_connection(self, error: Exception) -> None:
        if isinstance(error, (OperationalError, InterfaceError)):
            connection = connections[self.using]
            if not connection.in_atomic_block:
                connection.close_if_unusable_or_obsolete()

    # -- reads -------------------------------------------------------------------------------

    def get_by_id(self, execution_id: str, filters: Filters | None = None) -> TaskExecution | None:
        return self._get.request(GetByIdRequest(execution_id, filters), batch=self._batch())

    def get_many_by_id(self, execution_ids: Sequence[str]) -> list[TaskExecution | None]:
        requests = [GetByIdRequest(execution_id) for execution_id in execution_ids]
        return self._call("get_many_by_id", lambda: self.storage.get_many_by_id(requests))

    def get_by_sleeping_task_unique_id(self, unique_id: str) -> TaskExecution | None:
        return self._call(
            "get_many_by_sleeping_task_unique_id",
            lambda: self.storage.get_many_by_sleeping_task_unique_id([unique_id])[0],
        )

    def get_by_parent_execution_id(self, parent_execution_id: str) -> list[TaskExecution]:
        return self._get_children.request(parent_execution_id, batch=self._batch())

    # -- writes ------------------------------------------------------------------------------

    def insert_many(self, executions: Sequence[TaskExecution], *, announce: bool = False) -> bool:
        """Insert on the caller's own connection, never through a batch processor.

        Inserts come from application code (views, commands), not from the executor's threads:
        handing one to a batch thread costs a thread switch each way and buys nothing that the
        database's own group commit of concurrent transactions does not already give.
        """
        if not executions:
            return False
        rows = list(executions)
        return self._call("insert_many", lambda: self.storage.insert_many(rows, announce=announce))

    def update_by_id(
        self,
        now: datetime,
        execution_id: str,
        update: Update,
        filters: Filters | None = None,
        execution: TaskExecution | None = None,
    ) -> None:
        if execution is not None:
            update = with_finalize_close(update, execution.is_finalize_of_parent)
        self._update.request(
            UpdateByIdRequest(execution_id, derive_update(now, update), filters),
            batch=self._batch(),
        )

    def settle_by_id(
        self,
        now: datetime,
        execution_id: str,
        update: Update,
        filters: Filters | None = None,
        processing_expires_at: datetime | None = None,
        *,
        top_level: bool = False,
    ) -> SettleResult:
        """Write ``update``; if it finished the row, report it to its family atomically.

        ``top_level``: the caller knows the row has no parent (a hint that saves a transaction).
        """
        request = SettleRequest(
            execution_id, derive_update(now, update), filters, processing_expires_at, top_level
        )
        return self._settle.request(request, batch=self._batch())

    def update_by_id_and_insert_children(
        self,
        now: datetime,
        execution_id: str,
        update: Update,
        children: Sequence[TaskExecution],
        filters: Filters | None = None,
        execution: TaskExecution | None = None,
    ) -> bool | None:
        """Update the row and insert ``children`` only if it matched; return whether it did
        (``None`` when there are no children: a plain update, whose match is not reported)."""
        if not children:
            self.update_by_id(now, execution_id, update, filters, execution)
            return None
        if execution is not None:
            update = with_finalize_close(update, execution.is_finalize_of_parent)
        request = UpdateByIdAndInsertChildrenRequest(
            execution_id, derive_update(now, update), list(children), filters
        )
        updated = self._spawn.request(
            request,
            weight=len(children),
            batch=self._batch(len(children) <= MAX_BATCHED_ROWS),
        )
        return None if updated is None else bool(updated)

    def update_by_parent_execution_id_and_is_finished(
        self, now: datetime, parent_execution_id: str, is_finished: bool, update: Update
    ) -> None:
        self._update_children.request(
            UpdateByParentRequest(parent_execution_id, is_finished, derive_update(now, update)),
            batch=self._batch(),
        )

    # -- claims and sweeps (never batched) -----------------------------------------------------

    def claim_ready(
        self,
        now: datetime,
        *,
        executor_id: str,
        expires_at_base: datetime,
        limit: int,
        queues: Sequence[str] | None = None,
    ) -> list[TaskExecution]:
        """Claim up to ``limit`` ready rows whose start time passed, for ``executor_id``."""
        if limit <= 0:
            return []
        update = derive_update(now, {"status": "running", "executor_id": executor_id})
        return self._call(
            "update_by_status_and_start_at_less_than_and_return",
            lambda: self.storage.update_by_status_and_start_at_less_than_and_return(
                status="ready",
                start_at_less_than=now,
                update=update,
                update_expires_at_with_started_at=expires_at_base,
                limit=limit,
                queues=queues,
            ),
        )

    def claim_ready_by_id(
        self, now: datetime, execution_id: str, *, executor_id: str, expires_at_base: datetime
    ) -> TaskExecution | None:
        """Claim the execution ``execution_id`` for ``executor_id`` if it is ``ready``, its
        start time passed and no one else is claiming it; ``None`` otherwise."""
        update = derive_update(now, {"status": "running", "executor_id": executor_id})
        return self._call(
            "update_by_id_and_status_and_start_at_less_than_and_return",
            lambda: self.storage.update_by_id_and_status_and_start_at_less_than_and_return(
                execution_id=execution_id,
                status="ready",
                start_at_less_than=now,
                update=update,
                update_expires_at_with_started_at=expires_at_base,
            ),
        )

    def claim_ready_within_concurrency_limits(
        self,
        now: datetime,
        *,
        executor_id: str,
        expires_at_base: datetime,
        limit: int,
        queues: Sequence[str] | None = None,
    ) -> list[TaskExecution]:
        """Claim ready rows that have a concurrency key, never more than their keys allow."""
        if limit <= 0:
            return []
        update = derive_update(now, {"status": "running", "executor_id": executor_id})
        return self._call(
            "update_by_status_and_start_at_less_than_within_concurrency_limits_and_return",
            lambda: (
                self.storage.update_by_status_and_start_at_less_than_within_concurrency_limits_and_return(
                    status="ready",
                    start_at_less_than=now,
                    update=update,
                    update_expires_at_with_started_at=expires_at_base,
                    limit=limit,
                    queues=queues,
                )
            ),
        )

    def claim_children_finished(
        self, now: datetime, *, expires_at: datetime, limit: int
    ) -> list[TaskExecution]:
        if limit <= 0:
            return []
        update = derive_update(
            now,
            {
                "on_children_finished_processing_status": "processing",
                "on_children_finished_processing_expires_at": expires_at,
            },
        )
        s = self.storage
        return self._call(
            "update_by_status_and_on_children_finished_processing_status_and_active_children_count_zero_and_return",
            lambda: (
                s.update_by_status_and_on_children_finished_processing_status_and_active_children_count_zero_and_return(
                    status="waiting_for_children",
                    on_children_finished_processing_status="idle",
                    update=update,
                    limit=limit,
                )
            ),
        )

    def mark_finished_close_ready(self, now: datetime, *, limit: int) -> int:
        if limit <= 0:
            return 0
        update = derive_update(now, {"close_status": "ready"})
        s = self.storage
        return self._call(
            "update_and_decrement_parent_active_children_count_by_is_finished_and_close_status",
            lambda: (
                s.update_and_decrement_parent_active_children_count_by_is_finished_and_close_status(
                    is_finished=True, close_status="idle", update=update, limit=limit
                )
            ),
        )

    def claim_close_ready(
        self, now: datetime, *, expires_at: datetime, limit: int
    ) -> list[TaskExecution]:
        if limit <= 0:
            return []
        update = derive_update(now, {"close_status": "closing", "close_expires_at": expires_at})
        return self._call(
            "update_by_close_status_and_return",
            lambda: self.storage.update_by_close_status_and_return(
                close_status="ready", update=update, limit=limit
            ),
        )

    def expire_running(
        self, now: datetime, *, is_sleeping_task: bool, update: Update, limit: int
    ) -> int:
        if limit <= 0:
            return 0
        derived = derive_update(now, update)
        return self._call(
            "update_by_status_and_is_sleeping_task_and_expires_at_less_than",
            lambda: self.storage.update_by_status_and_is_sleeping_task_and_expires_at_less_than(
                status="running",
                is_sleeping_task=is_sleeping_task,
                expires_at_less_than=now,
                update=derived,
                limit=limit,
            ),
        )

    def expire_children_processing(self, now: datetime, *, limit: int) -> int:
        if limit <= 0:
            return 0
        update = derive_update(now, {"on_children_finished_processing_status": "idle"})
        s = self.storage
        return self._call(
            "update_by_on_children_finished_processing_expires_at_less_than",
            lambda: s.update_by_on_children_finished_processing_expires_at_less_than(
                on_children_finished_processing_expires_at_less_than=now,
                update=update,
                limit=limit,
            ),
        )

    def expire_closing(self, now: datetime, *, limit: int) -> int:
        if limit <= 0:
            return 0
        update = derive_update(now, {"close_status": "ready"})
        return self._call(
            "update_by_close_expires_at_less_than",
            lambda: self.storage.update_by_close_expires_at_less_than(
                close_expires_at_less_than=now, update=update, limit=limit
            ),
        )

    def claim_cancellations(
        self, now: datetime, *, executor_id: str, limit: int
    ) -> list[TaskExecution]:
        if limit <= 0:
            return []
        update = derive_update(now, {"needs_promise_cancellation": False})
        s = self.storage
        return self._call(
            "update_by_executor_id_and_needs_promise_cancellation_and_return",
            lambda: s.update_by_executor_id_and_needs_promise_cancellation_and_return(
                executor_id=executor_id, needs_promise_cancellation=True, update=update, limit=limit
            ),
        )
