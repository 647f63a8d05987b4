"""Claims under contention: every row is claimed exactly once across threads and processes.

Four real processes (``tests/storage/claim_worker.py``) and, separately, several threads claim
from one table of 2,000 ready rows, 100 at a time, until none are left. Threads also race the
other claim-style operations: close claims, the close-ready decrement, and settling the
children of one parent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from django_durable.models import CloseStatus, Status, TaskExecution
from django_durable.state import derive_update
from django_durable.storage.base import SettleRequest, TaskExecutionsStorage
from django_durable.storage.orm import OrmStorage
from django_durable.storage.postgres import PostgresStorage

from .conformance import SECOND, make_row

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["django_durable"])

ROOT = Path(__file__).resolve().parents[2]
ROWS = 2_000
LIMIT = 100
PROCESSES = 4
THREADS = 8

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


def insert_ready_rows(count: int = ROWS) -> set[str]:
    past = timezone.now() - timedelta(seconds=10)
    rows = [make_row(past, timeout=60.0) for _ in range(count)]
    OrmStorage().insert_many(rows)
    return {row.execution_id for row in rows}


def claim_until_empty(storage: TaskExecutionsStorage, executor_id: str) -> list[str]:
    claimed: list[str] = []
    while True:
        now = timezone.now()
        rows = storage.update_by_status_and_start_at_less_than_and_return(
            status=Status.READY,
            start_at_less_than=now,
            update=derive_update(now, {"status": Status.RUNNING, "executor_id": executor_id}),
            update_expires_at_with_started_at=now,
            limit=LIMIT,
        )
        if not rows:
            return claimed
        claimed.extend(row.execution_id for row in rows)


def in_threads(count: int, function: Callable[[int], Any]) -> list[Any]:
    """Run ``function(index)`` in ``count`` threads released together; re-raise any error."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = function(index)
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a claiming thread hung"
    if errors:
        raise errors[0]
    return results


def assert_claimed_exactly_once(
    expected: set[str], claims: dict[str, list[str]], *, overlapped: bool = True
) -> None:
    counts = Counter(execution_id for ids in claims.values() for execution_id in ids)
    duplicates = {execution_id: n for execution_id, n in counts.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} rows claimed more than once"
    assert set(counts) == expected, f"{len(expected - set(counts))} rows never claimed"
    # The stored owner is the claimer that recorded the row: no claim overwrote another.
    owners = dict(
        TaskExecution.objects.filter(execution_id__in=expected).values_list(
            "execution_id", "executor_id"
        )
    )
    for executor_id, ids in claims.items():
        assert all(owners[execution_id] == executor_id for execution_id in ids)
    assert not TaskExecution.objects.filter(status=Status.READY).exists()
    if overlapped:
        assert sum(1 for ids in claims.values() if ids) >= 2, "the claimers never overlapped"


@pytest.mark.parametrize("kind", STORAGES)
def test_processes_claim_every_row_exactly_once(kind: str) -> None:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "CLAIM_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "CLAIM_STORAGE": kind,
        "CLAIM_LIMIT": str(LIMIT),
        "CLAIM_PAUSE": "0.01",
    }
    workers: dict[str, subprocess.Popen[str]] = {}
    try:
        # The workers start (and set Django up) while the rows are inserted; they claim
        # nothing before the "go" line, sent to all of them at once.
        for index in range(PROCESSES):
            executor_id = f"de_proc{index}"
            workers[executor_id] = subprocess.Popen(
                [sys.executable, "-m", "tests.storage.claim_worker"],
                cwd=ROOT,
                env={**environment, "CLAIM_EXECUTOR_ID": executor_id},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        expected = insert_ready_rows()
        for executor_id, worker in workers.items():
            assert worker.stdout is not None
            line = worker.stdout.readline().strip()
            if line != "ready":
                worker.kill()
                _, stderr = worker.communicate()
                pytest.fail(f"{executor_id} did not start: {line!r}\n{stderr}")
        for worker in workers.values():
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        claims: dict[str, list[str]] = {}
        for executor_id, worker in workers.items():
            stdout, stderr = worker.communicate(timeout=60)
            assert worker.returncode == 0, stderr
            claims[executor_id] = json.loads(stdout.strip().splitlines()[-1])
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    # SQLite hands its write lock out unfairly (waiters poll with growing sleeps), so one
    # process may take every row there; PostgreSQL's row locks always interleave them.
    assert_claimed_exactly_once(expected, claims, overlapped=connection.vendor == "postgresql")


@pytest.mark.parametrize("kind", STORAGES)
def test_threads_claim_every_row_exactly_once(kind: str) -> None:
    expected = insert_ready_rows()
    storage = make_storage(kind)
    results = in_threads(THREADS, lambda index: claim_until_empty(storage, f"de_thread{index}"))
    assert_claimed_exactly_once(
        expected,
        {f"de_thread{index}": ids for index, ids in enumerate(results)},
        overlapped=connection.vendor == "postgresql",
    )


@pytest.mark.parametrize("kind", STORAGES)
def test_threads_claim_close_ready_rows_exactly_once(kind: str) -> None:
    now = timezone.now()
    rows = [
        make_row(now, status=Status.COMPLETED, is_finished=True, close_status=CloseStatus.READY)
        for _ in range(500)
    ]
    OrmStorage().insert_many(rows)
    storage = make_storage(kind)

    def claim(index: int) -> list[str]:
        claimed: list[str] = []
        while True:
            batch = storage.update_by_close_status_and_return(
                close_status=CloseStatus.READY,
                update=derive_update(
                    timezone.now(),
                    {"close_status": CloseStatus.CLOSING, "close_expires_at": now},
                ),
                limit=25,
            )
            if not batch:
                return claimed
            claimed.extend(row.execution_id for row in batch)

    results = in_threads(THREADS, claim)
    counts = Counter(execution_id for ids in results for execution_id in ids)
    assert set(counts) == {row.execution_id for row in rows}
    assert set(counts.values()) == {1}


@pytest.mark.parametrize("kind", STORAGES)
def test_threads_expire_each_running_row_once(kind: str) -> None:
    now = timezone.now()
    rows = [
        make_row(now, status=Status.RUNNING, executor_id="de_gone", expires_at=now - SECOND)
        for _ in range(500)
    ]
    OrmStorage().insert_many(rows)
    storage = make_storage(kind)

    def expire(index: int) -> int:
        total = 0
        while True:
            count = storage.update_by_status_and_is_sleeping_task_and_expires_at_less_than(
                status=Status.RUNNING,
                is_sleeping_task=False,
                expires_at_less_than=timezone.now(),
                update=derive_update(timezone.now(), {"status": Status.READY}),
                limit=25,
            )
            if not count:
                return total
            total += count

    assert sum(in_threads(THREADS, expire)) == len(rows)
    assert not TaskExecution.objects.filter(status=Status.RUNNING).exists()


@pytest.mark.parametrize("kind", STORAGES)
def test_threads_decrement_each_parent_once_per_child(kind: str) -> None:
    now = timezone.now()
    parents = [
        make_row(now, status=Status.WAITING_FOR_CHILDREN, active_children_count=40)
        for _ in range(10)
    ]
    children = [
        make_row(now, parent=parent, status=Status.COMPLETED, is_finished=True)
        for parent in parents
        for _ in range(40)
    ]
    OrmStorage().insert_many([*parents, *children])
    storage = make_storage(kind)

    def mark(index: int) -> int:
        total = 0
        while True:
            count = storage.update_and_decrement_parent_active_children_count_by_is_finished_and_close_status(  # noqa: E501
                is_finished=True,
                close_status=CloseStatus.IDLE,
                update=derive_update(timezone.now(), {"close_status": CloseStatus.READY}),
                limit=15,
            )
            if not count:
                return total
            total += count

    results = in_threads(THREADS, mark)
    assert sum(results) == len(children)
    counts = TaskExecution.objects.filter(
        execution_id__in=[parent.execution_id for parent in parents]
    ).values_list("active_children_count", flat=True)
    assert list(counts) == [0] * len(parents)


@pytest.mark.parametrize("kind", STORAGES)
def test_threads_settling_siblings_claim_their_parent_once(kind: str) -> None:
    now = timezone.now()
    parent = make_row(now, status=Status.WAITING_FOR_CHILDREN, active_children_count=80)
    children = [make_row(now, parent=parent, status=Status.RUNNING) for _ in range(80)]
    OrmStorage().insert_many([parent, *children])
    storage = make_storage(kind)
    lease = now + timedelta(minutes=2)

    def settle(index: int) -> list[str]:
        claimed: list[str] = []
        for child in children[index::THREADS]:
            (result,) = storage.update_many_by_id_and_settle(
                [
                    SettleRequest(
                        child.execution_id,
                        derive_update(timezone.now(), {"status": Status.COMPLETED}),
                        {"status": Status.RUNNING},
                        lease,
                    )
                ]
            )
            assert result.updated
            claimed.extend(p.execution_id for p in result.parents_to_process)
        return claimed

    results = in_threads(THREADS, settle)
    assert [execution_id for ids in results for execution_id in ids] == [parent.execution_id]
    stored = TaskExecution.objects.get(execution_id=parent.execution_id)
    assert stored.active_children_count == 0
    assert stored.on_children_finished_processing_status == "processing"
    assert not TaskExecution.objects.filter(
        close_status=CloseStatus.IDLE, is_finished=True
    ).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL only")
def test_concurrent_settle_batches_lock_parents_in_one_order() -> None:
    """Two batches finishing children of the same two parents, in opposite parent order."""
    now = timezone.now()
    p, q = (
        make_row(now, status=Status.WAITING_FOR_CHILDREN, active_children_count=2) for _ in range(2)
    )
    # Batches run their requests in execution id order: a1 < a2 and b1 < b2.
    a1, a2 = (
        make_row(now, parent=p, execution_id="te_a1"),
        make_row(now, parent=q, execution_id="te_a2"),
    )
    b1, b2 = (
        make_row(now, parent=q, execution_id="te_b1"),
        make_row(now, parent=p, execution_id="te_b2"),
    )
    OrmStorage().insert_many([p, q, a1, a2, b1, b2])
    barrier = threading.Barrier(2)

    class InterleavingStorage(OrmStorage):
        """Lets both batches settle their first request before either goes on."""

        def _update_and_settle(self, request: SettleRequest, rows: Any) -> Any:
            result = super()._update_and_settle(request, rows)
            if request.execution_id in ("te_a1", "te_b1"):
                try:
                    barrier.wait(timeout=2)
                except threading.BrokenBarrierError:
                    pass  # the other batch waits for our locks: no interleaving possible
            return result

    storage = InterleavingStorage()
    update = derive_update(now, {"status": Status.COMPLETED})

    def settle(index: int) -> None:
        rows = (a1, a2) if index == 0 else (b1, b2)
        storage.update_many_by_id_and_settle(
            [SettleRequest(row.execution_id, update) for row in rows]
        )

    in_threads(2, settle)
    counts = TaskExecution.objects.filter(
        execution_id__in=[p.execution_id, q.execution_id]
    ).values_list("active_children_count", flat=True)
    assert list(counts) == [0, 0]
