"""Claiming one execution by id (the Celery runner's claim), on the ORM and PostgreSQL storages
and through the storage layer: only a ready, due row; once, under contention."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from django_durable.models import Status, TaskExecution
from django_durable.state import derive_update
from django_durable.storage.base import TaskExecutionsStorage
from django_durable.storage.layer import StorageLayer
from django_durable.storage.orm import OrmStorage
from django_durable.storage.postgres import PostgresStorage

from .conformance import SECOND, make_row

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["django_durable"])

STORAGES = [
    pytest.param("orm", id="orm"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only"),
    ),
]


def make_storage(kind: str) -> TaskExecutionsStorage:
    return PostgresStorage() if kind == "postgres" else OrmStorage()


def claim(storage: TaskExecutionsStorage, execution_id: str, executor_id: str = "ex_1"):
    now = timezone.now()
    return storage.update_by_id_and_status_and_start_at_less_than_and_return(
        execution_id=execution_id,
        status=Status.READY,
        start_at_less_than=now,
        update=derive_update(now, {"status": Status.RUNNING, "executor_id": executor_id}),
        update_expires_at_with_started_at=now + 5 * SECOND,
    )


@pytest.mark.parametrize("kind", STORAGES)
def test_claims_a_ready_due_row_and_sets_its_expiry(kind: str) -> None:
    storage = make_storage(kind)
    row = make_row(timezone.now() - SECOND, timeout=7.0)
    other = make_row(timezone.now() - SECOND)
    storage.insert_many([row, other])

    claimed = claim(storage, row.execution_id)

    assert claimed is not None
    assert claimed.execution_id == row.execution_id
    stored = TaskExecution.objects.get(execution_id=row.execution_id)
    assert (stored.status, stored.executor_id) == (Status.RUNNING, "ex_1")
    assert stored.started_at is not None
    assert stored.expires_at == claimed.expires_at
    assert stored.expires_at - stored.started_at >= timedelta(seconds=11)
    assert TaskExecution.objects.get(execution_id=other.execution_id).status == Status.READY
    assert claim(storage, row.execution_id) is None  # running now


@pytest.mark.parametrize("kind", STORAGES)
def test_does_not_claim_a_row_not_due_not_ready_or_missing(kind: str) -> None:
    storage = make_storage(kind)
    later = make_row(timezone.now() + 60 * SECOND)
    done = make_row(timezone.now() - SECOND, status=Status.COMPLETED, is_finished=True)
    storage.insert_many([later, done])

    assert claim(storage, later.execution_id) is None
    assert claim(storage, done.execution_id) is None
    assert claim(storage, "te_missing") is None
    assert TaskExecution.objects.get(execution_id=later.execution_id).status == Status.READY


@pytest.mark.parametrize("kind", STORAGES)
def test_concurrent_claims_of_one_row_give_it_to_one(kind: str) -> None:
    rows = [make_row(timezone.now() - SECOND) for _ in range(20)]
    OrmStorage().insert_many(rows)
    winners: dict[str, list[str]] = {row.execution_id: [] for row in rows}
    barrier = threading.Barrier(4)

    def race(name: str) -> None:
        storage = make_storage(kind)
        try:
            barrier.wait()
            for row in rows:
                if claim(storage, row.execution_id, executor_id=name) is not None:
                    winners[row.execution_id].append(name)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race, args=(f"ex_{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(len(names) == 1 for names in winners.values()), winners
    for row in TaskExecution.objects.filter(execution_id__in=list(winners)):
        assert row.executor_id == winners[row.execution_id][0]


def test_layer_claim_ready_by_id() -> None:
    layer = StorageLayer(OrmStorage(), batching=False)
    row = make_row(timezone.now() - SECOND)
    layer.insert_many([row])
    now = timezone.now()
    claimed = layer.claim_ready_by_id(
        now, row.execution_id, executor_id="ex_layer", expires_at_base=now
    )
    assert claimed is not None and claimed.executor_id == "ex_layer"
    assert claimed.status == Status.RUNNING
    assert (
        layer.claim_ready_by_id(now, row.execution_id, executor_id="ex_other", expires_at_base=now)
        is None
    )
    assert [m for m in layer.metrics() if "update_by_id_and_status" in m.process_name]


@pytest.mark.parametrize("kind", STORAGES)
def test_a_row_whose_concurrency_key_is_at_its_limit_is_not_claimed(kind: str) -> None:
    storage = make_storage(kind)
    past = timezone.now() - SECOND
    first, second, other_key = (
        make_row(past, concurrency_key="tenant-1", max_concurrency=1),
        make_row(past, concurrency_key="tenant-1", max_concurrency=1),
        make_row(past, concurrency_key="tenant-2", max_concurrency=1),
    )
    storage.insert_many([first, second, other_key])

    assert claim(storage, first.execution_id) is not None
    assert claim(storage, second.execution_id) is None
    assert claim(storage, other_key.execution_id) is not None
    assert TaskExecution.objects.get(execution_id=second.execution_id).status == Status.READY
    TaskExecution.objects.filter(execution_id=first.execution_id).update(status=Status.COMPLETED)
    claimed = claim(storage, second.execution_id)
    assert claimed is not None and claimed.status == Status.RUNNING
