"""The storage operations on the Django ORM, for every database Django supports.

Claims lock the rows they take with ``select_for_update(skip_locked=True)`` inside one
transaction, so that two executors never get the same row. On SQLite, which has no row locks,
the same safety comes from ``IMMEDIATE`` transactions (``OPTIONS["transaction_mode"]``): every
transaction takes the write lock when it begins.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import Count, F, QuerySet

from ..models import ChildrenProcessingStatus, CloseStatus, Status, TaskExecution
from ..state import derive_update, is_finished
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

__all__ = ["OrmStorage"]


def _matches(row: TaskExecution, filters: Filters | None) -> bool:
    if not filters:
        return True
    return all(getattr(row, name) == value for name, value in filters.items())


def _apply(row: TaskExecution, update: Update) -> None:
    for name, value in update.items():
        setattr(row, name, value)


class OrmStorage(TaskExecutionsStorage):
    """:class:`TaskExecutionsStorage` on the Django ORM (SQLite, PostgreSQL, ...)."""

    def __init__(self, using: str = "default") -> None:
        self.using = using

    # -- helpers -------------------------------------------------------------------------

    @property
    def objects(self) -> QuerySet[TaskExecution]:
        return TaskExecution.objects.using(self.using).all()

    def _atomic(self) -> transaction.Atomic:
        return transaction.atomic(using=self.using)

    def _claim(
        self,
        queryset: QuerySet[TaskExecution],
        order_by: Sequence[Any],
        limit: int,
        update: Update,
        expires_at_base: datetime | None = None,
    ) -> list[TaskExecution]:
        """Lock up to ``limit`` rows of ``queryset`` (skipping locked ones) and update them.

        With ``expires_at_base``, each row also gets ``expires_at = base + row.timeout``. The
        rows are returned with the update applied.
        """
        if limit <= 0:
            return []
        with self._atomic():
            rows = list(queryset.order_by(*order_by).select_for_update(skip_locked=True)[:limit])
            if not rows:
                return []
            if expires_at_base is None:
                self.objects.filter(pk__in=[row.pk for row in rows]).update(**update)
            else:
                # One statement per distinct timeout (usually one): cheaper than a CASE per row.
                by_timeout: dict[float, list[int]] = defaultdict(list)
                for row in rows:
                    by_timeout[row.timeout].append(row.pk)
                for timeout, pks in by_timeout.items():
                    self.objects.filter(pk__in=pks).update(
                        **update, expires_at=expires_at_base + timedelta(seconds=timeout)
                    )
        for row in rows:
            _apply(row, update)
            if expires_at_base is not None:
                row.expires_at = expires_at_base + timedelta(seconds=row.timeout)
        return rows

    def _claim_count(
        self,
        queryset: QuerySet[TaskExecution],
        order_by: Sequence[Any],
        limit: int,
        update: Update,
    ) -> int:
        if limit <= 0:
            return 0
        with self._atomic():
            ids = list(
                queryset.order_by(*order_by)
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)[:limit]
            )
            if ids:
                self.objects.filter(id__in=ids).update(**update)
        return len(ids)

    # -- inserts and reads -----------------------------------------------------------------

    def insert_many(self, executions: Sequence[TaskExecution], *, announce: bool = False) -> bool:
        if executions:
            with self._atomic():
                self._insert_rows(executions)
        return False

    def _insert_rows(self, executions: Sequence[TaskExecution]) -> None:
        """Insert ``executions`` in the current transaction (no savepoint of its own)."""
        self.objects.bulk_create(executions)

    def get_many_by_id(self, requests: Sequence[GetByIdRequest]) -> list[TaskExecution | None]:
        if not requests:
            return []
        rows = {
            row.execution_id: row
            for row in self.objects.filter(execution_id__in={r.execution_id for r in requests})
        }
        result: list[TaskExecution | None] = []
        for request in requests:
            row = rows.get(request.execution_id)
            result.append(row if row is not None and _matches(row, request.filters) else None)
        return result

    def get_many_by_sleeping_task_unique_id(
        self, unique_ids: Sequence[str]
    ) -> list[TaskExecution | None]:
        if not unique_ids:
            return []
        rows = {
            row.sleeping_task_unique_id: row
            for row in self.objects.filter(sleeping_task_unique_id__in=set(unique_ids))
        }
        return [rows.get(unique_id) for unique_id in unique_ids]

    def get_many_by_parent_execution_id(
        self, parent_execution_ids: Sequence[str]
    ) -> list[list[TaskExecution]]:
        if not parent_execution_ids:
            return []
        grouped: dict[str, list[TaskExecution]] = defaultdict(list)
        for row in self.objects.filter(parent_execution_id__in=set(parent_execution_ids)).order_by(
            "id"
        ):
            assert row.parent_execution_id is not None
            grouped[row.parent_execution_id].append(row)
        return [list(grouped.get(parent_id, ())) for parent_id in parent_execution_ids]

    # -- by-id writes -----------------------------------------------------------------------

    def _update_one(self, request: UpdateByIdRequest) -> bool:
        queryset = self.objects.filter(execution_id=request.execution_id)
        if request.filters:
            queryset = queryset.filter(**request.filters)
        return queryset.update(**request.update) > 0

    def update_many_by_id(self, requests: Sequence[UpdateByIdRequest]) -> None:
        if not requests:
            return
        with self._atomic():
            # Sorted so that concurrent batches lock rows in the same order (no deadlocks).
            for request in sorted(requests, key=lambda r: r.execution_id):
                self._update_one(request)

    def update_many_by_id_and_insert_children_if_updated(
        self, requests: Sequence[UpdateByIdAndInsertChildrenRequest]
    ) -> list[bool]:
        if not requests:
            return []
        updated = [False] * len(requests)
        with self._atomic():
            children: list[TaskExecution] = []
            for index in sorted(range(len(requests)), key=lambda i: requests[i].execution_id):
                request = requests[index]
                updated[index] = self._update_one(
                    UpdateByIdRequest(request.execution_id, request.update, request.filters)
                )
                if updated[index]:
                    children.extend(request.children)
            if children:
                self._insert_rows(children)
        return updated

    def update_many_by_id_and_settle(self, requests: Sequence[SettleRequest]) -> list[SettleResult]:
        if not requests:
            return []
        results: dict[int, SettleResult] = {}
        order = sorted(range(len(requests)), key=lambda i: requests[i].execution_id)
        with self._atomic():
            rows = self._lock_batch(requests)
            for index in order:
                results[index] = self._update_and_settle(requests[index], rows)
        return [results[i] for i in range(len(requests))]

    def _lock_batch(self, requests: Sequence[SettleRequest]) -> dict[str, TaskExecution | None]:
        """Read and lock the rows of a batch in one query, then (for several) their parents,
        each level in execution id order; return the rows by id (``None``: no such row).

        Settling a row locks its parent. Without the order, two concurrent batches finishing
        children of the same parents (in different orders) deadlock on PostgreSQL.
        """
        ids = {r.execution_id for r in requests}
        rows: dict[str, TaskExecution | None] = dict.fromkeys(ids)
        for row in (
            self.objects.filter(execution_id__in=ids).order_by("execution_id").select_for_update()
        ):
            rows[row.execution_id] = row
        parent_ids = {row.parent_execution_id for row in rows.values() if row is not None}
        parent_ids.discard(None)
        if parent_ids and len(requests) > 1:
            list(
                self.objects.filter(execution_id__in=parent_ids)
                .order_by("execution_id")
                .select_for_update()
                .values_list("id", flat=True)
            )
        return rows

    def _update_and_settle(
        self, request: SettleRequest, rows: dict[str, TaskExecution | None]
    ) -> SettleResult:
        """Apply one request to its row, read with the batch (``rows``) or, once an earlier
        request of the batch wrote to other rows of the family, read again."""
        if request.execution_id in rows:
            row = rows[request.execution_id]
            if row is not None and not _matches(row, request.filters):
                row = None
        else:
            queryset = self.objects.filter(execution_id=request.execution_id)
            if request.filters:
                queryset = queryset.filter(**request.filters)
            row = queryset.select_for_update().first()
        if row is None:
            return SettleResult(updated=False)
        update = dict(request.update)
        _apply(row, update)
        settles = "status" in update and is_finished(row.status)
        if not settles or row.close_status != CloseStatus.IDLE:
            self.objects.filter(pk=row.pk).update(**update)
            return SettleResult(updated=True, finished_row=row)
        lease = request.processing_expires_at
        now: datetime = update["updated_at"]
        result = SettleResult(updated=True, finished_row=row)
        if row.is_finalize_of_parent:
            # Its result settles the parent, which reports further up: rows read with the
            # batch may be stale now, so later requests read theirs again.
            rows.clear()
        elif row.parent_execution_id:
            rows.pop(row.parent_execution_id, None)  # a child changes only its parent's row
        close_update = self._settle(row, now, lease, result)
        update.update(close_update)
        _apply(row, close_update)
        self.objects.filter(pk=row.pk).update(**update)
        return result

    def _settle(
        self,
        row: TaskExecution,
        now: datetime,
        lease: datetime | None,
        result: SettleResult,
    ) -> Update:
        """Report the finished ``row`` to its family; return the close fields for ``row``."""
        has_close_work = row.status != Status.COMPLETED and (
            bool(row.children) or row.finalize is not None
        )
        if row.parent_execution_id and not row.is_finalize_of_parent:
            parent = self._decrement_parent(row.parent_execution_id, now, lease)
            if parent is not None:
                result.parents_to_process.append(parent)
        elif row.parent_execution_id and not has_close_work:
            self._hand_result_to_parent(row, now, lease, result)
        if has_close_work:
            result.needs_close = True
            return {"close_status": CloseStatus.READY, "close_expires_at": None}
        return {"close_status": CloseStatus.CLOSED, "close_expires_at": None, "closed_at": now}

    def _decrement_parent(
        self, parent_execution_id: str, now: datetime, lease: datetime | None
    ) -> TaskExecution | None:
        parents = self.objects.filter(execution_id=parent_execution_id)
        parents.update(active_children_count=F("active_children_count") - 1, updated_at=now)
        if lease is None:
            return None
        claim = derive_update(
            now,
            {
                "on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSING,
                "on_children_finished_processing_expires_at": lease,
            },
        )
        claimed = parents.filter(
            status=Status.WAITING_FOR_CHILDREN,
            on_children_finished_processing_status=ChildrenProcessingStatus.IDLE,
            active_children_count=0,
        ).update(**claim)
        return parents.first() if claimed else None

    def _hand_result_to_parent(
        self, row: TaskExecution, now: datetime, lease: datetime | None, result: SettleResult
    ) -> None:
        """A finished finalize execution completes (or fails) its parent (seed-spec §11.4)."""
        if row.status == Status.COMPLETED:
            parent_update: Update = {"status": Status.COMPLETED, "output": row.output}
        else:
            error = row.error or {
                "error_type": "generic",
                "message": (
                    "Finalize task failed with an unknown error "
                    f"[parentTaskId={row.parent_task_id}] [finalizeTaskId={row.task_id}] "
                    f"[finalizeExecutionId={row.execution_id}]"
                ),
                "is_retryable": False,
                "is_internal": False,
            }
            parent_update = {"status": Status.FINALIZE_FAILED, "error": error}
        parent = (
            self.objects.filter(
                execution_id=row.parent_execution_id, status=Status.WAITING_FOR_FINALIZE
            )
            .select_for_update()
            .first()
        )
        if parent is None:
            return
        update = derive_update(now, parent_update)
        _apply(parent, update)
        update.update(self._settle(parent, now, lease, result))
        self.objects.filter(pk=parent.pk).update(**update)

    # -- claims and sweeps ------------------------------------------------------------------

    def update_by_status_and_start_at_less_than_and_return(
        self,
        *,
        status: str,
        start_at_less_than: datetime,
        update: Update,
        update_expires_at_with_started_at: datetime,
        limit: int,
        queues: Sequence[str] | None = None,
    ) -> list[TaskExecution]:
        queryset = self.objects.filter(
            status=status, start_at__lt=start_at_less_than, concurrency_key__isnull=True
        )
        if queues is not None:
            queryset = queryset.filter(queue__in=list(queues))

        return self._claim(
            queryset,
            (F("priority").desc(), "start_at", "id"),
            limit,
            update,
            expires_at_base=update_expires_at_with_started_at,
        )

    def update_by_id_and_status_and_start_at_less_than_and_return(
        self,
        *,
        execution_id: str,
        status: str,
        start_at_less_than: datetime,
        update: Update,
        update_expires_at_with_started_at: datetime,
    ) -> TaskExecution | None:
        with self._atomic():
            row = (
                self.objects.filter(
                    execution_id=execution_id, status=status, start_at__lt=start_at_less_than
                )
                .select_for_update(skip_locked=True)
                .first()
            )
            if row is None:
                return None
            key = row.concurrency_key
            if key is not None:
                # As the claim of ready work: never more than the key's limit running at once.
                self._lock_concurrency_keys([key])
                if self._running_counts([key])[key] >= (row.max_concurrency or 1):
                    return None
            expires_at = update_expires_at_with_started_at + timedelta(seconds=row.timeout)
            self.objects.filter(pk=row.pk).update(**update, expires_at=expires_at)
        _apply(row, update)
        row.expires_at = expires_at
        return row

    def update_by_status_and_start_at_less_than_within_concurrency_limits_and_return(
        self,
        *,
        status: str,
        start_at_less_than: datetime,
        update: Update,
        update_expires_at_with_started_at: datetime,
        limit: int,
        queues: Sequence[str] | None = None,
    ) -> list[TaskExecution]:
        if limit <= 0:
            return []
        ready = self.objects.filter(
            status=status, start_at__lt=start_at_less_than, concurrency_key__isnull=False
        )
        if queues is not None:
            ready = ready.filter(queue__in=list(queues))
        with self._atomic():
            # 1. Pick candidates by the running counts seen now, passing over full keys.
            running = self._running_counts(None)
            picked = self._pick_within_limits(ready, running, limit)
            if not picked:
                return []
            keys = sorted({key for _, key, _ in picked})
            # 2. One claimer per key at a time from here on; the counts are read again, as
            # another claimer may have committed rows of these keys since step 1.
            self._lock_concurrency_keys(keys)
            running = self._running_counts(keys)
            rows = list(
                self.objects.filter(id__in=[pk for pk, _, _ in picked], status=status)
                .order_by(F("priority").desc(), "start_at", "id")
                .select_for_update(skip_locked=True)
            )
            taken: Counter[str] = Counter()
            chosen = []
            for row in rows:
                key = row.concurrency_key
                assert key is not None
                if running[key] + taken[key] < (row.max_concurrency or 1):
                    taken[key] += 1
                    chosen.append(row)
            by_timeout: dict[float, list[int]] = defaultdict(list)
            for row in chosen:
                by_timeout[row.timeout].append(row.pk)
            base = update_expires_at_with_started_at
            for timeout, pks in by_timeout.items():
                self.objects.filter(pk__in=pks).update(
                    **update, expires_at=base + timedelta(seconds=timeout)
                )
        for row in chosen:
            _apply(row, update)
            row.expires_at = base + timedelta(seconds=row.timeout)
        return chosen

    def _running_counts(self, keys: Sequence[str] | None) -> Counter[str]:
        """Running executions per concurrency key (of ``keys``, or of every key)."""
        running = self.objects.filter(status=Status.RUNNING, concurrency_key__isnull=False)
        if keys is not None:
            running = running.filter(concurrency_key__in=list(keys))
        return Counter(
            dict(running.order_by().values_list("concurrency_key").annotate(count=Count("id")))
        )

    def _pick_within_limits(
        self, ready: QuerySet[TaskExecution], running: Counter[str], limit: int
    ) -> list[tuple[int, str, int | None]]:
        """Up to ``limit`` ready rows in claim order, at most the free slots of each key."""
        picked: list[tuple[int, str, int | None]] = []
        taken: Counter[str] = Counter()
        candidates = (
            ready.order_by(F("priority").desc(), "start_at", "id")
            .values_list("id", "concurrency_key", "max_concurrency")
            .iterator(chunk_size=max(limit * 4, 100))
        )
        for pk, key, max_concurrency in candidates:
            assert key is not None
            if running[key] + taken[key] >= (max_concurrency or 1):
                continue
            taken[key] += 1
            picked.append((pk, key, max_concurrency))
            if len(picked) >= limit:
                break
        return picked

    def _lock_concurrency_keys(self, keys: Sequence[str]) -> None:
        """Serialise claimers of the same keys until the transaction ends.

        SQLite needs nothing: its claims already hold the database's write lock. PostgreSQL
        takes a transaction-level advisory lock per key.
        """
        if connections[self.using].vendor == "postgresql":
            from .postgres import lock_concurrency_keys

            lock_concurrency_keys(self.using, keys)

    def update_by_status_and_on_children_finished_processing_status_and_active_children_count_zero_and_return(  # noqa: E501
        self,
        *,
        status: str,
        on_children_finished_processing_status: str,
        update: Update,
        limit: int,
    ) -> list[TaskExecution]:
        queryset = self.objects.filter(
            status=status,
            on_children_finished_processing_status=on_children_finished_processing_status,
            active_children_count=0,
        )
        return self._claim(queryset, ("updated_at", "id"), limit, update)

    def update_by_close_status_and_return(
        self, *, close_status: str, update: Update, limit: int
    ) -> list[TaskExecution]:
        queryset = self.objects.filter(close_status=close_status)
        return self._claim(queryset, ("updated_at", "id"), limit, update)

    def update_by_status_and_is_sleeping_task_and_expires_at_less_than(
        self,
        *,
        status: str,
        is_sleeping_task: bool,
        expires_at_less_than: datetime,
        update: Update,
        limit: int,
    ) -> int:
        queryset = self.objects.filter(
            status=status,
            is_sleeping_task=is_sleeping_task,
            expires_at__isnull=False,
            expires_at__lt=expires_at_less_than,
        )
        return self._claim_count(queryset, ("expires_at", "id"), limit, update)

    def update_by_on_children_finished_processing_expires_at_less_than(
        self,
        *,
        on_children_finished_processing_expires_at_less_than: datetime,
        update: Update,
        limit: int,
    ) -> int:
        queryset = self.objects.filter(
            on_children_finished_processing_expires_at__isnull=False,
            on_children_finished_processing_expires_at__lt=(
                on_children_finished_processing_expires_at_less_than
            ),
        )
        return self._claim_count(
            queryset, ("on_children_finished_processing_expires_at", "id"), limit, update
        )

    def update_by_close_expires_at_less_than(
        self, *, close_expires_at_less_than: datetime, update: Update, limit: int
    ) -> int:
        queryset = self.objects.filter(
            close_expires_at__isnull=False, close_expires_at__lt=close_expires_at_less_than
        )
        return self._claim_count(queryset, ("close_expires_at", "id"), limit, update)

    def update_by_executor_id_and_needs_promise_cancellation_and_return(
        self, *, executor_id: str, needs_promise_cancellation: bool, update: Update, limit: int
    ) -> list[TaskExecution]:
        queryset = self.objects.filter(
            executor_id=executor_id, needs_promise_cancellation=needs_promise_cancellation
        )
        return self._claim(queryset, ("updated_at", "id"), limit, update)

    # -- by-parent writes -------------------------------------------------------------------

    def update_many_by_parent_execution_id_and_is_finished(
        self, requests: Sequence[UpdateByParentRequest]
    ) -> None:
        if not requests:
            return
        with self._atomic():
            for request in sorted(requests, key=lambda r: r.parent_execution_id):
                self.objects.filter(
                    parent_execution_id=request.parent_execution_id,
                    is_finished=request.is_finished,
                ).update(**request.update)

    def update_and_decrement_parent_active_children_count_by_is_finished_and_close_status(
        self, *, is_finished: bool, close_status: str, update: Update, limit: int
    ) -> int:
        if limit <= 0:
            return 0
        with self._atomic():
            rows = list(
                self.objects.filter(is_finished=is_finished, close_status=close_status)
                .order_by("updated_at", "id")
                .select_for_update(skip_locked=True)
                .values_list("id", "parent_execution_id", "is_finalize_of_parent")[:limit]
            )
            if not rows:
                return 0
            self.objects.filter(id__in=[row[0] for row in rows]).update(**update)
            decrements = Counter(
                parent_id for _, parent_id, is_finalize in rows if parent_id and not is_finalize
            )
            # Parents in sorted order, so that parallel transactions never deadlock.
            for parent_id in sorted(decrements):
                self.objects.filter(execution_id=parent_id).update(
                    active_children_count=F("active_children_count") - decrements[parent_id],
                    updated_at=update.get("updated_at", F("updated_at")),
                )
        return len(rows)

    # -- deletes ----------------------------------------------------------------------------

    def delete_by_id(self, execution_id: str) -> None:
        self.objects.filter(execution_id=execution_id).delete()

    def delete_all(self) -> None:
        self.objects.all().delete()
