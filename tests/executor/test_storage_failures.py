"""Storage failures and storage-call retries through real executors (seed-tests section M).

The storage is made to fail by a subclass of the ORM storage whose one operation raises a given
number of times before it behaves again; everything else is the real engine on the test
database, with batching on and off.
"""

from __future__ import annotations

import math
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from django_durable import (
    DurableExecutionError,
    ParentResult,
    child,
    parent_task,
    task,
)
from django_durable.models import TaskExecution
from django_durable.storage import default as default_storage
from django_durable.storage.layer import StorageLayer
from django_durable.storage.orm import OrmStorage
from django_durable.testing import wait_until
from tests.executor.connection_tracking import _close_leaked_connections  # noqa: F401

WAIT = 20

batching_modes = pytest.mark.parametrize("batching", [True, False], ids=["batching", "direct"])


class FailingStorage(OrmStorage):
    """The ORM storage, whose operation ``method`` raises ``error`` on its next ``failures``
    calls (``math.inf``: until :meth:`heal`)."""

    method = ""

    def __init__(self, failures: float = 1, error: Exception | None = None) -> None:
        super().__init__()
        self.failures = failures
        self.error = error or Exception(f"Storage {self.method} failed")
        self.calls = 0
        self.failed = 0
        self._lock = threading.Lock()

    def heal(self) -> None:
        with self._lock:
            self.failures = 0

    def maybe_fail(self) -> None:
        with self._lock:
            self.calls += 1
            fail = self.failures > 0
            if fail:
                self.failures -= 1
                self.failed += 1
        if fail:
            raise self.error


class FailingInsert(FailingStorage):
    method = "insert_many"

    def insert_many(self, executions, *, announce=False):
        self.maybe_fail()
        return super().insert_many(executions, announce=announce)


class FailingGet(FailingStorage):
    method = "get_many_by_id"

    def get_many_by_id(self, requests):
        self.maybe_fail()
        return super().get_many_by_id(requests)


class FailingSpawn(FailingStorage):
    method = "update_many_by_id_and_insert_children_if_updated"

    def update_many_by_id_and_insert_children_if_updated(self, requests):
        self.maybe_fail()
        return super().update_many_by_id_and_insert_children_if_updated(requests)


class FailingSettle(FailingStorage):
    method = "update_many_by_id_and_settle"

    def update_many_by_id_and_settle(self, requests):
        self.maybe_fail()
        return super().update_many_by_id_and_settle(requests)


@pytest.fixture
def layers():
    """Storage layers made by a test; shut down after it."""
    made: list[StorageLayer] = []

    def make(storage, *, batching: bool, max_retries: int = 1) -> StorageLayer:
        layer = StorageLayer(storage, batching=batching, max_retries=max_retries)
        layer.start()
        made.append(layer)
        return layer

    yield make
    for layer in made:
        layer.shutdown()


@pytest.fixture
def process_storage(monkeypatch, settings):
    """Make the process-wide storage (enqueue, handles) use the given storage."""

    def install(storage: OrmStorage, *, batching: bool) -> None:
        settings.DURABLE = {**settings.DURABLE, "STORAGE_BATCHING": batching}
        monkeypatch.setattr(default_storage, "make_storage", lambda using="default": storage)
        default_storage.reset_storage()
        assert default_storage.get_storage().storage is storage

    yield install
    default_storage.reset_storage()


def new_row() -> TaskExecution:
    now = timezone.now()
    return TaskExecution(
        task_id="test", timeout=1, input="", start_at=now, created_at=now, updated_at=now
    )


# -- M1: insert failure ---------------------------------------------------------------------


@batching_modes
def test_m1_insert_failure_surfaces_then_recovers(make_executor, process_storage, batching):
    @task(id="test", timeout=5)
    def t(ctx, input):
        return "test"

    storage = FailingInsert(failures=math.inf, error=Exception("Storage insert failed"))
    process_storage(storage, batching=batching)

    with pytest.raises(Exception, match="Storage insert failed"):
        t.enqueue()
    assert storage.calls == 2  # the first call and its one retry
    assert not TaskExecution.objects.exists()

    storage.heal()
    make_executor()
    snapshot = t.enqueue().wait(timeout=WAIT)
    assert snapshot.status == "completed"
    assert snapshot.output == "test"


# -- M2: failures while recording results --------------------------------------------------------


@batching_modes
def test_m2_failures_while_recording_do_not_crash_the_executor(make_executor, layers, batching):
    """While every write of a result fails, the execution stays ``running`` (nothing is
    recorded wrongly); once the storage heals, the executor is still working: the stuck
    execution expires and runs again, and new work runs."""
    runs = []
    started = threading.Event()

    @task(id="test", timeout=1)
    def t(ctx, input):
        runs.append(ctx.prev_error)
        started.set()
        return "test"

    storage = FailingSettle(failures=math.inf)
    executor = make_executor(storage=layers(storage, batching=batching), expire_leeway=0.2)
    handle = t.enqueue()
    assert started.wait(WAIT)
    wait_until(lambda: storage.failed >= 2, WAIT)
    wait_until(lambda: not executor.running_execution_ids, WAIT)
    assert handle.get_execution().status in {"running", "ready"}

    storage.heal()
    snapshot = handle.wait(timeout=WAIT)
    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == "test"
    assert len(runs) == 2
    assert runs[0] is None
    assert runs[1].message == "Task execution expired"

    other = t.enqueue().wait(timeout=WAIT)
    assert other.status == "completed"


# -- M3: read failure ----------------------------------------------------------------------------


@batching_modes
def test_m3_read_failure_surfaces_then_recovers(transactional_db, process_storage, batching):
    @task(id="test", timeout=5)
    def t(ctx, input):
        return "test"

    storage = FailingGet(failures=0, error=Exception("Storage getManyById failed"))
    process_storage(storage, batching=batching)
    handle = t.enqueue()

    storage.failures = math.inf
    with pytest.raises(Exception, match="Storage getManyById failed"):
        handle.get_execution()
    with pytest.raises(Exception, match="Storage getManyById failed"):
        handle.wait(timeout=1)

    storage.heal()
    assert handle.get_execution().status == "ready"


# -- M4 / M5: the atomic update + insert of children -------------------------------------------


@batching_modes
@pytest.mark.parametrize(
    ("failures", "expected"), [(1, "completed"), (2, "failed")], ids=["m4_once", "m5_twice"]
)
def test_m4_m5_spawn_failures_against_the_single_storage_retry(
    make_executor, layers, batching, failures, expected
):
    """One failure of the parent's update-and-insert-children is absorbed by the single
    storage retry; two exceed it and the parent fails (its children never stored)."""
    child_runs = []

    @task(id="child", timeout=5)
    def c(ctx, input):
        child_runs.append(ctx.execution_id)
        return "child_output"

    @parent_task(id="parent", timeout=5)
    def parent(ctx, input):
        return ParentResult(output="parent_output", children=[child(c)])

    storage = FailingSpawn(failures=failures)
    make_executor(storage=layers(storage, batching=batching, max_retries=1))

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == expected, snapshot.error
    assert storage.failed == failures
    if expected == "completed":
        assert snapshot.output["output"] == "parent_output"
        assert [r["output"] for r in snapshot.output["children"]] == ["child_output"]
        assert len(child_runs) == 1
    else:
        assert "Storage update_many_by_id_and_insert_children_if_updated failed" in (
            snapshot.error.message
        )
        assert child_runs == []
        assert not TaskExecution.objects.filter(task_id="child").exists()


@batching_modes
def test_m5_spawn_failure_is_retried_as_the_parent_task_allows(make_executor, layers, batching):
    """A storage failure after the storage's own retries fails the attempt like any error:
    a parent with retries left runs again and then spawns its children."""
    parent_runs = []

    @task(id="child", timeout=5)
    def c(ctx, input):
        return "child_output"

    @parent_task(id="parent", timeout=5, retry={"max_retries": 1})
    def parent(ctx, input):
        parent_runs.append(ctx.attempt)
        return ParentResult(output="parent_output", children=[child(c)])

    storage = FailingSpawn(failures=2)
    make_executor(storage=layers(storage, batching=batching, max_retries=1))

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert parent_runs == [0, 1]
    assert snapshot.retry_attempts == 1
    assert [r["output"] for r in snapshot.output["children"]] == ["child_output"]


# -- M6: retry counts of the storage layer ---------------------------------------------------------


@batching_modes
def test_m6_retryable_errors_are_retried_until_success(transactional_db, layers, batching):
    storage = FailingInsert(failures=2, error=DurableExecutionError.retryable("Temporary error"))
    layer = layers(storage, batching=batching, max_retries=3)

    execution = new_row()
    layer.insert_many([execution])

    assert storage.calls == 3
    assert TaskExecution.objects.filter(execution_id=execution.execution_id).exists()


@batching_modes
def test_m6_non_retryable_errors_are_not_retried(transactional_db, layers, batching):
    storage = FailingInsert(
        failures=math.inf, error=DurableExecutionError.non_retryable("Permanent error")
    )
    layer = layers(storage, batching=batching, max_retries=3)

    with pytest.raises(DurableExecutionError, match="Permanent error"):
        layer.insert_many([new_row()])

    assert storage.calls == 1
    assert not TaskExecution.objects.exists()


@batching_modes
def test_m6_retries_are_bounded(transactional_db, layers, batching):
    storage = FailingInsert(
        failures=math.inf, error=DurableExecutionError.retryable("Temporary error")
    )
    layer = layers(storage, batching=batching, max_retries=2)

    with pytest.raises(DurableExecutionError, match="Temporary error") as info:
        layer.insert_many([new_row()])

    assert storage.calls == 3
    assert info.value.is_retryable is True
    assert not TaskExecution.objects.exists()


@batching_modes
def test_m6_plain_exceptions_are_retryable(transactional_db, layers, batching):
    storage = FailingInsert(failures=1, error=Exception("Connection reset"))
    layer = layers(storage, batching=batching, max_retries=1)

    layer.insert_many([new_row()])

    assert storage.calls == 2
    assert TaskExecution.objects.count() == 1


def test_m6_retries_back_off(transactional_db, layers):
    """Retries wait 25 ms, 50 ms, 100 ms, ... (seed-spec §20)."""
    import time

    storage = FailingInsert(failures=3, error=Exception("Temporary error"))
    layer = layers(storage, batching=False, max_retries=3)

    started = time.monotonic()
    layer.insert_many([new_row()])

    assert storage.calls == 4
    assert time.monotonic() - started >= 0.025 + 0.05 + 0.1 - 0.005
    assert timezone.now() - TaskExecution.objects.get().created_at < timedelta(seconds=5)
