"""The storage layer the engine uses: conformance through it, batching, retries and stats.

The conformance scenarios run through :class:`StorageLayer` with batching on and off (an adapter
maps the storage operations onto the layer's single-item methods, called from several threads
at once so that batching really coalesces them); the layer's own claim and sweep methods, the
seed's T6 (batching) and M6 (retry counts) scenarios are tested below.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from django_durable.errors import DurableExecutionError
from django_durable.models import (
    ChildrenProcessingStatus,
    CloseStatus,
    Status,
    TaskExecution,
)
from django_durable.storage.base import (
    GetByIdRequest,
    SettleRequest,
    SettleResult,
    TaskExecutionsStorage,
    Update,
    UpdateByIdAndInsertChildrenRequest,
    UpdateByIdRequest,
    UpdateByParentRequest,
)
from django_durable.storage.default import make_storage
from django_durable.storage.layer import StorageLayer
from django_durable.storage.orm import OrmStorage

from .conformance import SECOND, StorageConformance, assert_close, make_row

T = TypeVar("T")
R = TypeVar("R")

# Batch threads use their own connections: they must see committed rows. Flushing only our
# app's tables after each test keeps that fast (no post_migrate after every flush).
pytestmark = pytest.mark.django_db(transaction=True, available_apps=["django_durable"])


def run_concurrently(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """Call ``function`` on every item, each in its own thread, all released at once."""
    if len(items) <= 1:
        return [function(item) for item in items]
    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(items))

    def run(index: int, item: T) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = function(item)
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index, item)) for index, item in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def _now_of(update: Update) -> datetime:
    now = update.get("updated_at")
    return now if isinstance(now, datetime) else timezone.now()


class LayerStorage(OrmStorage):
    """The storage operations on top of a :class:`StorageLayer`, for the conformance suite.

    The list operations fan out to the layer's single-item methods from concurrent threads
    (which is what batching coalesces). Claims and sweeps, which the layer never batches and
    which take fixed arguments in the layer, are inherited: they run on the ORM storage
    directly, and the layer's own claim methods are tested separately below.
    """

    def __init__(self, layer: StorageLayer) -> None:
        super().__init__()
        self.layer = layer

    def insert_many(self, executions: Sequence[TaskExecution], *, announce: bool = False) -> bool:
        return self.layer.insert_many(executions, announce=announce)

    def get_many_by_id(self, requests: Sequence[GetByIdRequest]) -> list[TaskExecution | None]:
        return run_concurrently(lambda r: self.layer.get_by_id(r.execution_id, r.filters), requests)

    def get_many_by_sleeping_task_unique_id(
        self, unique_ids: Sequence[str]
    ) -> list[TaskExecution | None]:
        return [self.layer.get_by_sleeping_task_unique_id(unique_id) for unique_id in unique_ids]

    def update_many_by_id(self, requests: Sequence[UpdateByIdRequest]) -> None:
        run_concurrently(
            lambda r: self.layer.update_by_id(
                _now_of(r.update), r.execution_id, r.update, r.filters
            ),
            requests,
        )

    def update_many_by_id_and_insert_children_if_updated(
        self, requests: Sequence[UpdateByIdAndInsertChildrenRequest]
    ) -> None:
        run_concurrently(
            lambda r: self.layer.update_by_id_and_insert_children(
                _now_of(r.update), r.execution_id, r.update, r.children, r.filters
            ),
            requests,
        )

    def update_many_by_id_and_settle(self, requests: Sequence[SettleRequest]) -> list[SettleResult]:
        return run_concurrently(
            lambda r: self.layer.settle_by_id(
                _now_of(r.update), r.execution_id, r.update, r.filters, r.processing_expires_at
            ),
            requests,
        )

    def get_many_by_parent_execution_id(
        self, parent_execution_ids: Sequence[str]
    ) -> list[list[TaskExecution]]:
        return run_concurrently(self.layer.get_by_parent_execution_id, parent_execution_ids)

    def update_many_by_parent_execution_id_and_is_finished(
        self, requests: Sequence[UpdateByParentRequest]
    ) -> None:
        run_concurrently(
            lambda r: self.layer.update_by_parent_execution_id_and_is_finished(
                _now_of(r.update), r.parent_execution_id, r.is_finished, r.update
            ),
            requests,
        )


@pytest.fixture
def make_layer(transactional_db: None) -> Iterator[Callable[..., StorageLayer]]:
    """Build started layers (retries without stats noise); all are shut down after the test."""
    layers: list[StorageLayer] = []

    def make(storage: TaskExecutionsStorage | None = None, **options: Any) -> StorageLayer:
        # By default the storage a project gets: PostgresStorage on PostgreSQL, else the ORM.
        layer = StorageLayer(storage or make_storage(), **options)
        layer.start()
        layers.append(layer)
        return layer

    yield make
    for layer in layers:
        layer.shutdown()


@pytest.fixture(params=[True, False], ids=["batching", "no_batching"])
def batching(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


class TestStorageLayer(StorageConformance):
    """The conformance scenarios through the layer, with batching on and off."""

    BATCHES_KEEP_ORDER = False

    @pytest.fixture
    def storage(self, make_layer: Callable[..., StorageLayer], batching: bool) -> LayerStorage:
        return LayerStorage(make_layer(batching=batching))


# -- the layer's own operations ---------------------------------------------------------------


@pytest.fixture
def layer(make_layer: Callable[..., StorageLayer], batching: bool) -> StorageLayer:
    return make_layer(batching=batching)


def fetch(execution_id: str) -> TaskExecution:
    return TaskExecution.objects.get(execution_id=execution_id)


class TestLayerOperations:
    def test_get_by_id_and_get_many_by_id(self, layer: StorageLayer) -> None:
        rows = [make_row(), make_row()]
        layer.insert_many(rows)
        found = layer.get_by_id(rows[0].execution_id)
        assert found is not None and found.execution_id == rows[0].execution_id
        assert layer.get_by_id(rows[0].execution_id, {"status": Status.RUNNING}) is None
        assert layer.get_by_id("te_missing") is None
        many = layer.get_many_by_id([rows[1].execution_id, "te_missing", rows[0].execution_id])
        assert [row.execution_id if row else None for row in many] == [
            rows[1].execution_id,
            None,
            rows[0].execution_id,
        ]

    def test_update_by_id_derives_the_bookkeeping_fields(self, layer: StorageLayer) -> None:
        row = make_row(status=Status.RUNNING, executor_id="de_x", expires_at=timezone.now())
        layer.insert_many([row])
        now = timezone.now()
        layer.update_by_id(
            now,
            row.execution_id,
            {"status": Status.COMPLETED, "output": "1"},
            {"status": "running"},
        )
        stored = fetch(row.execution_id)
        assert stored.status == Status.COMPLETED
        assert stored.is_finished is True
        assert_close(stored.finished_at, now, timedelta(milliseconds=1))
        assert_close(stored.updated_at, now, timedelta(milliseconds=1))
        assert stored.executor_id is None
        assert stored.expires_at is None
        # A plain update never settles: close status stays for the sweepers.
        assert stored.close_status == CloseStatus.IDLE

    def test_finalize_execution_completed_through_update_by_id_is_close_ready(
        self, layer: StorageLayer
    ) -> None:
        # Seed T2.
        parent = make_row(status=Status.WAITING_FOR_FINALIZE)
        finalize = make_row(parent=parent, is_finalize_of_parent=True, status=Status.RUNNING)
        layer.insert_many([parent, finalize])
        layer.update_by_id(
            timezone.now(),
            finalize.execution_id,
            {"status": Status.COMPLETED},
            execution=finalize,
        )
        assert fetch(finalize.execution_id).close_status == CloseStatus.READY
        # An ordinary row is not.
        other = make_row(status=Status.RUNNING)
        layer.insert_many([other])
        layer.update_by_id(
            timezone.now(), other.execution_id, {"status": Status.COMPLETED}, execution=other
        )
        assert fetch(other.execution_id).close_status == CloseStatus.IDLE

    def test_finalize_execution_spawning_children_while_finishing_is_close_ready(
        self, layer: StorageLayer
    ) -> None:
        parent = make_row(status=Status.WAITING_FOR_FINALIZE)
        finalize = make_row(parent=parent, is_finalize_of_parent=True, status=Status.RUNNING)
        layer.insert_many([parent, finalize])
        layer.update_by_id_and_insert_children(
            timezone.now(),
            finalize.execution_id,
            {"status": Status.FINALIZE_FAILED},
            [make_row(parent=finalize)],
            execution=finalize,
        )
        stored = fetch(finalize.execution_id)
        assert stored.status == Status.FINALIZE_FAILED
        assert stored.close_status == CloseStatus.READY

    def test_update_by_id_and_insert_children(self, layer: StorageLayer) -> None:
        parent = make_row(status=Status.RUNNING)
        layer.insert_many([parent])
        children = [make_row(parent=parent) for _ in range(3)]
        layer.update_by_id_and_insert_children(
            timezone.now(),
            parent.execution_id,
            {"status": Status.WAITING_FOR_CHILDREN, "active_children_count": 3},
            children,
            {"status": Status.RUNNING},
        )
        assert fetch(parent.execution_id).status == Status.WAITING_FOR_CHILDREN
        found = layer.get_by_parent_execution_id(parent.execution_id)
        assert sorted(r.execution_id for r in found) == sorted(c.execution_id for c in children)

    def test_update_by_id_and_insert_no_children_is_a_plain_update(
        self, layer: StorageLayer
    ) -> None:
        row = make_row(status=Status.RUNNING)
        layer.insert_many([row])
        layer.update_by_id_and_insert_children(
            timezone.now(),
            row.execution_id,
            {"status": Status.COMPLETED},
            [],
            {"status": "running"},
        )
        assert fetch(row.execution_id).status == Status.COMPLETED

    def test_large_spawns_are_not_batched_but_apply(self, layer: StorageLayer) -> None:
        parent = make_row(status=Status.RUNNING)
        layer.insert_many([parent])
        children = [make_row(parent=parent) for _ in range(20)]
        layer.update_by_id_and_insert_children(
            timezone.now(),
            parent.execution_id,
            {"status": Status.WAITING_FOR_CHILDREN},
            children,
        )
        assert len(layer.get_by_parent_execution_id(parent.execution_id)) == 20

    def test_settle_by_id_reports_to_the_parent(self, layer: StorageLayer) -> None:
        now = timezone.now()
        parent = make_row(status=Status.WAITING_FOR_CHILDREN, active_children_count=1)
        child = make_row(parent=parent, status=Status.RUNNING)
        layer.insert_many([parent, child])
        lease = now + 60 * SECOND
        result = layer.settle_by_id(
            now, child.execution_id, {"status": Status.COMPLETED}, {"status": "running"}, lease
        )
        assert result.updated is True
        assert [p.execution_id for p in result.parents_to_process] == [parent.execution_id]
        assert fetch(child.execution_id).close_status == CloseStatus.CLOSED
        again = layer.settle_by_id(
            now, child.execution_id, {"status": Status.COMPLETED}, {"status": "running"}, lease
        )
        assert again == SettleResult(updated=False)

    def test_by_parent_operations(self, layer: StorageLayer) -> None:
        parent = make_row(status=Status.FAILED, is_finished=True)
        children = [
            make_row(parent=parent),
            make_row(parent=parent, status=Status.COMPLETED, is_finished=True),
        ]
        layer.insert_many([parent, *children])
        assert layer.get_by_parent_execution_id("te_missing") == []
        layer.update_by_parent_execution_id_and_is_finished(
            timezone.now(), parent.execution_id, False, {"status": Status.CANCELLED}
        )
        statuses = sorted(r.status for r in layer.get_by_parent_execution_id(parent.execution_id))
        assert statuses == [Status.CANCELLED, Status.COMPLETED]
        assert all(r.is_finished for r in layer.get_by_parent_execution_id(parent.execution_id))

    def test_get_by_sleeping_task_unique_id(self, layer: StorageLayer) -> None:
        row = make_row(sleeping_task_unique_id="uid-1")
        layer.insert_many([row])
        found = layer.get_by_sleeping_task_unique_id("uid-1")
        assert found is not None and found.execution_id == row.execution_id
        assert layer.get_by_sleeping_task_unique_id("uid-2") is None

    def test_writes_inside_a_transaction_join_it(self, layer: StorageLayer) -> None:
        """Inside ``transaction.atomic()`` the layer writes on the caller's connection."""
        kept = make_row()
        layer.insert_many([kept])
        dropped = make_row()

        class Rollback(Exception):
            pass

        with pytest.raises(Rollback), transaction.atomic():
            layer.insert_many([dropped])
            assert layer.get_by_id(dropped.execution_id) is not None
            layer.update_by_id(timezone.now(), kept.execution_id, {"status": Status.CANCELLED})
            assert fetch(kept.execution_id).status == Status.CANCELLED
            raise Rollback
        assert layer.get_by_id(dropped.execution_id) is None
        assert fetch(kept.execution_id).status == Status.READY


class TestLayerClaims:
    def test_claim_ready(self, layer: StorageLayer) -> None:
        now = timezone.now()
        early = make_row(now, start_at=now - 2 * SECOND, timeout=5.0)
        late = make_row(now, start_at=now - SECOND, timeout=1.0)
        future = make_row(now, start_at=now + 10 * SECOND)
        layer.insert_many([late, early, future])
        base = now + SECOND
        claimed = layer.claim_ready(now, executor_id="de_a", expires_at_base=base, limit=5)
        assert [r.execution_id for r in claimed] == [early.execution_id, late.execution_id]
        for row in claimed:
            stored = fetch(row.execution_id)
            assert stored.status == Status.RUNNING
            assert stored.executor_id == "de_a"
            assert_close(stored.started_at, now, timedelta(milliseconds=1))
            assert_close(
                stored.expires_at, base + timedelta(seconds=row.timeout), timedelta(milliseconds=1)
            )
        assert layer.claim_ready(now, executor_id="de_b", expires_at_base=base, limit=5) == []
        assert fetch(future.execution_id).status == Status.READY

    def test_claim_ready_by_queue(self, layer: StorageLayer) -> None:
        now = timezone.now()
        email = make_row(now - SECOND, queue="emails")
        default = make_row(now - SECOND)
        layer.insert_many([email, default])
        claimed = layer.claim_ready(
            now, executor_id="de_a", expires_at_base=now, limit=5, queues=["emails"]
        )
        assert [r.execution_id for r in claimed] == [email.execution_id]

    def test_claim_children_finished(self, layer: StorageLayer) -> None:
        now = timezone.now()
        done = make_row(now, status=Status.WAITING_FOR_CHILDREN)
        busy = make_row(now, status=Status.WAITING_FOR_CHILDREN, active_children_count=1)
        layer.insert_many([done, busy])
        lease = now + 60 * SECOND
        claimed = layer.claim_children_finished(now, expires_at=lease, limit=5)
        assert [r.execution_id for r in claimed] == [done.execution_id]
        stored = fetch(done.execution_id)
        assert stored.on_children_finished_processing_status == ChildrenProcessingStatus.PROCESSING
        assert_close(stored.on_children_finished_processing_expires_at, lease, timedelta(0))
        assert layer.claim_children_finished(now, expires_at=lease, limit=5) == []

    def test_mark_finished_close_ready(self, layer: StorageLayer) -> None:
        now = timezone.now()
        parent = make_row(now, status=Status.WAITING_FOR_CHILDREN, active_children_count=2)
        child = make_row(now, parent=parent, status=Status.COMPLETED, is_finished=True)
        finalize = make_row(
            now,
            parent=parent,
            is_finalize_of_parent=True,
            status=Status.CANCELLED,
            is_finished=True,
        )
        layer.insert_many([parent, child, finalize])
        assert layer.mark_finished_close_ready(now, limit=10) == 2
        assert fetch(child.execution_id).close_status == CloseStatus.READY
        assert fetch(finalize.execution_id).close_status == CloseStatus.READY
        # A finalize execution never counts as an active child.
        assert fetch(parent.execution_id).active_children_count == 1

    def test_claim_close_ready(self, layer: StorageLayer) -> None:
        now = timezone.now()
        row = make_row(now, status=Status.COMPLETED, is_finished=True, close_status="ready")
        layer.insert_many([row])
        lease = now + 60 * SECOND
        claimed = layer.claim_close_ready(now, expires_at=lease, limit=5)
        assert [r.execution_id for r in claimed] == [row.execution_id]
        assert claimed[0].close_status == CloseStatus.CLOSING
        assert_close(fetch(row.execution_id).close_expires_at, lease, timedelta(0))

    def test_expire_running(self, layer: StorageLayer) -> None:
        now = timezone.now()
        crashed = make_row(now, status=Status.RUNNING, executor_id="de_x", expires_at=now - SECOND)
        sleeping = make_row(now, sleeping_task_unique_id="uid", expires_at=now - SECOND)
        layer.insert_many([crashed, sleeping])
        expired = {
            "error_type": "generic",
            "message": "Task execution expired",
            "is_retryable": False,
            "is_internal": False,
        }
        count = layer.expire_running(
            now,
            is_sleeping_task=False,
            update={"status": Status.READY, "error": expired, "start_at": now},
            limit=10,
        )
        assert count == 1
        stored = fetch(crashed.execution_id)
        assert stored.status == Status.READY
        assert stored.executor_id is None
        assert stored.started_at is None
        assert stored.expires_at is None
        assert stored.error == expired
        count = layer.expire_running(
            now, is_sleeping_task=True, update={"status": Status.TIMED_OUT}, limit=10
        )
        assert count == 1
        assert fetch(sleeping.execution_id).is_finished is True

    def test_expire_children_processing(self, layer: StorageLayer) -> None:
        now = timezone.now()
        row = make_row(
            now,
            status=Status.WAITING_FOR_CHILDREN,
            on_children_finished_processing_status=ChildrenProcessingStatus.PROCESSING,
            on_children_finished_processing_expires_at=now - SECOND,
        )
        layer.insert_many([row])
        assert layer.expire_children_processing(now, limit=10) == 1
        stored = fetch(row.execution_id)
        assert stored.on_children_finished_processing_status == ChildrenProcessingStatus.IDLE
        assert stored.on_children_finished_processing_expires_at is None

    def test_expire_closing(self, layer: StorageLayer) -> None:
        now = timezone.now()
        row = make_row(
            now,
            status=Status.COMPLETED,
            is_finished=True,
            close_status=CloseStatus.CLOSING,
            close_expires_at=now - SECOND,
        )
        layer.insert_many([row])
        assert layer.expire_closing(now, limit=10) == 1
        stored = fetch(row.execution_id)
        assert stored.close_status == CloseStatus.READY
        assert stored.close_expires_at is None

    def test_claim_cancellations(self, layer: StorageLayer) -> None:
        now = timezone.now()
        mine = make_row(
            now,
            status=Status.CANCELLED,
            is_finished=True,
            executor_id="de_a",
            needs_promise_cancellation=True,
        )
        theirs = make_row(
            now,
            status=Status.CANCELLED,
            is_finished=True,
            executor_id="de_b",
            needs_promise_cancellation=True,
        )
        layer.insert_many([mine, theirs])
        claimed = layer.claim_cancellations(now, executor_id="de_a", limit=10)
        assert [r.execution_id for r in claimed] == [mine.execution_id]
        assert claimed[0].needs_promise_cancellation is False
        assert fetch(theirs.execution_id).needs_promise_cancellation is True

    def test_claims_with_no_room_do_not_call_the_storage(
        self, make_layer: Callable[..., StorageLayer]
    ) -> None:
        storage = CountingStorage()
        layer = make_layer(storage)
        storage.calls.clear()
        now = timezone.now()
        for limit in (0, -3):
            assert layer.claim_ready(now, executor_id="de", expires_at_base=now, limit=limit) == []
            assert layer.claim_children_finished(now, expires_at=now, limit=limit) == []
            assert layer.mark_finished_close_ready(now, limit=limit) == 0
            assert layer.claim_close_ready(now, expires_at=now, limit=limit) == []
            assert layer.expire_running(now, is_sleeping_task=False, update={}, limit=limit) == 0
            assert layer.expire_children_processing(now, limit=limit) == 0
            assert layer.expire_closing(now, limit=limit) == 0
            assert layer.claim_cancellations(now, executor_id="de", limit=limit) == []
        layer.insert_many([])
        assert storage.calls == []


# -- batching on and off give the same results ---------------------------------------------------


def _scenario(layer: StorageLayer) -> list[tuple[Any, ...]]:
    """A small family's life through the layer; the normalised end state of its rows."""
    now = timezone.now()
    parent = make_row(now, task_id="parent", status=Status.RUNNING, executor_id="de_x")
    layer.insert_many([parent])
    children = [make_row(now, task_id=f"child{i}", parent=parent) for i in range(3)]
    layer.update_by_id_and_insert_children(
        now,
        parent.execution_id,
        {"status": Status.WAITING_FOR_CHILDREN, "active_children_count": 3, "run_output": "0"},
        children,
        {"status": Status.RUNNING},
    )
    claimed = layer.claim_ready(now + SECOND, executor_id="de_y", expires_at_base=now, limit=10)
    assert len(claimed) == 3
    lease = now + 60 * SECOND
    results = run_concurrently(
        lambda child: layer.settle_by_id(
            now,
            child.execution_id,
            {"status": Status.COMPLETED, "output": child.task_id},
            {"status": Status.RUNNING},
            lease,
        ),
        children,
    )
    assert [p.execution_id for r in results for p in r.parents_to_process] == [parent.execution_id]
    layer.settle_by_id(
        now,
        parent.execution_id,
        {"status": Status.COMPLETED, "output": "done"},
        {"status": Status.WAITING_FOR_CHILDREN},
    )
    children = layer.get_by_parent_execution_id(parent.execution_id)
    rows = [layer.get_by_id(parent.execution_id), *children]
    return sorted(
        (
            row.task_id,
            row.status,
            row.output,
            row.is_finished,
            row.close_status,
            row.active_children_count,
            row.on_children_finished_processing_status,
            row.executor_id,
            row.run_output,
        )
        for row in rows
        if row is not None
    )


def test_batching_on_and_off_give_identical_results(
    make_layer: Callable[..., StorageLayer],
) -> None:
    on = _scenario(make_layer(batching=True))
    off = _scenario(make_layer(batching=False))
    assert on == off
    assert len(on) == 4


# -- seed T6: batching in the layer ---------------------------------------------------------------


class RecordingStorage(OrmStorage):
    """Records every ``insert_many`` call: how many rows, and on which thread."""

    def __init__(self) -> None:
        super().__init__()
        self.inserts: list[tuple[int, str]] = []
        self.fail_inserts_with: Exception | None = None

    def insert_many(self, executions: Sequence[TaskExecution], *, announce: bool = False) -> bool:
        self.inserts.append((len(executions), threading.current_thread().name))
        if self.fail_inserts_with is not None:
            raise self.fail_inserts_with
        return super().insert_many(executions, announce=announce)


class CountingStorage(OrmStorage):
    """Records the name of every storage operation called."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        attribute = super().__getattribute__(name)
        if callable(attribute) and not name.startswith("_") and name not in ("objects", "calls"):
            super().__getattribute__("calls").append(name)
        return attribute


class TestBatchingLayer:
    def test_inserts_run_on_the_callers_thread_and_connection(
        self, make_layer: Callable[..., StorageLayer]
    ) -> None:
        storage = RecordingStorage()
        layer = make_layer(storage, batching=True, batching_interval=0.05)
        rows = [make_row() for _ in range(20)]
        layer.insert_many(rows)
        layer.insert_many([make_row()])
        caller = threading.current_thread().name
        assert storage.inserts == [(20, caller), (1, caller)]
        assert TaskExecution.objects.count() == 21

    def test_two_concurrent_updates_of_one_row_both_apply(
        self, make_layer: Callable[..., StorageLayer]
    ) -> None:
        layer = make_layer(batching=True)
        row = make_row()
        layer.insert_many([row])
        now = timezone.now()
        updates: list[Update] = [{"status": Status.RUNNING}, {"executor_id": "de_test"}]
        run_concurrently(lambda u: layer.update_by_id(now, row.execution_id, u), updates)
        stored = fetch(row.execution_id)
        assert stored.status == Status.RUNNING
        assert stored.executor_id == "de_test"

    def test_update_and_insert_three_children(
        self, make_layer: Callable[..., StorageLayer]
    ) -> None:
        layer = make_layer(batching=True)
        parent = make_row(status=Status.RUNNING)
        layer.insert_many([parent])
        children = [make_row(parent=parent) for _ in range(3)]
        layer.update_by_id_and_insert_children(
            timezone.now(),
            parent.execution_id,
            {"status": Status.WAITING_FOR_CHILDREN},
            children,
        )
        assert len(layer.get_by_parent_execution_id(parent.execution_id)) == 3

    def test_stats_name_the_storage_operations(
        self, make_layer: Callable[..., StorageLayer]
    ) -> None:
        layer = make_layer(batching=True, stats=True)
        row = make_row()
        layer.insert_many([row])
        layer.get_by_id(row.execution_id)
        counts = {stats.process_name: stats.count for stats in layer.metrics()}
        assert counts["insert_many"] > 0
        assert counts["get_many_by_id"] > 0
        summary = next(s for s in layer.metrics() if s.process_name == "insert_many")
        assert summary.min is not None and summary.max is not None
        assert summary.min <= summary.max
        assert [q for q, _ in summary.quantiles] == [0.5, 0.9, 0.95]
        assert make_layer(stats=False).metrics() == []

    def test_shutdown_with_pending_batched_inserts_completes(
        self, make_layer: Callable[..., StorageLayer]
    ) -> None:
        storage = RecordingStorage()
        layer = make_layer(storage, batching=True, batching_interval=0.05)
        rows = [make_row() for _ in range(10)]
        threads = [threading.Thread(target=_insert_and_close, args=(layer, row)) for row in rows]
        for thread in threads:
            thread.start()
        layer.shutdown()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
        assert TaskExecution.objects.count() == 10
        # Start after shutdown does not raise, and calls still work (directly).
        layer.start()
        extra = make_row()
        layer.insert_many([extra])
        assert storage.inserts[-1] == (1, threading.current_thread().name)
        assert layer.get_by_id(extra.execution_id) is not None

    def test_a_failing_insert_surfaces_its_error(
        self, make_layer: Callable[..., StorageLayer], batching: bool
    ) -> None:
        storage = RecordingStorage()
        storage.fail_inserts_with = RuntimeError("Test error")
        layer = make_layer(storage, batching=batching, max_retries=0)
        with pytest.raises(RuntimeError, match="Test error"):
            layer.insert_many([make_row()])

    def test_a_duplicate_in_a_batch_fails_only_its_own_caller(
        self, make_layer: Callable[..., StorageLayer]
    ) -> None:
        layer = make_layer(batching=True, batching_interval=0.05)
        existing = make_row()
        layer.insert_many([existing])
        rows = [make_row(), make_row(execution_id=existing.execution_id), make_row()]
        outcomes: list[Any] = [None] * 3

        def insert(index: int) -> None:
            try:
                layer.insert_many([rows[index]])
                outcomes[index] = "ok"
            except IntegrityError:
                outcomes[index] = "duplicate"

        run_concurrently(insert, [0, 1, 2])
        assert outcomes == ["ok", "duplicate", "ok"]
        assert TaskExecution.objects.count() == 3


def _insert_and_close(layer: StorageLayer, row: TaskExecution) -> None:
    try:
        layer.insert_many([row])
    finally:
        connections.close_all()


# -- seed M6: retries of storage calls ------------------------------------------------------------


class FlakyStorage(OrmStorage):
    """``insert_many`` raises ``error`` on its first ``failures`` calls."""

    def __init__(self, error: Exception, failures: int) -> None:
        super().__init__()
        self.error = error
        self.failures = failures
        self.calls = 0

    def insert_many(self, executions: Sequence[TaskExecution], *, announce: bool = False) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return super().insert_many(executions, announce=announce)


class TestRetries:
    def test_retryable_errors_are_retried_until_success(
        self, make_layer: Callable[..., StorageLayer], batching: bool
    ) -> None:
        storage = FlakyStorage(DurableExecutionError.retryable("Temporary error"), 2)
        layer = make_layer(storage, batching=batching, max_retries=3)
        row = make_row()
        layer.insert_many([row])
        assert storage.calls == 3
        assert layer.get_by_id(row.execution_id) is not None

    def test_non_retryable_errors_are_not_retried(
        self, make_layer: Callable[..., StorageLayer], batching: bool
    ) -> None:
        storage = FlakyStorage(DurableExecutionError.non_retryable("Permanent error"), 100)
        layer = make_layer(storage, batching=batching, max_retries=3)
        with pytest.raises(DurableExecutionError, match="Permanent error"):
            layer.insert_many([make_row()])
        assert storage.calls == 1

    def test_retries_are_bounded(
        self, make_layer: Callable[..., StorageLayer], batching: bool
    ) -> None:
        storage = FlakyStorage(DurableExecutionError.retryable("Temporary error"), 100)
        layer = make_layer(storage, batching=batching, max_retries=2)
        with pytest.raises(DurableExecutionError, match="Temporary error"):
            layer.insert_many([make_row()])
        assert storage.calls == 3

    def test_plain_exceptions_are_retryable_and_integrity_errors_are_not(
        self, make_layer: Callable[..., StorageLayer]
    ) -> None:
        storage = FlakyStorage(RuntimeError("boom"), 1)
        layer = make_layer(storage, batching=False, max_retries=1)
        layer.insert_many([make_row()])
        assert storage.calls == 2
        storage = FlakyStorage(IntegrityError("duplicate"), 100)
        layer = make_layer(storage, batching=False, max_retries=5)
        with pytest.raises(IntegrityError):
            layer.insert_many([make_row()])
        assert storage.calls == 1

    def test_max_retries_is_clamped(self, make_layer: Callable[..., StorageLayer]) -> None:
        assert make_layer(max_retries=-1).max_retries == 0
        assert make_layer(max_retries=50).max_retries == 10

    def test_claims_are_retried_too(self, make_layer: Callable[..., StorageLayer]) -> None:
        class FlakyClaims(OrmStorage):
            calls = 0

            def update_by_status_and_start_at_less_than_and_return(  # type: ignore[override]
                self, **kwargs: Any
            ) -> list[TaskExecution]:
                self.calls += 1
                if self.calls == 1:
                    raise DurableExecutionError.retryable("Temporary error")
                return super().update_by_status_and_start_at_less_than_and_return(**kwargs)

        storage = FlakyClaims()
        layer = make_layer(storage, max_retries=1)
        now = timezone.now()
        layer.insert_many([make_row(now - SECOND)])
        assert len(layer.claim_ready(now, executor_id="de", expires_at_base=now, limit=5)) == 1
        assert storage.calls == 2
