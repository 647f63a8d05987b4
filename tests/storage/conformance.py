"""The storage conformance suite: one mixin that every storage implementation passes.

Seed scenarios S1-S15 (``seed-tests.md`` §S, the seed's ``runStorageTest``) translated to our
API (snake_case fields, datetimes, float seconds), T2 (a finalize execution finishing through
the engine's update path goes straight to close-ready), and the fast path
``update_many_by_id_and_settle``. A test module subclasses :class:`StorageConformance` and
overrides the ``storage`` fixture (see ``test_orm.py`` and ``test_layer.py``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_durable.models import (
    ChildrenProcessingStatus,
    CloseStatus,
    Status,
    TaskExecution,
    generate_execution_id,
)
from django_durable.state import derive_update
from django_durable.storage.base import (
    Filters,
    GetByIdRequest,
    SettleRequest,
    TaskExecutionsStorage,
    Update,
    UpdateByIdAndInsertChildrenRequest,
    UpdateByIdRequest,
    UpdateByParentRequest,
)

#: The seed's "≈": two times are the same if within 1500 ms.
TOLERANCE = timedelta(milliseconds=1500)
SECOND = timedelta(seconds=1)

#: Filters that a freshly inserted ``ready`` row matches, and filters that it does not match.
READY_MATCHING: list[Filters] = [
    {},
    {"status": Status.READY},
    {"status": Status.READY, "is_finished": False},
    {"is_finished": False},
    {"is_sleeping_task": False},
    {"status": Status.READY, "is_sleeping_task": False},
    {"status": Status.READY, "is_finished": False, "is_sleeping_task": False},
    {"is_finished": False, "is_sleeping_task": False},
]
READY_NOT_MATCHING: list[Filters] = [
    {"status": Status.RUNNING},
    {"status": Status.COMPLETED},
    {"is_finished": True},
    {"is_sleeping_task": True},
    {"status": Status.RUNNING, "is_finished": False},
    {"status": Status.READY, "is_finished": True},
    {"status": Status.READY, "is_sleeping_task": True},
    {"is_finished": True, "is_sleeping_task": False},
    {"status": Status.READY, "is_finished": False, "is_sleeping_task": True},
]


def for_each_filters(cases: Sequence[Filters], check: Callable[[Filters], None]) -> None:
    """Run ``check`` once per filters; a failure names the filters it failed with."""
    for filters in cases:
        try:
            check(filters)
        except AssertionError as error:
            raise AssertionError(f"with filters {filters!r}: {error}") from error


def make_row(
    now: datetime | None = None,
    *,
    sleeping_task_unique_id: str | None = None,
    parent: TaskExecution | None = None,
    is_finalize_of_parent: bool = False,
    **fields: Any,
) -> TaskExecution:
    """An unsaved row as the seed's conformance suite builds them (seed-tests §S)."""
    now = now or timezone.now()
    values: dict[str, Any] = {
        "task_id": "t_" + secrets.token_hex(6),
        "execution_id": generate_execution_id(),
        "retry_options": {"max_retries": 0},
        "sleep_before_run": 0.0,
        "timeout": 1.0,
        "input": "",
        "status": Status.RUNNING if sleeping_task_unique_id else Status.READY,
        "start_at": now,
        "created_at": now,
        "updated_at": now,
    }
    if sleeping_task_unique_id is not None:
        values["is_sleeping_task"] = True
        values["sleeping_task_unique_id"] = sleeping_task_unique_id
    if parent is not None:
        values.update(
            root_task_id=parent.root_task_id or parent.task_id,
            root_execution_id=parent.root_execution_id or parent.execution_id,
            parent_task_id=parent.task_id,
            parent_execution_id=parent.execution_id,
            is_finalize_of_parent=is_finalize_of_parent,
            index_in_parent_children=-1 if is_finalize_of_parent else 0,
        )
    values.update(fields)
    return TaskExecution(**values)


def assert_close(
    actual: datetime | None, expected: datetime, tolerance: timedelta = TOLERANCE
) -> None:
    assert actual is not None, f"expected a time close to {expected}, got None"
    assert abs(actual - expected) <= tolerance, f"{actual} is not within {tolerance} of {expected}"


def summary(row: TaskExecution) -> dict[str, str]:
    return {"task_id": row.task_id, "execution_id": row.execution_id}


def error_dict(error_type: str, message: str, is_retryable: bool, is_internal: bool) -> dict:
    return {
        "error_type": error_type,
        "message": message,
        "is_retryable": is_retryable,
        "is_internal": is_internal,
    }


#: Fields that a freshly inserted row leaves unset (seed S1).
UNSET_ON_INSERT = (
    "executor_id",
    "run_output",
    "output",
    "error",
    "started_at",
    "expires_at",
    "waiting_for_children_started_at",
    "waiting_for_finalize_started_at",
    "finished_at",
    "children",
    "finalize",
    "on_children_finished_processing_expires_at",
    "on_children_finished_processing_finished_at",
    "close_expires_at",
    "closed_at",
)


class StorageConformance:
    """Every scenario a :class:`TaskExecutionsStorage` must pass.

    Subclasses override the ``storage`` fixture; it must give database access (``db`` or
    ``transactional_db``).
    """

    #: Whether the requests of one ``…_many…`` call apply in a defined order (a storage's own
    #: batches do; the layer's adapter runs them from concurrent threads).
    BATCHES_KEEP_ORDER = True

    @pytest.fixture
    def storage(self) -> TaskExecutionsStorage:
        raise NotImplementedError("Override the storage fixture")

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def get(
        storage: TaskExecutionsStorage, execution_id: str, filters: Filters | None = None
    ) -> TaskExecution | None:
        return storage.get_many_by_id([GetByIdRequest(execution_id, filters)])[0]

    @classmethod
    def fetch(cls, storage: TaskExecutionsStorage, row: TaskExecution) -> TaskExecution:
        fetched = cls.get(storage, row.execution_id)
        assert fetched is not None, f"{row.execution_id} not found"
        return fetched

    @staticmethod
    def update(
        storage: TaskExecutionsStorage,
        row: TaskExecution,
        update: Update,
        filters: Filters | None = None,
    ) -> None:
        storage.update_many_by_id([UpdateByIdRequest(row.execution_id, update, filters)])

    @staticmethod
    def ids(rows: Sequence[TaskExecution | None]) -> list[str | None]:
        return [row.execution_id if row is not None else None for row in rows]

    # -- S1: insert and read back ----------------------------------------------------------

    def test_insert_many_round_trips_every_field(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        plain = make_row(now)
        family = make_row(
            now,
            root_task_id="root_task",
            root_execution_id="te_root",
            parent_task_id="parent_task",
            parent_execution_id="te_parent",
            index_in_parent_children=0,
            is_only_child_of_parent=False,
            is_finalize_of_parent=False,
            sleeping_task_unique_id="test_unique_id",
            status=Status.READY,
        )
        storage.insert_many([plain, family])

        for expected in (plain, family):
            row = self.fetch(storage, expected)
            for name in (
                "root_task_id",
                "root_execution_id",
                "parent_task_id",
                "parent_execution_id",
                "index_in_parent_children",
                "is_only_child_of_parent",
                "is_finalize_of_parent",
                "task_id",
                "execution_id",
                "retry_options",
                "sleep_before_run",
                "timeout",
                "input",
                "is_sleeping_task",
                "sleeping_task_unique_id",
            ):
                assert getattr(row, name) == getattr(expected, name), name
            for name in UNSET_ON_INSERT:
                assert getattr(row, name) is None, name
            assert row.status == Status.READY
            assert row.is_finished is False
            assert row.retry_attempts == 0
            assert_close(row.start_at, now)
            assert row.active_children_count == 0
            assert row.on_children_finished_processing_status == ChildrenProcessingStatus.IDLE
            assert row.close_status == CloseStatus.IDLE
            assert row.needs_promise_cancellation is False
            assert_close(row.created_at, now)
            assert_close(row.updated_at, row.created_at)
        assert self.fetch(storage, plain).root_execution_id is None

    def test_insert_many_rejects_a_duplicate_execution_id(
        self, storage: TaskExecutionsStorage
    ) -> None:
        row = make_row()
        storage.insert_many([row])
        with pytest.raises(Exception):  # noqa: B017 - any database error
            storage.insert_many([make_row(execution_id=row.execution_id)])
        assert self.fetch(storage, row).task_id == row.task_id

    def test_insert_many_rejects_a_duplicate_sleeping_task_unique_id(
        self, storage: TaskExecutionsStorage
    ) -> None:
        storage.insert_many([make_row(sleeping_task_unique_id="test_unique_id")])
        duplicate = make_row(sleeping_task_unique_id="test_unique_id")
        with pytest.raises(Exception):  # noqa: B017 - any database error
            storage.insert_many([duplicate])
        assert self.get(storage, duplicate.execution_id) is None

    def test_insert_many_of_nothing_does_nothing(self, storage: TaskExecutionsStorage) -> None:
        storage.insert_many([])
        assert storage.get_many_by_id([]) == []

    # -- S2: reads by id with filters --------------------------------------------------------

    def test_get_many_by_id_applies_filters(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        first, second = make_row(now), make_row(now)
        storage.insert_many([first, second])
        self.update(
            storage,
            second,
            {
                "status": Status.COMPLETED,
                "is_finished": True,
                "output": "output",
                "retry_attempts": 1,
                "finished_at": now,
                "children": [{"task_id": "child", "execution_id": "te_child"}],
                "close_status": CloseStatus.CLOSING,
                "close_expires_at": now,
                "updated_at": now,
            },
        )
        matching: list[Filters] = [
            {},
            {"status": Status.COMPLETED},
            {"status": Status.COMPLETED, "is_finished": True},
            {"is_finished": True},
            {"is_sleeping_task": False},
            {"status": Status.COMPLETED, "is_sleeping_task": False},
            {"status": Status.COMPLETED, "is_finished": True, "is_sleeping_task": False},
            {"is_finished": True, "is_sleeping_task": False},
        ]
        for filters in matching:
            row = self.get(storage, second.execution_id, filters)
            assert row is not None, filters
            assert row.status == Status.COMPLETED
            assert row.is_finished is True
            assert row.output == "output"
            assert row.error is None
            assert row.retry_attempts == 1
            assert_close(row.finished_at, now)
            assert row.children == [{"task_id": "child", "execution_id": "te_child"}]
            assert row.on_children_finished_processing_status == ChildrenProcessingStatus.IDLE
            assert row.close_status == CloseStatus.CLOSING
            assert_close(row.close_expires_at, now)
            assert row.closed_at is None
            assert_close(row.updated_at, now)
        not_matching: list[Filters] = [
            {"status": Status.READY},
            {"status": Status.COMPLETED, "is_finished": False},
            {"is_finished": False},
            {"is_sleeping_task": True},
            {"status": Status.READY, "is_finished": True},
            {"status": Status.COMPLETED, "is_sleeping_task": True},
            {"status": Status.COMPLETED, "is_finished": True, "is_sleeping_task": True},
            {"is_finished": False, "is_sleeping_task": False},
        ]
        for filters in not_matching:
            assert self.get(storage, second.execution_id, filters) is None, filters
        assert self.get(storage, "te_unknown") is None
        rows = storage.get_many_by_id(
            [GetByIdRequest(second.execution_id), GetByIdRequest(first.execution_id)]
        )
        assert self.ids(rows) == [second.execution_id, first.execution_id]

    def test_get_many_by_id_keeps_request_order_and_misses(
        self, storage: TaskExecutionsStorage
    ) -> None:
        rows = [make_row() for _ in range(3)]
        storage.insert_many(rows)
        requests = [
            GetByIdRequest(rows[2].execution_id),
            GetByIdRequest("te_missing"),
            GetByIdRequest(rows[0].execution_id, {"status": Status.RUNNING}),
            GetByIdRequest(rows[0].execution_id),
            GetByIdRequest(rows[2].execution_id, {"is_finished": False}),
        ]
        assert self.ids(storage.get_many_by_id(requests)) == [
            rows[2].execution_id,
            None,
            None,
            rows[0].execution_id,
            rows[2].execution_id,
        ]

    def test_get_many_by_id_filters_on_executor_id(self, storage: TaskExecutionsStorage) -> None:
        row = make_row(status=Status.RUNNING, executor_id="de_one")
        storage.insert_many([row])
        assert self.get(storage, row.execution_id, {"executor_id": "de_one"}) is not None
        assert self.get(storage, row.execution_id, {"executor_id": "de_two"}) is None

    # -- S3: reads by sleeping-task unique id --------------------------------------------------

    def test_get_many_by_sleeping_task_unique_id(self, storage: TaskExecutionsStorage) -> None:
        first = make_row(sleeping_task_unique_id="test_unique_id1", status=Status.READY)
        second = make_row(sleeping_task_unique_id="test_unique_id2", status=Status.READY)
        storage.insert_many([first, second])
        found = storage.get_many_by_sleeping_task_unique_id(["test_unique_id1"])
        assert self.ids(found) == [first.execution_id]
        assert found[0] is not None and found[0].status == Status.READY
        assert storage.get_many_by_sleeping_task_unique_id(["unknown"]) == [None]
        both = storage.get_many_by_sleeping_task_unique_id(["test_unique_id2", "test_unique_id1"])
        assert self.ids(both) == [second.execution_id, first.execution_id]

    # -- S4: updates by id --------------------------------------------------------------------

    def test_update_many_by_id_sets_and_unsets_every_field(
        self, storage: TaskExecutionsStorage
    ) -> None:
        for_each_filters(
            READY_MATCHING,
            lambda filters: self._update_many_by_id_sets_and_unsets_every_field(storage, filters),
        )

    def _update_many_by_id_sets_and_unsets_every_field(
        self, storage: TaskExecutionsStorage, filters: Filters
    ) -> None:
        now = timezone.now()
        row = make_row(now)
        storage.insert_many([row])
        error = error_dict("cancelled", "error_message", False, False)
        self.update(
            storage,
            row,
            {
                "executor_id": "executor_id",
                "status": Status.RUNNING,
                "is_finished": True,
                "run_output": "run_output",
                "output": "output",
                "error": error,
                "retry_attempts": 1,
                "started_at": now,
                "expires_at": now,
                "finished_at": now,
                "children": [{"task_id": "child", "execution_id": "te_child"}],
                "active_children_count": 1,
                "on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSING,
                "on_children_finished_processing_expires_at": now,
                "on_children_finished_processing_finished_at": now,
                "close_status": CloseStatus.CLOSING,
                "close_expires_at": now,
                "closed_at": now,
                "needs_promise_cancellation": True,
                "updated_at": now,
            },
            filters,
        )
        stored = self.fetch(storage, row)
        assert stored.executor_id == "executor_id"
        assert stored.status == Status.RUNNING
        assert stored.is_finished is True
        assert stored.run_output == "run_output"
        assert stored.output == "output"
        assert stored.error == error
        assert stored.retry_attempts == 1
        for name in (
            "started_at",
            "expires_at",
            "finished_at",
            "on_children_finished_processing_expires_at",
            "on_children_finished_processing_finished_at",
            "close_expires_at",
            "closed_at",
            "updated_at",
        ):
            assert_close(getattr(stored, name), now)
        assert stored.children == [{"task_id": "child", "execution_id": "te_child"}]
        assert stored.active_children_count == 1
        assert stored.on_children_finished_processing_status == ChildrenProcessingStatus.PROCESSING
        assert stored.close_status == CloseStatus.CLOSING
        assert stored.needs_promise_cancellation is True

        later = now + SECOND
        self.update(
            storage,
            row,
            {
                "needs_promise_cancellation": False,
                "executor_id": None,
                "run_output": None,
                "error": None,
                "expires_at": None,
                "on_children_finished_processing_expires_at": None,
                "close_expires_at": None,
                "updated_at": later,
            },
        )
        stored = self.fetch(storage, row)
        assert stored.needs_promise_cancellation is False
        for name in (
            "executor_id",
            "run_output",
            "error",
            "expires_at",
            "on_children_finished_processing_expires_at",
            "close_expires_at",
        ):
            assert getattr(stored, name) is None, name
        assert stored.output == "output"
        assert_close(stored.updated_at, later)

    def test_update_many_by_id_updates_several_rows(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        rows = [make_row(now), make_row(now), make_row(now)]
        storage.insert_many(rows)
        update = derive_update(now, {"status": Status.CANCELLED})
        storage.update_many_by_id(
            [
                UpdateByIdRequest(rows[0].execution_id, update),
                UpdateByIdRequest(rows[1].execution_id, update),
            ]
        )
        assert self.fetch(storage, rows[0]).status == Status.CANCELLED
        assert self.fetch(storage, rows[1]).status == Status.CANCELLED
        assert self.fetch(storage, rows[2]).status == Status.READY

    def test_update_many_by_id_skips_rows_not_matching_filters(
        self, storage: TaskExecutionsStorage
    ) -> None:
        for_each_filters(
            READY_NOT_MATCHING,
            lambda filters: self._update_many_by_id_skips_rows_not_matching_filters(
                storage, filters
            ),
        )

    def _update_many_by_id_skips_rows_not_matching_filters(
        self, storage: TaskExecutionsStorage, filters: Filters
    ) -> None:
        now = timezone.now()
        row = make_row(now - SECOND)
        storage.insert_many([row])
        self.update(storage, row, derive_update(now, {"status": Status.RUNNING}), filters)
        stored = self.fetch(storage, row)
        assert stored.status == Status.READY
        assert stored.started_at is None
        assert_close(stored.updated_at, now - SECOND, timedelta(milliseconds=1))

    def test_update_many_by_id_of_an_unknown_row_does_nothing(
        self, storage: TaskExecutionsStorage
    ) -> None:
        storage.update_many_by_id(
            [UpdateByIdRequest("te_missing", derive_update(timezone.now(), {"status": "running"}))]
        )
        storage.update_many_by_id([])
        assert self.get(storage, "te_missing") is None

    # -- S5: update and insert children -------------------------------------------------------

    def test_update_and_insert_children_when_the_row_matches(
        self, storage: TaskExecutionsStorage
    ) -> None:
        for_each_filters(
            READY_MATCHING,
            lambda filters: self._update_and_insert_children_when_the_row_matches(storage, filters),
        )

    def _update_and_insert_children_when_the_row_matches(
        self, storage: TaskExecutionsStorage, filters: Filters
    ) -> None:
        now = timezone.now()
        parent = make_row(now)
        storage.insert_many([parent])
        children = [make_row(now, parent=parent), make_row(now, parent=parent)]
        storage.update_many_by_id_and_insert_children_if_updated(
            [
                UpdateByIdAndInsertChildrenRequest(
                    parent.execution_id,
                    derive_update(
                        now,
                        {
                            "status": Status.WAITING_FOR_CHILDREN,
                            "children": [summary(child) for child in children],
                            "active_children_count": 2,
                        },
                    ),
                    children,
                    filters,
                )
            ]
        )
        stored = self.fetch(storage, parent)
        assert stored.status == Status.WAITING_FOR_CHILDREN
        assert stored.children == [summary(child) for child in children]
        assert stored.active_children_count == 2
        assert_close(stored.waiting_for_children_started_at, now)
        for child in children:
            stored_child = self.fetch(storage, child)
            assert stored_child.parent_execution_id == parent.execution_id
            assert stored_child.parent_task_id == parent.task_id
            assert stored_child.status == Status.READY

    def test_update_and_insert_children_inserts_nothing_when_the_row_does_not_match(
        self, storage: TaskExecutionsStorage
    ) -> None:
        for_each_filters(
            READY_NOT_MATCHING,
            lambda filters: (
                self._update_and_insert_children_inserts_nothing_when_the_row_does_not_match(
                    storage, filters
                )
            ),
        )

    def _update_and_insert_children_inserts_nothing_when_the_row_does_not_match(
        self, storage: TaskExecutionsStorage, filters: Filters
    ) -> None:
        now = timezone.now()
        parent = make_row(now)
        storage.insert_many([parent])
        child = make_row(now, parent=parent)
        storage.update_many_by_id_and_insert_children_if_updated(
            [
                UpdateByIdAndInsertChildrenRequest(
                    parent.execution_id,
                    derive_update(now, {"status": Status.WAITING_FOR_CHILDREN}),
                    [child],
                    filters,
                )
            ]
        )
        assert self.fetch(storage, parent).status == Status.READY
        assert self.get(storage, child.execution_id) is None

    def test_update_and_insert_children_of_two_parents(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        parents = [make_row(now), make_row(now)]
        storage.insert_many(parents)
        children = [make_row(now, parent=parent) for parent in parents]
        for parent, child in zip(parents, children, strict=True):
            storage.update_many_by_id_and_insert_children_if_updated(
                [
                    UpdateByIdAndInsertChildrenRequest(
                        parent.execution_id,
                        derive_update(now, {"status": Status.RUNNING}),
                        [child],
                    )
                ]
            )
        for parent, child in zip(parents, children, strict=True):
            assert self.fetch(storage, parent).status == Status.RUNNING
            assert self.fetch(storage, child).parent_execution_id == parent.execution_id

    def test_update_and_insert_children_in_one_call(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        parents = [make_row(now), make_row(now), make_row(now, status=Status.RUNNING)]
        storage.insert_many(parents)
        children = [[make_row(now, parent=parent) for _ in range(2)] for parent in parents]
        storage.update_many_by_id_and_insert_children_if_updated(
            [
                UpdateByIdAndInsertChildrenRequest(
                    parent.execution_id,
                    derive_update(now, {"status": Status.WAITING_FOR_CHILDREN}),
                    kids,
                    {"status": Status.READY},
                )
                for parent, kids in zip(parents, children, strict=True)
            ]
        )
        lists = storage.get_many_by_parent_execution_id([p.execution_id for p in parents])
        assert [len(rows) for rows in lists] == [2, 2, 0]
        assert self.fetch(storage, parents[2]).status == Status.RUNNING

    # -- S6: claim ready rows --------------------------------------------------------------------

    def test_claim_ready_rows_ordered_by_start_at(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        r0 = make_row(now, start_at=now - 5 * SECOND)
        r1 = make_row(now, start_at=now + 5 * SECOND)
        r2 = make_row(now, start_at=now)
        r3 = make_row(now, start_at=now - 5 * SECOND, status=Status.RUNNING)
        r4 = make_row(now, start_at=now - 5 * SECOND, status=Status.COMPLETED, is_finished=True)
        storage.insert_many([r0, r1, r2, r3, r4])
        started = now + SECOND
        update = {
            "status": Status.RUNNING,
            "executor_id": "test-executor",
            "started_at": started,
            "updated_at": started,
        }
        claimed = storage.update_by_status_and_start_at_less_than_and_return(
            status=Status.READY,
            start_at_less_than=now + 6 * SECOND,
            update=update,
            update_expires_at_with_started_at=started + 10 * SECOND,
            limit=2,
        )
        assert self.ids(claimed) == [r0.execution_id, r2.execution_id]
        for row in claimed:
            assert row.status == Status.RUNNING
            assert row.executor_id == "test-executor"
            assert_close(row.started_at, started)
            assert_close(row.expires_at, started + 11 * SECOND)
            stored = self.fetch(storage, row)
            assert stored.status == Status.RUNNING
            assert stored.executor_id == "test-executor"
            assert_close(stored.expires_at, started + 11 * SECOND)
        assert self.fetch(storage, r1).status == Status.READY
        assert self.fetch(storage, r3).status == Status.RUNNING
        assert self.fetch(storage, r3).executor_id is None
        assert self.fetch(storage, r4).status == Status.COMPLETED

        none = storage.update_by_status_and_start_at_less_than_and_return(
            status=Status.FAILED,
            start_at_less_than=now + 6 * SECOND,
            update=update,
            update_expires_at_with_started_at=started + 10 * SECOND,
            limit=2,
        )
        assert none == []

    def test_claim_ready_uses_each_rows_own_timeout(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        rows = [make_row(now - SECOND, timeout=timeout) for timeout in (1.0, 2.5, 30.0, 2.5)]
        storage.insert_many(rows)
        claimed = storage.update_by_status_and_start_at_less_than_and_return(
            status=Status.READY,
            start_at_less_than=now,
            update=derive_update(now, {"status": Status.RUNNING, "executor_id": "de_x"}),
            update_expires_at_with_started_at=now,
            limit=10,
        )
        assert len(claimed) == 4
        for row in claimed:
            expected = now + timedelta(seconds=row.timeout)
            assert_close(row.expires_at, expected, timedelta(milliseconds=1))
            assert_close(self.fetch(storage, row).expires_at, expected, timedelta(milliseconds=1))

    def test_claim_ready_prefers_priority_and_filters_queues(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        low = make_row(now, start_at=now - 3 * SECOND)
        high = make_row(now, start_at=now - SECOND, priority=10)
        other_queue = make_row(now, start_at=now - 5 * SECOND, queue="emails", priority=20)
        storage.insert_many([low, high, other_queue])
        update = derive_update(now, {"status": Status.RUNNING})
        claimed = storage.update_by_status_and_start_at_less_than_and_return(
            status=Status.READY,
            start_at_less_than=now,
            update=update,
            update_expires_at_with_started_at=now,
            limit=2,
            queues=["default"],
        )
        assert self.ids(claimed) == [high.execution_id, low.execution_id]
        assert self.fetch(storage, other_queue).status == Status.READY
        claimed = storage.update_by_status_and_start_at_less_than_and_return(
            status=Status.READY,
            start_at_less_than=now,
            update=update,
            update_expires_at_with_started_at=now,
            limit=2,
        )
        assert self.ids(claimed) == [other_queue.execution_id]

    def test_claim_ready_leaves_rows_with_a_concurrency_key_to_the_keyed_claim(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        plain = make_row(now, start_at=now - SECOND)
        keyed = make_row(
            now, start_at=now - 2 * SECOND, concurrency_key="tenant-a", max_concurrency=1
        )
        storage.insert_many([plain, keyed])
        claimed = storage.update_by_status_and_start_at_less_than_and_return(
            status=Status.READY,
            start_at_less_than=now,
            update=derive_update(now, {"status": Status.RUNNING}),
            update_expires_at_with_started_at=now,
            limit=10,
        )
        assert self.ids(claimed) == [plain.execution_id]
        assert self.fetch(storage, keyed).status == Status.READY

    def test_keyed_claim_never_exceeds_a_keys_limit_and_passes_over_full_keys(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()

        def keyed(key: str, limit: int, age: int, **fields: Any) -> TaskExecution:
            return make_row(
                now,
                start_at=now - age * SECOND,
                concurrency_key=key,
                max_concurrency=limit,
                **fields,
            )

        already_running = keyed("a", 2, 20, status=Status.RUNNING)
        # Key "a" (2 at once, 1 running) is first in line with three rows; "b" (1 at once)
        # has two behind them, the high-priority one first; "c" is in another queue.
        a1, a2, a3 = keyed("a", 2, 10), keyed("a", 2, 9), keyed("a", 2, 8)
        b_low, b_high = keyed("b", 1, 7), keyed("b", 1, 1, priority=5)
        c1 = keyed("c", 1, 30, queue="emails")
        plain = make_row(now, start_at=now - 40 * SECOND)
        storage.insert_many([already_running, a1, a2, a3, b_low, b_high, c1, plain])

        def claim(limit: int, queues: list[str] | None = None) -> list[TaskExecution]:
            return storage.update_by_status_and_start_at_less_than_within_concurrency_limits_and_return(  # noqa: E501
                status=Status.READY,
                start_at_less_than=now,
                update=derive_update(now, {"status": Status.RUNNING, "executor_id": "de_k"}),
                update_expires_at_with_started_at=now,
                limit=limit,
                queues=queues,
            )

        claimed = claim(10, ["default"])
        assert sorted(self.ids(claimed)) == sorted([b_high.execution_id, a1.execution_id])
        assert all(row.status == Status.RUNNING for row in claimed)
        for row in claimed:
            assert_close(row.expires_at, now + timedelta(seconds=row.timeout), SECOND)
        assert self.fetch(storage, plain).status == Status.READY  # not keyed: the other claim
        assert claim(10, ["default"]) == []  # every key is full
        assert self.ids(claim(10)) == [c1.execution_id]
        # A finished execution frees a slot of its key.
        storage.update_many_by_id(
            [UpdateByIdRequest(a1.execution_id, derive_update(now, {"status": Status.COMPLETED}))]
        )
        assert self.ids(claim(10)) == [a2.execution_id]
        assert self.fetch(storage, a3).status == Status.READY
        assert self.fetch(storage, b_low).status == Status.READY

    def test_claims_with_a_limit_of_zero_take_nothing(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        row = make_row(
            now - SECOND,
            status=Status.WAITING_FOR_CHILDREN,
            close_status=CloseStatus.READY,
            executor_id="de_x",
            needs_promise_cancellation=True,
        )
        ready = make_row(now - SECOND)
        storage.insert_many([row, ready])
        update = {"updated_at": now}
        for limit in (0, -1):
            assert (
                storage.update_by_status_and_start_at_less_than_and_return(
                    status=Status.READY,
                    start_at_less_than=now,
                    update=update,
                    update_expires_at_with_started_at=now,
                    limit=limit,
                )
                == []
            )
            assert (
                storage.update_by_status_and_on_children_finished_processing_status_and_active_children_count_zero_and_return(
                    status=Status.WAITING_FOR_CHILDREN,
                    on_children_finished_processing_status=ChildrenProcessingStatus.IDLE,
                    update=update,
                    limit=limit,
                )
                == []
            )
            assert (
                storage.update_by_close_status_and_return(
                    close_status=CloseStatus.READY, update=update, limit=limit
                )
                == []
            )
            assert (
                storage.update_by_executor_id_and_needs_promise_cancellation_and_return(
                    executor_id="de_x", needs_promise_cancellation=True, update=update, limit=limit
                )
                == []
            )
            assert (
                storage.update_and_decrement_parent_active_children_count_by_is_finished_and_close_status(
                    is_finished=False, close_status=CloseStatus.IDLE, update=update, limit=limit
                )
                == 0
            )
        assert_close(self.fetch(storage, row).updated_at, now - SECOND, timedelta(milliseconds=1))

    # -- S7: claim parents whose children finished ------------------------------------------------

    def test_claim_parents_with_zero_active_children_ordered_by_updated_at(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        waiting = {"status": Status.WAITING_FOR_CHILDREN}
        p0 = make_row(now, updated_at=now - 5 * SECOND, **waiting)
        p1 = make_row(now, updated_at=now + 5 * SECOND, **waiting)
        p2 = make_row(now, updated_at=now, **waiting)
        p3 = make_row(now, updated_at=now - 5 * SECOND, active_children_count=2, **waiting)
        p4 = make_row(now, updated_at=now - 5 * SECOND, status=Status.COMPLETED, is_finished=True)
        storage.insert_many([p0, p1, p2, p3, p4])
        lease = now + 60 * SECOND
        claimed = storage.update_by_status_and_on_children_finished_processing_status_and_active_children_count_zero_and_return(  # noqa: E501
            status=Status.WAITING_FOR_CHILDREN,
            on_children_finished_processing_status=ChildrenProcessingStatus.IDLE,
            update={
                "on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSING,
                "on_children_finished_processing_expires_at": lease,
                "updated_at": now,
            },
            limit=2,
        )
        assert self.ids(claimed) == [p0.execution_id, p2.execution_id]
        for row in claimed:
            assert row.on_children_finished_processing_status == ChildrenProcessingStatus.PROCESSING
            assert_close(row.on_children_finished_processing_expires_at, lease)
            stored = self.fetch(storage, row)
            assert (
                stored.on_children_finished_processing_status == ChildrenProcessingStatus.PROCESSING
            )
            assert_close(stored.on_children_finished_processing_expires_at, lease)
        for row in (p1, p3, p4):
            stored = self.fetch(storage, row)
            assert stored.on_children_finished_processing_status == ChildrenProcessingStatus.IDLE
            assert stored.on_children_finished_processing_expires_at is None

    # -- S8: claim close-ready rows ---------------------------------------------------------------

    def test_claim_close_ready_rows_ordered_by_updated_at(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        finished = {"status": Status.COMPLETED, "is_finished": True}
        past = make_row(
            now, updated_at=now - 5 * SECOND, close_status=CloseStatus.READY, **finished
        )
        future = make_row(
            now, updated_at=now + 5 * SECOND, close_status=CloseStatus.READY, **finished
        )
        present = make_row(now, updated_at=now, close_status=CloseStatus.READY, **finished)
        closing = make_row(
            now, updated_at=now - 5 * SECOND, close_status=CloseStatus.CLOSING, **finished
        )
        closed = make_row(
            now, updated_at=now - 5 * SECOND, close_status=CloseStatus.CLOSED, **finished
        )
        storage.insert_many([past, future, present, closing, closed])
        lease = now + 60 * SECOND
        claimed = storage.update_by_close_status_and_return(
            close_status=CloseStatus.READY,
            update={
                "close_status": CloseStatus.CLOSING,
                "close_expires_at": lease,
                "updated_at": now,
            },
            limit=2,
        )
        assert self.ids(claimed) == [past.execution_id, present.execution_id]
        for row in claimed:
            assert row.close_status == CloseStatus.CLOSING
            assert_close(row.close_expires_at, lease)
            stored = self.fetch(storage, row)
            assert stored.close_status == CloseStatus.CLOSING
            assert_close(stored.close_expires_at, lease)
        assert self.fetch(storage, future).close_status == CloseStatus.READY
        assert self.fetch(storage, closing).close_status == CloseStatus.CLOSING
        assert self.fetch(storage, closing).close_expires_at is None
        assert self.fetch(storage, closed).close_status == CloseStatus.CLOSED

    # -- S9: expiry of running rows ---------------------------------------------------------------

    def test_expire_running_rows(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        running = {"status": Status.RUNNING, "executor_id": "de_x"}
        e0 = make_row(now, expires_at=now - 5 * SECOND, **running)
        e1 = make_row(now, expires_at=now + 5 * SECOND, **running)
        e2 = make_row(now, expires_at=now, **running)
        e3 = make_row(now, expires_at=now - 5 * SECOND, status=Status.COMPLETED, is_finished=True)
        e4 = make_row(now, sleeping_task_unique_id="sleeping", expires_at=now - 5 * SECOND)
        no_expiry = make_row(now, status=Status.RUNNING)
        storage.insert_many([e0, e1, e2, e3, e4, no_expiry])
        expired_error = error_dict("generic", "Task expired", True, True)
        count = storage.update_by_status_and_is_sleeping_task_and_expires_at_less_than(
            status=Status.RUNNING,
            is_sleeping_task=False,
            expires_at_less_than=now + SECOND,
            update=derive_update(
                now, {"status": Status.READY, "error": expired_error, "start_at": now}
            ),
            limit=2,
        )
        assert count == 2
        for row in (e0, e2):
            stored = self.fetch(storage, row)
            assert stored.status == Status.READY
            assert stored.error == expired_error
            assert_close(stored.start_at, now)
            assert stored.executor_id is None
            assert stored.expires_at is None
        assert self.fetch(storage, e1).status == Status.RUNNING
        assert self.fetch(storage, e3).status == Status.COMPLETED
        assert self.fetch(storage, e4).status == Status.RUNNING
        assert self.fetch(storage, no_expiry).status == Status.RUNNING

        timed_out_error = error_dict("timed_out", "Task timed out", True, False)
        count = storage.update_by_status_and_is_sleeping_task_and_expires_at_less_than(
            status=Status.RUNNING,
            is_sleeping_task=True,
            expires_at_less_than=now + SECOND,
            update=derive_update(now, {"status": Status.TIMED_OUT, "error": timed_out_error}),
            limit=2,
        )
        assert count == 1
        stored = self.fetch(storage, e4)
        assert stored.status == Status.TIMED_OUT
        assert stored.error == timed_out_error
        assert stored.is_finished is True

    def test_expire_running_rows_ordered_by_expires_at(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        rows = [
            make_row(now, status=Status.RUNNING, expires_at=now - offset * SECOND)
            for offset in (1, 3, 2)
        ]
        storage.insert_many(rows)
        count = storage.update_by_status_and_is_sleeping_task_and_expires_at_less_than(
            status=Status.RUNNING,
            is_sleeping_task=False,
            expires_at_less_than=now,
            update=derive_update(now, {"status": Status.READY}),
            limit=2,
        )
        assert count == 2
        assert [self.fetch(storage, row).status for row in rows] == [
            Status.RUNNING,
            Status.READY,
            Status.READY,
        ]

    # -- S10: children-processing lease expiry ----------------------------------------------------

    def test_expire_children_processing_leases(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        processing = {
            "status": Status.WAITING_FOR_CHILDREN,
            "on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSING,
        }
        past = make_row(
            now, on_children_finished_processing_expires_at=now - 5 * SECOND, **processing
        )
        future = make_row(
            now, on_children_finished_processing_expires_at=now + 5 * SECOND, **processing
        )
        present = make_row(now, on_children_finished_processing_expires_at=now, **processing)
        old = now - 10 * SECOND
        processed = make_row(
            now,
            updated_at=old,
            status=Status.COMPLETED,
            is_finished=True,
            on_children_finished_processing_status=ChildrenProcessingStatus.PROCESSED,
        )
        storage.insert_many([past, future, present, processed])
        count = storage.update_by_on_children_finished_processing_expires_at_less_than(
            on_children_finished_processing_expires_at_less_than=now + SECOND,
            update=derive_update(
                now,
                {"on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSED},
            ),
            limit=2,
        )
        assert count == 2
        for row in (past, present):
            stored = self.fetch(storage, row)
            assert (
                stored.on_children_finished_processing_status == ChildrenProcessingStatus.PROCESSED
            )
            assert stored.on_children_finished_processing_expires_at is None
        stored = self.fetch(storage, future)
        assert stored.on_children_finished_processing_status == ChildrenProcessingStatus.PROCESSING
        assert_close(stored.on_children_finished_processing_expires_at, now + 5 * SECOND)
        assert self.fetch(storage, processed).updated_at < now

    # -- S11: close lease expiry -----------------------------------------------------------------

    def test_expire_closing_leases(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        closing = {
            "status": Status.COMPLETED,
            "is_finished": True,
            "close_status": CloseStatus.CLOSING,
        }
        past = make_row(now, close_expires_at=now - 5 * SECOND, **closing)
        future = make_row(now, close_expires_at=now + 5 * SECOND, **closing)
        present = make_row(now, close_expires_at=now, **closing)
        ready = make_row(
            now,
            updated_at=now - 10 * SECOND,
            status=Status.COMPLETED,
            is_finished=True,
            close_status=CloseStatus.READY,
        )
        storage.insert_many([past, future, present, ready])
        count = storage.update_by_close_expires_at_less_than(
            close_expires_at_less_than=now + SECOND,
            update=derive_update(now, {"close_status": CloseStatus.CLOSED}),
            limit=2,
        )
        assert count == 2
        for row in (past, present):
            stored = self.fetch(storage, row)
            assert stored.close_status == CloseStatus.CLOSED
            assert stored.close_expires_at is None
            assert_close(stored.closed_at, now)
        stored = self.fetch(storage, future)
        assert stored.close_status == CloseStatus.CLOSING
        assert_close(stored.close_expires_at, now + 5 * SECOND)
        stored = self.fetch(storage, ready)
        assert stored.close_status == CloseStatus.READY
        assert stored.updated_at < now

    # -- S12: promise-cancellation claim ----------------------------------------------------------

    def test_claim_promise_cancellations_of_one_executor(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        cancelled = {"status": Status.CANCELLED, "is_finished": True}
        row0 = make_row(
            now,
            executor_id="executor1",
            needs_promise_cancellation=True,
            updated_at=now - 5 * SECOND,
            **cancelled,
        )
        row1 = make_row(
            now,
            executor_id="executor2",
            needs_promise_cancellation=True,
            updated_at=now - 5 * SECOND,
            **cancelled,
        )
        row2 = make_row(
            now,
            executor_id="executor1",
            needs_promise_cancellation=True,
            updated_at=now + 5 * SECOND,
            **cancelled,
        )
        row3 = make_row(
            now,
            executor_id="executor1",
            needs_promise_cancellation=True,
            updated_at=now,
            **cancelled,
        )
        row4 = make_row(
            now,
            executor_id="executor1",
            needs_promise_cancellation=False,
            updated_at=now - 5 * SECOND,
            **cancelled,
        )
        storage.insert_many([row0, row1, row2, row3, row4])
        claimed = storage.update_by_executor_id_and_needs_promise_cancellation_and_return(
            executor_id="executor1",
            needs_promise_cancellation=True,
            update=derive_update(now, {"needs_promise_cancellation": False}),
            limit=2,
        )
        assert self.ids(claimed) == [row0.execution_id, row3.execution_id]
        for row in claimed:
            assert row.needs_promise_cancellation is False
            assert self.fetch(storage, row).needs_promise_cancellation is False
        assert self.fetch(storage, row1).needs_promise_cancellation is True
        assert self.fetch(storage, row2).needs_promise_cancellation is True
        assert self.fetch(storage, row4).needs_promise_cancellation is False

    # -- S13: children lookup ---------------------------------------------------------------------

    def test_get_many_by_parent_execution_id(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        parent1, parent2, lonely, unrelated_parent = (make_row(now) for _ in range(4))
        children1 = [
            make_row(now, parent=parent1),
            make_row(now, parent=parent1, index_in_parent_children=1),
            make_row(now, parent=parent1, is_finalize_of_parent=True),
        ]
        children2 = [make_row(now, parent=parent2)]
        unrelated_child = make_row(now, parent=unrelated_parent)
        storage.insert_many(
            [parent1, parent2, lonely, unrelated_parent, *children1, *children2, unrelated_child]
        )
        (found,) = storage.get_many_by_parent_execution_id([parent1.execution_id])
        assert sorted((r.task_id, r.execution_id) for r in found) == sorted(
            (r.task_id, r.execution_id) for r in children1
        )
        for row in found:
            assert row.parent_execution_id == parent1.execution_id
            assert row.parent_task_id == parent1.task_id
        finalize = next(r for r in found if r.is_finalize_of_parent)
        assert finalize.index_in_parent_children == -1
        assert storage.get_many_by_parent_execution_id(["te_unknown"]) == [[]]
        assert storage.get_many_by_parent_execution_id([lonely.execution_id]) == [[]]
        lists = storage.get_many_by_parent_execution_id(
            [parent1.execution_id, parent2.execution_id]
        )
        assert [len(rows) for rows in lists] == [3, 1]
        assert lists[1][0].execution_id == children2[0].execution_id
        assert storage.get_many_by_parent_execution_id([]) == []

    # -- S14: bulk update of a parent's children by is_finished -----------------------------------

    def test_update_many_by_parent_execution_id_and_is_finished(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        parent = make_row(now, status=Status.FAILED, is_finished=True)
        ready = make_row(now, parent=parent)
        completed = make_row(now, parent=parent, status=Status.COMPLETED, is_finished=True)
        running = make_row(now, parent=parent, status=Status.RUNNING, executor_id="de_x")
        storage.insert_many([parent, ready, completed, running])
        cancel_error = error_dict("cancelled", "Parent task cancelled", False, False)
        storage.update_many_by_parent_execution_id_and_is_finished(
            [
                UpdateByParentRequest(
                    parent.execution_id,
                    False,
                    derive_update(
                        now,
                        {
                            "status": Status.CANCELLED,
                            "error": cancel_error,
                            "needs_promise_cancellation": True,
                        },
                    ),
                )
            ]
        )
        for row in (ready, running):
            stored = self.fetch(storage, row)
            assert stored.status == Status.CANCELLED
            assert stored.is_finished is True
            assert stored.error == cancel_error
        assert self.fetch(storage, running).executor_id == "de_x"
        stored = self.fetch(storage, completed)
        assert stored.status == Status.COMPLETED
        assert stored.error is None

        newcomer = make_row(now, parent=parent, status=Status.RUNNING)
        storage.insert_many([newcomer])
        storage.update_many_by_parent_execution_id_and_is_finished(
            [
                UpdateByParentRequest(
                    parent.execution_id,
                    True,
                    derive_update(now, {"close_status": CloseStatus.READY}),
                )
            ]
        )
        for row in (ready, completed, running):
            assert self.fetch(storage, row).close_status == CloseStatus.READY
        assert self.fetch(storage, newcomer).close_status == CloseStatus.IDLE
        assert self.fetch(storage, parent).close_status == CloseStatus.IDLE
        storage.update_many_by_parent_execution_id_and_is_finished([])

    # -- S15: close-ready and parent decrement ----------------------------------------------------

    def test_mark_close_ready_decrements_parents_atomically(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        parent1, parent2 = make_row(now), make_row(now)
        storage.insert_many([parent1, parent2])
        finished = {"status": Status.COMPLETED, "is_finished": True}
        c0 = make_row(now, parent=parent1, updated_at=now - 5 * SECOND, **finished)
        c1 = make_row(
            now, parent=parent1, updated_at=now - 5 * SECOND, status=Status.WAITING_FOR_CHILDREN
        )
        c2 = make_row(now, parent=parent2, updated_at=now + 5 * SECOND, **finished)
        c3 = make_row(now, parent=parent2, updated_at=now, status=Status.FAILED, is_finished=True)
        for parent, count, children in ((parent1, 3, [c0, c1]), (parent2, 2, [c2, c3])):
            storage.update_many_by_id_and_insert_children_if_updated(
                [
                    UpdateByIdAndInsertChildrenRequest(
                        parent.execution_id,
                        derive_update(
                            now,
                            {
                                "status": Status.WAITING_FOR_CHILDREN,
                                "children": [summary(child) for child in children],
                                "active_children_count": count,
                            },
                        ),
                        children,
                    )
                ]
            )

        def mark(limit: int) -> int:
            return storage.update_and_decrement_parent_active_children_count_by_is_finished_and_close_status(  # noqa: E501
                is_finished=True,
                close_status=CloseStatus.IDLE,
                update=derive_update(now, {"close_status": CloseStatus.READY}),
                limit=limit,
            )

        assert mark(2) == 2
        assert self.fetch(storage, c0).close_status == CloseStatus.READY
        assert self.fetch(storage, c3).close_status == CloseStatus.READY
        assert self.fetch(storage, c1).close_status == CloseStatus.IDLE
        assert self.fetch(storage, c2).close_status == CloseStatus.IDLE
        assert self.fetch(storage, parent1).active_children_count == 2
        assert self.fetch(storage, parent2).active_children_count == 1

        assert mark(10) == 1
        assert self.fetch(storage, c2).close_status == CloseStatus.READY
        assert self.fetch(storage, parent1).active_children_count == 2
        assert self.fetch(storage, parent2).active_children_count == 0
        assert mark(10) == 0

    def test_mark_close_ready_decrements_a_parent_once_per_child(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        parent = make_row(now, status=Status.WAITING_FOR_CHILDREN, active_children_count=3)
        children = [
            make_row(now, parent=parent, status=Status.COMPLETED, is_finished=True)
            for _ in range(3)
        ]
        top_level = make_row(now, status=Status.COMPLETED, is_finished=True)
        storage.insert_many([parent, *children, top_level])
        count = storage.update_and_decrement_parent_active_children_count_by_is_finished_and_close_status(  # noqa: E501
            is_finished=True,
            close_status=CloseStatus.IDLE,
            update=derive_update(now, {"close_status": CloseStatus.READY}),
            limit=10,
        )
        assert count == 4
        stored = self.fetch(storage, parent)
        assert stored.active_children_count == 0
        assert_close(stored.updated_at, now)
        assert self.fetch(storage, top_level).close_status == CloseStatus.READY

    # -- T2: a finalize execution finishing goes straight to close-ready --------------------------

    def test_finalize_execution_finishing_is_close_ready(
        self, storage: TaskExecutionsStorage
    ) -> None:
        # The engine's update path (StorageLayer.update_by_id with the row) adds close_status;
        # at the storage level the complete update carries it.
        from django_durable.state import with_finalize_close

        now = timezone.now()
        parent = make_row(now, status=Status.WAITING_FOR_FINALIZE)
        finalize = make_row(now, parent=parent, is_finalize_of_parent=True, status=Status.RUNNING)
        storage.insert_many([parent, finalize])
        update = with_finalize_close({"status": Status.COMPLETED, "output": "1"}, True)
        self.update(storage, finalize, derive_update(now, update), {"status": Status.RUNNING})
        stored = self.fetch(storage, finalize)
        assert stored.status == Status.COMPLETED
        assert stored.close_status == CloseStatus.READY
        assert self.fetch(storage, parent).active_children_count == 0

    # -- the fast path: update_many_by_id_and_settle ----------------------------------------------

    @staticmethod
    def settle(
        storage: TaskExecutionsStorage,
        row: TaskExecution,
        update: Update,
        filters: Filters | None = None,
        lease: datetime | None = None,
        now: datetime | None = None,
    ) -> Any:
        now = now or timezone.now()
        (result,) = storage.update_many_by_id_and_settle(
            [SettleRequest(row.execution_id, derive_update(now, update), filters, lease)]
        )
        return result

    def family(
        self,
        storage: TaskExecutionsStorage,
        children: int,
        *,
        active: int | None = None,
        **parent_fields: Any,
    ) -> tuple[TaskExecution, list[TaskExecution]]:
        """A parent waiting for ``children`` running children."""
        now = timezone.now()
        parent = make_row(
            now,
            status=Status.WAITING_FOR_CHILDREN,
            active_children_count=children if active is None else active,
            run_output='"run"',
            **parent_fields,
        )
        kids = [
            make_row(
                now,
                parent=parent,
                status=Status.RUNNING,
                executor_id="de_x",
                index_in_parent_children=index,
            )
            for index in range(children)
        ]
        parent.children = [summary(kid) for kid in kids]
        storage.insert_many([parent, *kids])
        return parent, kids

    def test_settle_finished_child_decrements_its_parent(
        self, storage: TaskExecutionsStorage
    ) -> None:
        parent, kids = self.family(storage, 2)
        lease = timezone.now() + 60 * SECOND
        result = self.settle(
            storage,
            kids[0],
            {"status": Status.COMPLETED, "output": "1"},
            {"status": "running"},
            lease,
        )
        assert result.updated is True
        assert result.parents_to_process == []
        assert result.needs_close is False
        stored_parent = self.fetch(storage, parent)
        assert stored_parent.active_children_count == 1
        assert stored_parent.on_children_finished_processing_status == ChildrenProcessingStatus.IDLE
        child = self.fetch(storage, kids[0])
        assert child.status == Status.COMPLETED
        assert child.output == "1"
        assert child.is_finished is True
        assert child.executor_id is None
        assert child.close_status == CloseStatus.CLOSED
        assert child.closed_at is not None

    def test_settle_last_child_claims_its_parent_with_a_lease(
        self, storage: TaskExecutionsStorage
    ) -> None:
        parent, kids = self.family(storage, 2, active=1)
        now = timezone.now()
        lease = now + 60 * SECOND
        result = self.settle(
            storage,
            kids[1],
            {"status": Status.FAILED, "error": error_dict("generic", "boom", False, False)},
            {"status": Status.RUNNING},
            lease,
            now,
        )
        assert result.updated is True
        assert self.ids(result.parents_to_process) == [parent.execution_id]
        (claimed,) = result.parents_to_process
        assert claimed.active_children_count == 0
        assert claimed.on_children_finished_processing_status == ChildrenProcessingStatus.PROCESSING
        assert_close(claimed.on_children_finished_processing_expires_at, lease, timedelta(0))
        assert claimed.run_output == '"run"'
        stored = self.fetch(storage, parent)
        assert stored.on_children_finished_processing_status == ChildrenProcessingStatus.PROCESSING
        assert_close(stored.on_children_finished_processing_expires_at, lease, timedelta(0))
        child = self.fetch(storage, kids[1])
        assert child.status == Status.FAILED
        assert child.close_status == CloseStatus.CLOSED
        # The sweeper finds nothing left to do.
        assert (
            storage.update_by_status_and_on_children_finished_processing_status_and_active_children_count_zero_and_return(
                status=Status.WAITING_FOR_CHILDREN,
                on_children_finished_processing_status=ChildrenProcessingStatus.IDLE,
                update={"updated_at": now},
                limit=10,
            )
            == []
        )
        assert (
            storage.update_and_decrement_parent_active_children_count_by_is_finished_and_close_status(
                is_finished=True,
                close_status=CloseStatus.IDLE,
                update={"updated_at": now},
                limit=10,
            )
            == 0
        )

    def test_settle_last_child_without_a_lease_leaves_the_parent_to_the_sweeper(
        self, storage: TaskExecutionsStorage
    ) -> None:
        parent, kids = self.family(storage, 1)
        now = timezone.now()
        result = self.settle(storage, kids[0], {"status": Status.COMPLETED, "output": "1"}, now=now)
        assert result.updated is True
        assert result.parents_to_process == []
        stored = self.fetch(storage, parent)
        assert stored.active_children_count == 0
        assert stored.on_children_finished_processing_status == ChildrenProcessingStatus.IDLE
        claimed = storage.update_by_status_and_on_children_finished_processing_status_and_active_children_count_zero_and_return(  # noqa: E501
            status=Status.WAITING_FOR_CHILDREN,
            on_children_finished_processing_status=ChildrenProcessingStatus.IDLE,
            update=derive_update(
                now,
                {"on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSING},
            ),
            limit=10,
        )
        assert self.ids(claimed) == [parent.execution_id]

    def test_settle_children_in_one_call_claims_the_parent_once(
        self, storage: TaskExecutionsStorage
    ) -> None:
        parent, kids = self.family(storage, 3)
        other_parent, other_kids = self.family(storage, 1)
        now = timezone.now()
        lease = now + 60 * SECOND
        update = derive_update(now, {"status": Status.COMPLETED, "output": "1"})
        results = storage.update_many_by_id_and_settle(
            [
                SettleRequest(kids[2].execution_id, update, {"status": Status.RUNNING}, lease),
                SettleRequest("te_missing", update, None, lease),
                SettleRequest(kids[0].execution_id, update, {"status": Status.RUNNING}, lease),
                SettleRequest(other_kids[0].execution_id, update, {"status": Status.READY}, lease),
                SettleRequest(kids[1].execution_id, update, {"status": Status.RUNNING}, lease),
            ]
        )
        assert [result.updated for result in results] == [True, False, True, False, True]
        claimed = [p.execution_id for result in results for p in result.parents_to_process]
        assert claimed == [parent.execution_id]
        stored = self.fetch(storage, parent)
        assert stored.active_children_count == 0
        assert stored.on_children_finished_processing_status == ChildrenProcessingStatus.PROCESSING
        assert self.fetch(storage, other_parent).active_children_count == 1
        assert self.fetch(storage, other_kids[0]).status == Status.RUNNING

    def test_settle_claims_a_parent_only_for_a_request_with_a_lease(
        self, storage: TaskExecutionsStorage
    ) -> None:
        """Each request's own lease decides (batching mixes executors' and cancels' requests)."""
        now = timezone.now()
        lease = now + 60 * SECOND
        update = derive_update(now, {"status": Status.COMPLETED, "output": "1"})
        for leases in ((None, lease), (lease, None)):
            (p1, (c1,)), (p2, (c2,)) = self.family(storage, 1), self.family(storage, 1)
            results = storage.update_many_by_id_and_settle(
                [
                    SettleRequest(c1.execution_id, update, {"status": Status.RUNNING}, leases[0]),
                    SettleRequest(c2.execution_id, update, {"status": Status.RUNNING}, leases[1]),
                ]
            )
            assert [self.ids(r.parents_to_process) for r in results] == [
                [p1.execution_id] if leases[0] else [],
                [p2.execution_id] if leases[1] else [],
            ], leases
            for parent, parent_lease in ((p1, leases[0]), (p2, leases[1])):
                stored = self.fetch(storage, parent)
                assert stored.active_children_count == 0
                if parent_lease is None:
                    # Left for the sweeper: nobody was handed this parent.
                    assert (
                        stored.on_children_finished_processing_status
                        == ChildrenProcessingStatus.IDLE
                    )
                else:
                    assert stored.on_children_finished_processing_expires_at == parent_lease

    def test_settle_cancelled_ready_child_decrements_its_parent(
        self, storage: TaskExecutionsStorage
    ) -> None:
        parent, _ = self.family(storage, 0, active=1)
        child = make_row(parent=parent)
        storage.insert_many([child])
        result = self.settle(
            storage,
            child,
            {
                "status": Status.CANCELLED,
                "error": error_dict("cancelled", "Task execution cancelled", False, False),
                "needs_promise_cancellation": True,
            },
            {"is_finished": False},
        )
        assert result.updated is True
        stored = self.fetch(storage, child)
        assert stored.status == Status.CANCELLED
        assert stored.needs_promise_cancellation is True
        assert stored.close_status == CloseStatus.CLOSED
        assert self.fetch(storage, parent).active_children_count == 0

    def test_settle_finished_finalize_completes_its_parent(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        parent = make_row(
            now,
            status=Status.WAITING_FOR_FINALIZE,
            run_output='"run"',
            children=[{"task_id": "child", "execution_id": "te_child"}],
            waiting_for_finalize_started_at=now,
        )
        finalize = make_row(now, parent=parent, is_finalize_of_parent=True, status=Status.RUNNING)
        parent.finalize = summary(finalize)
        storage.insert_many([parent, finalize])
        lease = now + 60 * SECOND
        result = self.settle(
            storage,
            finalize,
            {"status": Status.COMPLETED, "output": '"final"'},
            {"status": Status.RUNNING},
            lease,
        )
        assert result.updated is True
        assert result.parents_to_process == []
        assert result.needs_close is False
        stored = self.fetch(storage, parent)
        assert stored.status == Status.COMPLETED
        assert stored.output == '"final"'
        assert stored.is_finished is True
        assert stored.finished_at is not None
        assert stored.run_output is None
        assert stored.error is None
        assert stored.close_status == CloseStatus.CLOSED
        stored_finalize = self.fetch(storage, finalize)
        assert stored_finalize.status == Status.COMPLETED
        assert stored_finalize.close_status == CloseStatus.CLOSED
        # A finalize execution never counts as an active child.
        assert stored.active_children_count == 0

    def test_settle_batch_sees_what_an_earlier_request_did_to_the_family(
        self, storage: TaskExecutionsStorage
    ) -> None:
        """A batch finishes a finalize (which completes its parent), then asks to cancel that
        parent if still unfinished: the cancel must see the parent completed."""
        if not self.BATCHES_KEEP_ORDER:
            pytest.skip("the requests of a batch run concurrently here")
        now = timezone.now()
        parent = make_row(
            now,
            execution_id="te_z_parent",
            status=Status.WAITING_FOR_FINALIZE,
            run_output='"run"',
            waiting_for_finalize_started_at=now,
        )
        finalize = make_row(
            now,
            parent=parent,
            execution_id="te_a_finalize",
            is_finalize_of_parent=True,
            status=Status.RUNNING,
        )
        parent.finalize = summary(finalize)
        storage.insert_many([parent, finalize])
        lease = now + 60 * SECOND
        finish, cancel = storage.update_many_by_id_and_settle(
            [
                SettleRequest(
                    finalize.execution_id,
                    derive_update(now, {"status": Status.COMPLETED, "output": '"final"'}),
                    {"status": Status.RUNNING},
                    lease,
                ),
                SettleRequest(
                    parent.execution_id,
                    derive_update(now, {"status": Status.CANCELLED, "error": {"m": "x"}}),
                    {"is_finished": False},
                    lease,
                ),
            ]
        )
        assert (finish.updated, cancel.updated) == (True, False)
        stored = self.fetch(storage, parent)
        assert (stored.status, stored.output) == (Status.COMPLETED, '"final"')

    def test_settle_finalize_of_a_child_reports_to_the_grandparent(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        grandparent = make_row(now, status=Status.WAITING_FOR_CHILDREN, active_children_count=1)
        parent = make_row(now, parent=grandparent, status=Status.WAITING_FOR_FINALIZE)
        finalize = make_row(now, parent=parent, is_finalize_of_parent=True, status=Status.RUNNING)
        parent.finalize = summary(finalize)
        grandparent.children = [summary(parent)]
        storage.insert_many([grandparent, parent, finalize])
        lease = now + 60 * SECOND
        result = self.settle(
            storage,
            finalize,
            {"status": Status.COMPLETED, "output": "2"},
            {"status": "running"},
            lease,
        )
        assert self.ids(result.parents_to_process) == [grandparent.execution_id]
        stored_parent = self.fetch(storage, parent)
        assert stored_parent.status == Status.COMPLETED
        assert stored_parent.output == "2"
        assert stored_parent.close_status == CloseStatus.CLOSED
        stored = self.fetch(storage, grandparent)
        assert stored.active_children_count == 0
        assert stored.on_children_finished_processing_status == ChildrenProcessingStatus.PROCESSING

    def test_settle_failed_finalize_fails_its_parent(self, storage: TaskExecutionsStorage) -> None:
        now = timezone.now()
        parent = make_row(
            now,
            status=Status.WAITING_FOR_FINALIZE,
            children=[{"task_id": "child", "execution_id": "te_child"}],
        )
        finalize = make_row(now, parent=parent, is_finalize_of_parent=True, status=Status.RUNNING)
        parent.finalize = summary(finalize)
        storage.insert_many([parent, finalize])
        error = error_dict("generic", "Failed", False, False)
        result = self.settle(
            storage, finalize, {"status": Status.FAILED, "error": error}, {"status": "running"}
        )
        assert result.updated is True
        stored = self.fetch(storage, parent)
        assert stored.status == Status.FINALIZE_FAILED
        assert stored.error == error
        assert stored.is_finished is True
        # The parent's children and finalize still need the close step (cancel what is left).
        assert result.needs_close is True
        assert stored.close_status == CloseStatus.READY
        assert self.fetch(storage, finalize).close_status == CloseStatus.CLOSED

    def test_settle_finalize_of_a_parent_no_longer_waiting_leaves_it_alone(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        parent = make_row(
            now, status=Status.CANCELLED, is_finished=True, close_status=CloseStatus.CLOSED
        )
        finalize = make_row(now, parent=parent, is_finalize_of_parent=True, status=Status.RUNNING)
        storage.insert_many([parent, finalize])
        result = self.settle(
            storage, finalize, {"status": Status.COMPLETED, "output": "1"}, {"status": "running"}
        )
        assert result.updated is True
        assert result.parents_to_process == []
        stored = self.fetch(storage, parent)
        assert stored.status == Status.CANCELLED
        assert stored.output is None
        assert self.fetch(storage, finalize).close_status == CloseStatus.CLOSED

    def test_settle_unfinished_parent_failing_needs_close(
        self, storage: TaskExecutionsStorage
    ) -> None:
        parent, kids = self.family(storage, 2)
        result = self.settle(
            storage,
            parent,
            {"status": Status.CANCELLED, "error": error_dict("cancelled", "x", False, False)},
            {"is_finished": False},
        )
        assert result.updated is True
        assert result.needs_close is True
        assert result.parents_to_process == []
        stored = self.fetch(storage, parent)
        assert stored.status == Status.CANCELLED
        assert stored.close_status == CloseStatus.READY
        assert stored.closed_at is None
        assert all(self.fetch(storage, kid).status == Status.RUNNING for kid in kids)

    def test_settle_parent_with_only_a_finalize_failing_needs_close(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        parent = make_row(now, status=Status.WAITING_FOR_FINALIZE)
        finalize = make_row(now, parent=parent, is_finalize_of_parent=True)
        parent.finalize = summary(finalize)
        storage.insert_many([parent, finalize])
        result = self.settle(storage, parent, {"status": Status.CANCELLED}, {"is_finished": False})
        assert result.needs_close is True
        assert self.fetch(storage, parent).close_status == CloseStatus.READY

    def test_settle_completed_parent_closes_at_once(self, storage: TaskExecutionsStorage) -> None:
        parent, _ = self.family(storage, 1, active=0)
        result = self.settle(
            storage,
            parent,
            {
                "status": Status.COMPLETED,
                "output": "3",
                "on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSED,
            },
            {"status": Status.WAITING_FOR_CHILDREN},
        )
        assert result.updated is True
        assert result.needs_close is False
        stored = self.fetch(storage, parent)
        assert stored.close_status == CloseStatus.CLOSED
        assert stored.on_children_finished_processing_status == ChildrenProcessingStatus.PROCESSED
        assert stored.on_children_finished_processing_finished_at is not None
        assert stored.run_output is None

    def test_settle_with_non_matching_filters_does_nothing(
        self, storage: TaskExecutionsStorage
    ) -> None:
        for_each_filters(
            READY_NOT_MATCHING,
            lambda filters: self._settle_with_non_matching_filters_does_nothing(storage, filters),
        )

    def _settle_with_non_matching_filters_does_nothing(
        self, storage: TaskExecutionsStorage, filters: Filters
    ) -> None:
        now = timezone.now()
        parent = make_row(now, status=Status.WAITING_FOR_CHILDREN, active_children_count=1)
        child = make_row(now - SECOND, parent=parent)
        storage.insert_many([parent, child])
        result = self.settle(
            storage, child, {"status": Status.COMPLETED}, filters, now + 60 * SECOND, now
        )
        assert result.updated is False
        assert result.parents_to_process == []
        assert result.needs_close is False
        stored = self.fetch(storage, child)
        assert stored.status == Status.READY
        assert stored.close_status == CloseStatus.IDLE
        assert_close(stored.updated_at, now - SECOND, timedelta(milliseconds=1))
        assert self.fetch(storage, parent).active_children_count == 1

    def test_settle_of_an_unknown_row_does_nothing(self, storage: TaskExecutionsStorage) -> None:
        result = self.settle(storage, make_row(), {"status": Status.COMPLETED})
        assert result.updated is False
        assert storage.update_many_by_id_and_settle([]) == []

    def test_settle_update_that_does_not_finish_is_a_plain_update(
        self, storage: TaskExecutionsStorage
    ) -> None:
        parent, kids = self.family(storage, 1)
        now = timezone.now()
        result = self.settle(
            storage,
            kids[0],
            {"status": Status.READY, "retry_attempts": 1, "start_at": now},
            {"status": Status.RUNNING},
            now + 60 * SECOND,
        )
        assert result.updated is True
        assert result.parents_to_process == []
        stored = self.fetch(storage, kids[0])
        assert stored.status == Status.READY
        assert stored.retry_attempts == 1
        assert stored.executor_id is None
        assert stored.close_status == CloseStatus.IDLE
        assert self.fetch(storage, parent).active_children_count == 1

    def test_settle_with_the_top_level_hint_finishes_top_level_rows_in_a_batch(
        self, storage: TaskExecutionsStorage
    ) -> None:
        now = timezone.now()
        rows = [make_row(now, status=Status.RUNNING, executor_id="de_x") for _ in range(3)]
        storage.insert_many(rows)
        cancelled_meanwhile = rows[2]
        self.settle(storage, cancelled_meanwhile, {"status": Status.CANCELLED})
        results = storage.update_many_by_id_and_settle(
            [
                SettleRequest(
                    row.execution_id,
                    derive_update(now, {"status": Status.COMPLETED, "output": str(index)}),
                    {"status": Status.RUNNING},
                    top_level=True,
                )
                for index, row in enumerate(rows)
            ]
        )
        assert [result.updated for result in results] == [True, True, False]
        for index, row in enumerate(rows[:2]):
            stored = self.fetch(storage, row)
            assert (stored.status, stored.output) == (Status.COMPLETED, str(index))
            assert stored.close_status == CloseStatus.CLOSED
        assert self.fetch(storage, cancelled_meanwhile).status == Status.CANCELLED

    def test_settle_with_a_wrong_top_level_hint_still_reports_to_the_parent(
        self, storage: TaskExecutionsStorage
    ) -> None:
        parent, kids = self.family(storage, 1)
        lease = timezone.now() + 60 * SECOND
        request = SettleRequest(
            kids[0].execution_id,
            derive_update(timezone.now(), {"status": Status.COMPLETED, "output": "1"}),
            {"status": Status.RUNNING},
            lease,
            top_level=True,  # wrong: the row has a parent
        )
        (result,) = storage.update_many_by_id_and_settle([request])
        assert result.updated is True
        assert [p.execution_id for p in result.parents_to_process] == [parent.execution_id]
        stored_parent = self.fetch(storage, parent)
        assert stored_parent.active_children_count == 0
        assert stored_parent.on_children_finished_processing_status == "processing"

    def test_settle_of_a_top_level_row_closes_it(self, storage: TaskExecutionsStorage) -> None:
        row = make_row(status=Status.RUNNING, executor_id="de_x")
        storage.insert_many([row])
        now = timezone.now()
        result = self.settle(
            storage, row, {"status": Status.TIMED_OUT}, {"status": Status.RUNNING}, now=now
        )
        assert result.updated is True
        assert result.needs_close is False
        stored = self.fetch(storage, row)
        assert stored.status == Status.TIMED_OUT
        assert stored.close_status == CloseStatus.CLOSED
        assert_close(stored.closed_at, now)
        assert_close(stored.finished_at, now)
