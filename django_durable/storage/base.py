"""The storage interface: every operation the engine performs on task executions.

The operations are the seed's storage interface in snake_case (seed-spec §19), plus
``update_many_by_id_and_settle``, the fast path that reports a finished execution to its
family in the same transaction. Rows are :class:`~django_durable.models.TaskExecution`
instances; updates are ``{field: value}`` dicts that are already complete (the derived fields
of :func:`django_durable.state.derive_update` included), ``None`` clearing a field.

Every method is atomic. The claim methods (``…_and_return``, the ``…_less_than`` sweeps and the
decrement) never hand the same row to two concurrent callers.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from ..models import TaskExecution

Update = dict[str, Any]


class Filters(TypedDict, total=False):
    """Optional exact-match preconditions of a by-id read or write."""

    status: str
    is_finished: bool
    is_sleeping_task: bool
    executor_id: str


@dataclass(slots=True)
class GetByIdRequest:
    execution_id: str
    filters: Filters | None = None


@dataclass(slots=True)
class UpdateByIdRequest:
    execution_id: str
    update: Update
    filters: Filters | None = None


@dataclass(slots=True)
class SettleRequest:
    """A by-id update that may finish its row, and then settles the row's family."""

    execution_id: str
    update: Update
    filters: Filters | None = None
    #: Lease given to a parent that this write claims for children processing.
    processing_expires_at: datetime | None = None
    #: The caller knows the row has no parent: a storage may then skip the family's
    #: transaction (it must still be right if the hint is wrong).
    top_level: bool = False


@dataclass(slots=True)
class UpdateByIdAndInsertChildrenRequest:
    execution_id: str
    update: Update
    children: Sequence[TaskExecution] = ()
    filters: Filters | None = None


@dataclass(slots=True)
class UpdateByParentRequest:
    parent_execution_id: str
    is_finished: bool
    update: Update


@dataclass(slots=True)
class SettleResult:
    """What an ``update_many_by_id_and_settle`` request did.

    ``updated`` tells whether the row matched its filters. ``parents_to_process`` are parents
    whose last active child this write was: they were claimed for children processing
    (``processing`` with a lease) in the same transaction and must now be processed.
    ``needs_close`` is true when the row still has close work for the close sweeper
    (cancelling unfinished children or a finalize).
    """

    updated: bool = False
    parents_to_process: list[TaskExecution] = field(default_factory=list)
    needs_close: bool = False
    #: The row as this write left it (when it matched), e.g. to hand its output on; a storage
    #: may leave it out for a ``top_level`` request (there is nobody to hand anything on to).
    finished_row: TaskExecution | None = None


class TaskExecutionsStorage(abc.ABC):
    """The operations of a task executions store (seed-spec §19), snake_case."""

    @abc.abstractmethod
    def insert_many(self, executions: Sequence[TaskExecution], *, announce: bool = False) -> bool:
        """Insert all rows; a duplicate execution id or sleeping-task unique id raises.

        With ``announce``, a storage that can wakes other processes' executors in the same
        transaction (PostgreSQL: a ``NOTIFY``) and returns ``True``; ``False`` means the
        caller must wake them itself."""

    @abc.abstractmethod
    def get_many_by_id(self, requests: Sequence[GetByIdRequest]) -> list[TaskExecution | None]:
        """One row per request when it exists and matches its filters, else ``None``."""

    @abc.abstractmethod
    def get_many_by_sleeping_task_unique_id(
        self, unique_ids: Sequence[str]
    ) -> list[TaskExecution | None]:
        """One row per sleeping-task unique id, ``None`` when absent."""

    @abc.abstractmethod
    def update_many_by_id(self, requests: Sequence[UpdateByIdRequest]) -> None:
        """Apply each update to its row if the row matches the filters; each is atomic."""

    @abc.abstractmethod
    def update_many_by_id_and_insert_children_if_updated(
        self, requests: Sequence[UpdateByIdAndInsertChildrenRequest]
    ) -> list[bool]:
        """Update each row and insert its children only if the row was updated.

        Returns, per request, whether its row was updated (and its children inserted).
        """

    @abc.abstractmethod
    def update_many_by_id_and_settle(self, requests: Sequence[SettleRequest]) -> list[SettleResult]:
        """Update each row; when that finished it, settle it with its family atomically.

        Settling a finished row: a child decrements its parent's active children count (and
        claims the parent for processing when it reaches zero); a finalize execution hands its
        output or error to its parent, which is then settled in turn; a row with nothing left
        to propagate is closed at once, others are left ``close_status = ready`` for the close
        sweeper. This replaces three background hops of the seed with one transaction.
        """

    @abc.abstractmethod
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
        """Claim rows ordered by priority (desc) then ``start_at``; set ``expires_at``.

        ``expires_at = update_expires_at_with_started_at + row.timeout``. Rows with a
        concurrency key are left to
        :meth:`update_by_status_and_start_at_less_than_within_concurrency_limits_and_return`.
        """

    def update_by_id_and_status_and_start_at_less_than_and_return(
        self,
        *,
        execution_id: str,
        status: str,
        start_at_less_than: datetime,
        update: Update,
        update_expires_at_with_started_at: datetime,
    ) -> TaskExecution | None:
        """Claim one row by id if it has ``status``, its start time passed and no one holds a
        lock on it; set ``expires_at`` as the claim above. Returns the updated row or ``None``.

        Used by the Celery runner (:mod:`django_durable.contrib.celery`), which is told which
        execution to run; a storage without it cannot be used with ``DISPATCH = "celery"``.
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot claim one execution by id (DISPATCH = 'celery')"
        )

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
        """The claim of rows that have a concurrency key (the other claim leaves them).

        Claims rows in the same order, but never so many that more than a row's
        ``max_concurrency`` executions of its ``concurrency_key`` run at once (across every
        claimer); a row whose key is full is passed over, not waited on.
        """
        raise NotImplementedError(f"{type(self).__name__} does not enforce concurrency limits")

    @abc.abstractmethod
    def update_by_status_and_on_children_finished_processing_status_and_active_children_count_zero_and_return(  # noqa: E501
        self,
        *,
        status: str,
        on_children_finished_processing_status: str,
        update: Update,
        limit: int,
    ) -> list[TaskExecution]:
        """Claim parents whose children all finished, ordered by ``updated_at``."""

    @abc.abstractmethod
    def update_by_close_status_and_return(
        self, *, close_status: str, update: Update, limit: int
    ) -> list[TaskExecution]:
        """Claim rows by close status, ordered by ``updated_at``."""

    @abc.abstractmethod
    def update_by_status_and_is_sleeping_task_and_expires_at_less_than(
        self,
        *,
        status: str,
        is_sleeping_task: bool,
        expires_at_less_than: datetime,
        update: Update,
        limit: int,
    ) -> int:
        """Update expired rows (ordered by ``expires_at``); return how many."""

    @abc.abstractmethod
    def update_by_on_children_finished_processing_expires_at_less_than(
        self,
        *,
        on_children_finished_processing_expires_at_less_than: datetime,
        update: Update,
        limit: int,
    ) -> int:
        """Update rows whose children-processing lease expired; return how many."""

    @abc.abstractmethod
    def update_by_close_expires_at_less_than(
        self, *, close_expires_at_less_than: datetime, update: Update, limit: int
    ) -> int:
        """Update rows whose closing lease expired; return how many."""

    @abc.abstractmethod
    def update_by_executor_id_and_needs_promise_cancellation_and_return(
        self, *, executor_id: str, needs_promise_cancellation: bool, update: Update, limit: int
    ) -> list[TaskExecution]:
        """Claim this executor's rows flagged for cancellation, ordered by ``updated_at``."""

    @abc.abstractmethod
    def get_many_by_parent_execution_id(
        self, parent_execution_ids: Sequence[str]
    ) -> list[list[TaskExecution]]:
        """All rows (children and finalize) of each parent."""

    @abc.abstractmethod
    def update_many_by_parent_execution_id_and_is_finished(
        self, requests: Sequence[UpdateByParentRequest]
    ) -> None:
        """Update the rows of each parent having the given ``is_finished``; each atomic."""

    @abc.abstractmethod
    def update_and_decrement_parent_active_children_count_by_is_finished_and_close_status(
        self, *, is_finished: bool, close_status: str, update: Update, limit: int
    ) -> int:
        """Update rows and decrement each parent's active children count, atomically."""

    @abc.abstractmethod
    def delete_by_id(self, execution_id: str) -> None:
        """Delete one row (tests and purging)."""

    @abc.abstractmethod
    def delete_all(self) -> None:
        """Delete every row (tests)."""
