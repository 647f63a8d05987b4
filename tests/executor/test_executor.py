"""The executor through real runs: lifecycle and API errors (L), several executors on one
database (N), backpressure (O), crash recovery (Q) and the recommended additions (V)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from django_durable import (
    DurableExecutionCancelledError,
    DurableExecutionNotFoundError,
    DurableExecutionTimedOutError,
    Executor,
    ParentResult,
    RetryOptions,
    child,
    get_handle,
    parent_task,
    task,
)
from django_durable.handles import enqueue
from django_durable.models import TaskExecution
from django_durable.serialization import serialize as _serialize
from django_durable.tasks import registry
from django_durable.testing import wait_until
from tests.executor.connection_tracking import (  # noqa: F401
    ConnectionTracker,
    _close_leaked_connections,
)

WAIT = 20


class Count:
    """A thread-safe counter of runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def inc(self) -> None:
        with self._lock:
            self.value += 1


class Blocker:
    """Task code that blocks until released, tracking how many run at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gate = threading.Semaphore(0)
        self.started = 0
        self.running = 0
        self.max_running = 0
        self.finished = 0

    def run(self) -> None:
        with self._lock:
            self.started += 1
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            self._gate.acquire(timeout=30)
        finally:
            with self._lock:
                self.running -= 1
                self.finished += 1

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self._gate.release()


@pytest.fixture
def connection_tracker():
    tracker = ConnectionTracker()
    tracker.start()
    yield tracker
    tracker.stop()


@pytest.fixture
def count() -> Count:
    return Count()


@pytest.fixture
def blocker():
    blocker = Blocker()
    yield blocker
    blocker.release(1000)  # never leave executor threads blocked past the test


def serialize(value) -> str:
    return _serialize(value, max_size=None)


def row(execution_id: str) -> TaskExecution:
    return TaskExecution.objects.get(execution_id=execution_id)


def never(condition, timeout: float = 0.3) -> None:
    """Assert that ``condition`` stays false for ``timeout`` seconds (a few poll intervals)."""
    with pytest.raises(AssertionError):
        wait_until(condition, timeout)


def assert_finished(snapshot, task_id: str) -> None:
    assert snapshot.task_id == task_id
    assert snapshot.execution_id.startswith("te_")
    assert snapshot.started_at is not None
    assert snapshot.finished_at is not None
    assert snapshot.finished_at >= snapshot.started_at


# -- L: lifecycle and API errors -------------------------------------------------------------


def test_l1_l10_shut_down_executor_does_not_start_again_and_enqueue_still_works(make_executor):
    @task(id="test", timeout=5)
    def t(ctx, input):
        return "test"

    first = make_executor()
    first.shutdown()
    first.start()
    assert not first.is_running

    handle = t.enqueue()
    assert handle.get_execution().status == "ready"
    assert get_handle(t, handle.execution_id) == handle
    never(lambda: handle.get_execution().status != "ready")

    second = make_executor()
    snapshot = handle.wait(timeout=WAIT)
    assert snapshot.status == "completed"
    assert snapshot.output == "test"
    assert first.running_count == 0
    assert second.is_running


def test_l2_shutdown_waits_for_running_attempts(make_executor, count):
    started = threading.Event()

    @task(id="test", timeout=10)
    def t(ctx, input):
        count.inc()
        started.set()
        time.sleep(0.5)
        if ctx.shutdown_signal.aborted:
            return "test cancelled"
        count.inc()
        return "test"

    executor = make_executor()
    handle = t.enqueue()
    assert handle.get_execution().status in {"ready", "running"}
    assert started.wait(WAIT)
    assert handle.get_execution().status == "running"
    assert count.value == 1

    executor.shutdown()

    # shutdown() returned only after the attempt finished and recorded its result
    snapshot = handle.get_execution()
    assert snapshot.status == "completed"
    assert snapshot.output == "test cancelled"
    assert count.value == 1
    assert_finished(snapshot, "test")
    assert handle.wait(timeout=1) == snapshot


def test_l3_enqueue_of_an_unregistered_task_raises_not_found(transactional_db):
    @task(id="test", timeout=1)
    def t(ctx, input):
        return "test"

    registry.unregister("test")

    with pytest.raises(DurableExecutionNotFoundError, match=r"Task not found \[taskId=test\]"):
        t.enqueue()
    assert not TaskExecution.objects.exists()


def test_l4_enqueue_of_an_unknown_task_id_raises_not_found(transactional_db):
    with pytest.raises(DurableExecutionNotFoundError, match="not found"):
        enqueue("unknown")
    assert not TaskExecution.objects.exists()


def test_l5_handle_for_an_unregistered_task(transactional_db):
    with pytest.raises(DurableExecutionNotFoundError, match=r"Task not found \[taskId=invalid\]"):
        get_handle("invalid", "te_whatever")


def test_l6_handle_for_an_unknown_execution(transactional_db):
    @task(id="test", timeout=1)
    def t(ctx, input):
        return "test"

    with pytest.raises(
        DurableExecutionNotFoundError, match=r"Task execution not found \[executionId=invalid\]"
    ):
        get_handle(t, "invalid")
    with pytest.raises(DurableExecutionNotFoundError, match="not found"):
        get_handle("invalid")


def test_l7_handle_for_another_tasks_execution(transactional_db):
    @task(id="test1", timeout=1)
    def t1(ctx, input):
        return "test1"

    @task(id="test2", timeout=1)
    def t2(ctx, input):
        return "test2"

    handle = t1.enqueue()

    with pytest.raises(DurableExecutionNotFoundError, match="belongs to another task"):
        get_handle(t2, handle.execution_id)
    assert get_handle(handle.execution_id).task_id == "test1"


def test_l8_execution_deleted_under_a_handle(executor):
    @task(id="test", timeout=1)
    def t(ctx, input):
        return "test"

    handle = t.enqueue()
    assert handle.wait(timeout=WAIT).status == "completed"
    TaskExecution.objects.filter(execution_id=handle.execution_id).delete()

    with pytest.raises(DurableExecutionNotFoundError, match="not found"):
        handle.get_execution()
    with pytest.raises(DurableExecutionNotFoundError, match="not found"):
        handle.wait(timeout=1)


def test_l9_shutdown_is_idempotent(make_executor):
    executor = make_executor()
    executor.shutdown()
    executor.shutdown()
    never_started = Executor()
    never_started.shutdown()
    never_started.shutdown()
    assert not executor.is_running
    assert not never_started.is_running


def test_l11_task_not_registered_where_it_runs(make_executor):
    @task(id="test", timeout=1)
    def t(ctx, input):
        return "test"

    handle = t.enqueue()
    registry.unregister("test")
    make_executor()

    snapshot = handle.wait(timeout=WAIT)

    assert snapshot.status == "failed"
    assert "Task not found [taskId=test]" in snapshot.error.message
    assert snapshot.error.error_type == "not_found"
    assert snapshot.error.is_retryable is False


def _frozen_parent_waiting_for_children(*, with_child_row: bool) -> tuple[str, str]:
    """A parent left ``waiting_for_children`` with its one child finished and reported
    (the state the seed freezes by stubbing the children-finished claim)."""
    now = timezone.now()
    past = now - timedelta(seconds=1)
    parent = TaskExecution.objects.create(
        task_id="parent",
        timeout=5,
        input=serialize(None),
        status="waiting_for_children",
        run_output=serialize("parent_output"),
        start_at=past,
        started_at=past,
        waiting_for_children_started_at=past,
        active_children_count=0,
        created_at=past,
        updated_at=past,
    )
    child_id = "te_" + "c" * 24
    parent.children = [{"task_id": "child", "execution_id": child_id}]
    parent.save(update_fields=["children"])
    if with_child_row:
        TaskExecution.objects.create(
            execution_id=child_id,
            task_id="child",
            timeout=5,
            input=serialize(None),
            root_task_id="parent",
            root_execution_id=parent.execution_id,
            parent_task_id="parent",
            parent_execution_id=parent.execution_id,
            is_only_child_of_parent=True,
            status="completed",
            is_finished=True,
            output=serialize("child_output"),
            start_at=past,
            started_at=past,
            finished_at=past,
            close_status="closed",
            closed_at=past,
            created_at=past,
            updated_at=past,
        )
    return parent.execution_id, child_id


def test_l12_parent_not_registered_when_its_children_finished(make_executor):
    parent_id, _ = _frozen_parent_waiting_for_children(with_child_row=True)
    make_executor()

    snapshot = get_handle(parent_id).wait(timeout=WAIT)

    assert snapshot.status == "failed"
    assert "Task not found [taskId=parent]" in snapshot.error.message
    assert snapshot.error.error_type == "not_found"


def test_l13_children_rows_missing(make_executor):
    @task(id="child", timeout=5)
    def c(ctx, input):
        return "child_output"

    @parent_task(id="parent", timeout=5)
    def parent(ctx, input):
        return ParentResult(output="parent_output", children=[child(c)])

    parent_id, _ = _frozen_parent_waiting_for_children(with_child_row=False)
    make_executor()

    snapshot = get_handle(parent, parent_id).wait(timeout=WAIT)

    assert snapshot.status == "failed"
    assert "Some children task executions not found" in snapshot.error.message
    assert snapshot.error.error_type == "not_found"


def test_l12_l13_control_frozen_parent_with_its_child_completes(make_executor):
    @task(id="child", timeout=5)
    def c(ctx, input):
        return "child_output"

    @parent_task(id="parent", timeout=5)
    def parent(ctx, input):
        return ParentResult(output="parent_output", children=[child(c)])

    parent_id, child_id = _frozen_parent_waiting_for_children(with_child_row=True)
    make_executor()

    snapshot = get_handle(parent, parent_id).wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == {
        "output": "parent_output",
        "children": [
            {
                "task_id": "child",
                "execution_id": child_id,
                "status": "completed",
                "output": "child_output",
            }
        ],
    }


def test_l14_handle_for_a_running_task(executor, count):
    started = threading.Event()

    @task(id="test", timeout=5)
    def t(ctx, input):
        count.inc()
        started.set()
        ctx.abort_signal.wait(1)
        return "test"

    execution_id = t.enqueue().execution_id
    handle = get_handle(t, execution_id)
    assert started.wait(WAIT)

    assert handle.get_execution().status == "running"
    assert count.value == 1
    assert handle.wait(timeout=WAIT).status == "completed"


def test_l15_wait_with_no_time_left_raises_at_once(executor):
    release = threading.Event()

    @task(id="test", timeout=5)
    def t(ctx, input):
        release.wait(5)
        return "test"

    handle = t.enqueue()
    try:
        with pytest.raises(DurableExecutionTimedOutError):
            handle.wait(timeout=0)
        with pytest.raises(TimeoutError):
            handle.wait(timeout=0)
    finally:
        release.set()


def test_l16_wait_timeout_interrupts_a_long_poll_interval(executor):
    release = threading.Event()

    @task(id="test", timeout=5)
    def t(ctx, input):
        release.wait(5)
        return "test"

    handle = t.enqueue()
    try:
        started = time.monotonic()
        with pytest.raises(DurableExecutionTimedOutError):
            handle.wait(timeout=0.3, poll_interval=2)
        assert time.monotonic() - started < 1.5
    finally:
        release.set()


def test_l17_wait_returns_when_the_execution_finishes_in_time(executor):
    @task(id="test", timeout=5)
    def t(ctx, input):
        time.sleep(0.1)
        return "test"

    snapshot = t.enqueue().wait(timeout=10, poll_interval=1)

    assert snapshot.status == "completed"
    assert snapshot.output == "test"


def test_l18_wait_times_out_before_the_execution_finishes(executor):
    @task(id="test", timeout=5)
    def t(ctx, input):
        ctx.abort_signal.wait(2.5)
        return "test"

    handle = t.enqueue()
    with pytest.raises(DurableExecutionTimedOutError, match=handle.execution_id):
        handle.wait(timeout=0.25)
    assert not handle.get_execution().is_finished
    handle.cancel()
    assert handle.wait(timeout=WAIT).status == "cancelled"


# -- N: several executors on one database ------------------------------------------------------


def test_n1_no_double_pickup(make_executor):
    runs: list[str] = []
    lock = threading.Lock()

    @task(id="test", timeout=5)
    def t(ctx, input):
        time.sleep(0.1)
        with lock:
            runs.append(ctx.execution_id)
        return "test"

    make_executor()
    make_executor()
    handles = [t.enqueue() for _ in range(20)]

    snapshots = [h.wait(timeout=WAIT) for h in handles]

    assert all(s.status == "completed" for s in snapshots)
    assert sorted(runs) == sorted(h.execution_id for h in handles)


def test_n2_children_completed_across_executors(make_executor):
    def make_child(n):
        @task(id=f"concurrent_child{n}", timeout=2)
        def c(ctx, input):
            time.sleep(0.1)
            return f"child{n}_result"

        return c

    kids = [make_child(n) for n in (1, 2, 3)]

    @parent_task(id="concurrent_parent", timeout=2)
    def parent(ctx, input):
        return ParentResult(output=None, children=[child(k) for k in kids])

    make_executor()
    make_executor()
    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert [c["output"] for c in snapshot.output["children"]] == [
        "child1_result",
        "child2_result",
        "child3_result",
    ]


def test_n3_work_spread_over_executors(make_executor):
    @task(id="distributed_task1", timeout=2)
    def t1(ctx, input):
        time.sleep(0.1)
        return "result1"

    @task(id="distributed_task2", timeout=2)
    def t2(ctx, input):
        time.sleep(0.15)
        return "result2"

    make_executor()
    make_executor()
    handles = [t1.enqueue(), t2.enqueue(), t1.enqueue(), t2.enqueue(), t1.enqueue()]

    snapshots = [h.wait(timeout=WAIT) for h in handles]

    assert all(s.status == "completed" for s in snapshots)
    assert Counter(s.output for s in snapshots) == {"result1": 3, "result2": 2}


@pytest.mark.slow
def test_n4_fan_out_of_1000_children_across_executors(make_executor):
    runs = Count()

    @task(id="fast_child", timeout=5)
    def fast_child(ctx, index):
        runs.inc()
        time.sleep(0.1)
        return index

    @parent_task(id="conflict_parent", timeout=5)
    def parent(ctx, input):
        return ParentResult(output=None, children=[child(fast_child, i) for i in range(1000)])

    make_executor(max_concurrent_executions=200)
    make_executor(max_concurrent_executions=200)
    snapshot = parent.enqueue().wait(timeout=90)

    assert snapshot.status == "completed", snapshot.error
    records = snapshot.output["children"]
    assert len(records) == 1000
    assert all(r["status"] == "completed" for r in records)
    assert [r["output"] for r in records] == list(range(1000))
    assert len({r["execution_id"] for r in records}) == 1000
    assert runs.value == 1000


# -- O: backpressure -------------------------------------------------------------------------


def running_rows() -> int:
    return TaskExecution.objects.filter(status="running").count()


def test_o1_max_concurrent_executions_is_respected(make_executor, blocker):
    @task(id="test", timeout=30)
    def t(ctx, input):
        blocker.run()
        return "test"

    executor = make_executor(max_concurrent_executions=3, max_executions_per_batch=2)
    handles = [t.enqueue() for _ in range(5)]

    wait_until(lambda: blocker.running == 3, WAIT)
    assert executor.running_count == 3
    assert len(executor.running_execution_ids) == 3
    assert executor.running_execution_ids <= {h.execution_id for h in handles}
    never(lambda: blocker.started > 3 or running_rows() > 3)

    blocker.release(2)
    wait_until(lambda: blocker.started == 5 and blocker.running == 3, WAIT)
    assert executor.running_count == 3

    blocker.release(3)
    assert all(h.wait(timeout=WAIT).status == "completed" for h in handles)
    assert blocker.max_running == 3
    wait_until(lambda: executor.running_count == 0, WAIT)


def test_o2_per_batch_limit(make_executor):
    lock = threading.Lock()
    state = {"running": 0, "max": 0}

    @task(id="test", timeout=5)
    def t(ctx, input):
        with lock:
            state["running"] += 1
            state["max"] = max(state["max"], state["running"])
        time.sleep(0.01)
        with lock:
            state["running"] -= 1
        return "test"

    executor = make_executor(max_concurrent_executions=3, max_executions_per_batch=2)
    handles = [t.enqueue() for _ in range(10)]
    observed: list[int] = []

    def done():
        observed.append(executor.running_count)
        return all(h.get_execution().is_finished for h in handles)

    wait_until(done, WAIT)

    assert all(h.get_execution().status == "completed" for h in handles)
    assert max(observed) <= 3
    assert state["max"] <= 3
    wait_until(lambda: executor.running_count == 0, WAIT)


def test_o3_backpressure_at_the_limit(make_executor, blocker):
    @task(id="test", timeout=30)
    def t(ctx, input):
        blocker.run()
        return "test"

    executor = make_executor(max_concurrent_executions=2, max_executions_per_batch=5)
    handles = [t.enqueue() for _ in range(4)]

    wait_until(lambda: blocker.started == 2, WAIT)
    assert len(executor.running_execution_ids) == 2
    never(lambda: blocker.started > 2)

    blocker.release(1)
    wait_until(lambda: blocker.started == 3 and blocker.running == 2, WAIT)
    assert len(executor.running_execution_ids) == 2

    for _ in range(3):
        blocker.release(1)
    assert all(h.wait(timeout=WAIT).status == "completed" for h in handles)
    assert blocker.started == 4
    assert blocker.max_running == 2
    wait_until(lambda: executor.running_count == 0, WAIT)


def test_o4_capacity_adaptive_batches(make_executor, blocker):
    @task(id="test", timeout=30)
    def t(ctx, input):
        blocker.run()
        return "test"

    executor = make_executor(max_concurrent_executions=5, max_executions_per_batch=3)
    first = [t.enqueue() for _ in range(3)]
    wait_until(lambda: blocker.running == 3, WAIT)
    assert executor.running_count == 3

    second = [t.enqueue() for _ in range(5)]
    wait_until(lambda: blocker.running == 5, WAIT)
    assert len(executor.running_execution_ids) == 5
    never(lambda: blocker.started > 5 or running_rows() > 5)

    blocker.release(8)
    assert all(h.wait(timeout=WAIT).status == "completed" for h in first + second)
    assert blocker.max_running == 5
    wait_until(lambda: executor.running_count == 0, WAIT)


def test_o5_running_count(make_executor, blocker):
    @task(id="test", timeout=30)
    def t(ctx, input):
        blocker.run()
        return "test"

    executor = make_executor(
        max_concurrent_executions=4, max_executions_per_batch=2, expire_leeway=60
    )
    handles = [t.enqueue() for _ in range(3)]
    wait_until(lambda: executor.running_count == 3, WAIT)

    blocker.release(2)
    wait_until(lambda: executor.running_count == 1, WAIT)
    assert sum(h.get_execution().status == "completed" for h in handles) == 2

    blocker.release(1)
    wait_until(lambda: executor.running_count == 0, WAIT)
    assert all(h.wait(timeout=WAIT).status == "completed" for h in handles)


# -- Q: crash recovery ------------------------------------------------------------------------


def _leave_running_for_a_crashed_executor(execution_id: str, *, retry_attempts: int = 0) -> None:
    past = timezone.now() - timedelta(seconds=30)
    updated = TaskExecution.objects.filter(execution_id=execution_id).update(
        status="running",
        executor_id="de_crashed",
        started_at=past,
        expires_at=past + timedelta(seconds=1),
        retry_attempts=retry_attempts,
    )
    assert updated == 1


def test_q1_execution_of_a_crashed_executor_is_recovered_after_it_expires(make_executor, count):
    contexts = []

    @task(id="test", timeout=100)
    def t(ctx, input):
        count.inc()
        contexts.append(ctx)
        return "test"

    handle = t.enqueue()
    _leave_running_for_a_crashed_executor(handle.execution_id)

    make_executor()
    snapshot = handle.wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == "test"
    assert count.value == 1
    assert contexts[0].attempt == 0
    assert contexts[0].prev_error is not None
    assert contexts[0].prev_error.message == "Task execution expired"
    assert snapshot.retry_attempts == 0
    assert snapshot.executor_id is None
    assert_finished(snapshot, "test")


def test_v_expiry_resets_to_ready_without_counting_a_retry(make_executor, count):
    """A recovered row goes back to ``ready`` with the ``Task execution expired`` error and
    its retry count unchanged, even when no retries are left (the expiry ignores them)."""
    attempts = []

    @task(id="test", timeout=100, retry=RetryOptions(max_retries=1))
    def t(ctx, input):
        count.inc()
        attempts.append((ctx.attempt, ctx.prev_error))
        return "test"

    handle = t.enqueue()
    _leave_running_for_a_crashed_executor(handle.execution_id, retry_attempts=1)

    # Sweepers only: this executor claims from a queue nobody uses, so the row stays ready.
    make_executor(queues=["nobody"])
    wait_until(lambda: handle.get_execution().status == "ready", WAIT)
    ready = handle.get_execution()
    assert ready.error == {
        "error_type": "generic",
        "message": "Task execution expired",
        "is_retryable": False,
        "is_internal": False,
    }
    assert ready.retry_attempts == 1
    assert ready.executor_id is None
    assert ready.started_at is None
    assert ready.expires_at is None
    assert count.value == 0

    make_executor()
    snapshot = handle.wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.retry_attempts == 1
    assert count.value == 1
    assert attempts[0][0] == 1
    assert attempts[0][1].message == "Task execution expired"


def test_v_unexpired_running_row_of_another_executor_is_left_alone(make_executor, count):
    @task(id="test", timeout=100)
    def t(ctx, input):
        count.inc()
        return "test"

    handle = t.enqueue()
    TaskExecution.objects.filter(execution_id=handle.execution_id).update(
        status="running",
        executor_id="de_alive",
        started_at=timezone.now(),
        expires_at=timezone.now() + timedelta(seconds=60),
    )
    make_executor()

    never(lambda: handle.get_execution().status != "running")
    assert count.value == 0
    assert row(handle.execution_id).executor_id == "de_alive"


# -- V: recommended additions ------------------------------------------------------------------


def test_v_backoff_delays(executor):
    """Retry ``r`` is scheduled ``min(base * mult ** (r - 1), max)`` after the failure."""
    failures: list[float] = []
    scheduled: list[float] = []

    @task(
        id="test",
        timeout=5,
        retry=RetryOptions(max_retries=3, base_delay=0.1, delay_multiplier=2, max_delay=0.25),
    )
    def t(ctx, input):
        if ctx.attempt > 0:
            execution = TaskExecution.objects.get(execution_id=ctx.execution_id)
            scheduled.append(execution.start_at.timestamp() - failures[-1])
        failures.append(time.time())
        raise Exception("Test error")

    snapshot = t.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "failed"
    assert snapshot.retry_attempts == 3
    assert len(scheduled) == 3
    for delay, expected in zip(scheduled, [0.1, 0.2, 0.25], strict=True):
        assert expected - 0.01 <= delay <= expected + 0.1, scheduled


def test_v_cross_executor_cancellation(make_executor):
    started = threading.Event()
    observed = threading.Event()
    ran_on: list[str] = []

    @task(id="test", timeout=30)
    def t(ctx, input):
        started.set()
        if ctx.abort_signal.wait(20):
            observed.set()
        return "not cancelled"

    a = make_executor()
    handle = t.enqueue()
    assert started.wait(WAIT)
    ran_on.append(row(handle.execution_id).executor_id)
    b = make_executor()
    assert ran_on == [a.id]
    assert handle.execution_id in a.running_execution_ids

    get_handle(t, handle.execution_id).cancel()

    snapshot = handle.wait(timeout=WAIT)
    assert snapshot.status == "cancelled"
    assert snapshot.error.message == "Task execution cancelled"
    assert snapshot.error.error_type == "cancelled"
    assert observed.wait(5)
    wait_until(lambda: handle.execution_id not in a.running_execution_ids, 5)
    assert handle.execution_id not in b.running_execution_ids
    assert row(handle.execution_id).needs_promise_cancellation is False
    assert handle.get_execution().status == "cancelled"


def test_v_cancelling_a_parent_waiting_for_finalize_cancels_the_finalize(executor):
    started = threading.Event()
    observed = threading.Event()

    @task(id="finalizeTask", timeout=30)
    def finalize(ctx, input):
        started.set()
        if ctx.abort_signal.wait(20):
            observed.set()
        return "not cancelled"

    @parent_task(id="parent", timeout=5, finalize=finalize)
    def parent(ctx, input):
        return ParentResult(output="parent_output")

    handle = parent.enqueue()
    assert started.wait(WAIT)
    waiting = handle.get_execution()
    assert waiting.status == "waiting_for_finalize"

    handle.cancel()

    snapshot = handle.wait(timeout=WAIT)
    assert snapshot.status == "cancelled"
    finalize_handle = get_handle(finalize, waiting.finalize.execution_id)
    finalized = finalize_handle.wait(timeout=WAIT)
    assert finalized.status == "cancelled"
    assert finalized.error.error_type == "cancelled"
    assert finalized.error.message == (
        f"Parent task failed [parentTaskId=parent] [parentExecutionId={handle.execution_id}]: "
        "Task execution cancelled"
    )
    assert observed.wait(5)
    wait_until(lambda: not executor.running_execution_ids, 5)
    assert handle.get_execution().status == "cancelled"


def test_v_failed_child_does_not_fail_a_parent_without_finalize(executor):
    @task(id="good", timeout=1)
    def good(ctx, input):
        return "good_output"

    @task(id="bad", timeout=1)
    def bad(ctx, input):
        raise Exception("bad error")

    @parent_task(id="parent", timeout=1)
    def parent(ctx, input):
        return ParentResult(output="parent_output", children=[child(good), child(bad)])

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.error is None
    good_record, bad_record = snapshot.output["children"]
    assert good_record["status"] == "completed"
    assert good_record["output"] == "good_output"
    assert bad_record["task_id"] == "bad"
    assert bad_record["status"] == "failed"
    assert "output" not in bad_record
    assert bad_record["error"] == {
        "error_type": "generic",
        "message": "bad error",
        "is_retryable": True,
        "is_internal": False,
    }


def test_v_claim_contention_each_row_is_claimed_once(make_executor):
    runs: list[str] = []
    lock = threading.Lock()

    @task(id="test", timeout=10)
    def t(ctx, input):
        with lock:
            runs.append(ctx.execution_id)
        return input

    handles = [t.enqueue(i) for i in range(200)]
    executors = [make_executor(max_executions_per_batch=10) for _ in range(4)]

    snapshots = [h.wait(timeout=60) for h in handles]

    assert [s.output for s in snapshots] == list(range(200))
    counts = Counter(runs)
    assert len(counts) == 200
    assert set(counts.values()) == {1}
    wait_until(lambda: all(e.running_count == 0 for e in executors), 5)


def test_v_max_concurrent_executions_is_per_executor(make_executor, blocker):
    @task(id="test", timeout=30)
    def t(ctx, input):
        blocker.run()
        return "test"

    a = make_executor(max_concurrent_executions=2)
    b = make_executor(max_concurrent_executions=2)
    handles = [t.enqueue() for _ in range(6)]

    wait_until(lambda: blocker.running == 4, WAIT)
    assert a.running_count == 2
    assert b.running_count == 2
    assert running_rows() == 4
    never(lambda: blocker.started > 4)

    blocker.release(6)
    assert all(h.wait(timeout=WAIT).status == "completed" for h in handles)
    assert blocker.max_running == 4


def test_v_cancel_of_a_ready_execution_never_runs_it(make_executor, count):
    @task(id="test", timeout=5)
    def t(ctx, input):
        count.inc()
        return "test"

    handle = t.enqueue()
    handle.cancel()
    handle.cancel()
    make_executor()

    snapshot = handle.wait(timeout=WAIT)
    assert snapshot.status == "cancelled"
    assert snapshot.error == DurableExecutionCancelledError().to_dict()
    never(lambda: count.value > 0)


# -- database connections of the executor's threads ----------------------------------------------


@pytest.mark.parametrize("batching", [True, False], ids=["batching", "no_batching"])
def test_executor_threads_close_their_database_connections(
    make_executor, connection_tracker, batching
):
    """An attempt's connection is released once its result is recorded, and shutdown leaves
    no connection open behind it (left to the garbage collector, psycopg warns)."""

    @task(id="test", timeout=5)
    def t(ctx, input):
        time.sleep(0.05)
        return input

    with override_settings(DURABLE={"POLL_INTERVAL": 0.05, "STORAGE_BATCHING": batching}):
        executor = make_executor()
        handles = [t.enqueue(i) for i in range(10)]
        assert [h.wait(timeout=WAIT).output for h in handles] == list(range(10))
        wait_until(lambda: executor.running_count == 0, WAIT)
        own = (f"durable-task-{executor.id}", f"durable-engine-{executor.id}")

        def held() -> list[str]:
            return [name for prefix in own for name in connection_tracker.open_on(prefix)]

        # released right after each result is recorded (a moment after running_count drops)
        wait_until(lambda: not held(), 2, message="executor threads still hold connections")
        executor.shutdown()
        for prefix in own:
            connection_tracker.wait_for_threads(prefix)
        assert held() == []


class TestClaimPacing:
    """Under load a worker claims at most every ``CLAIM_GAP_WHEN_BUSY`` (rows gather instead of
    one claim per notification); an idle worker claims at once."""

    def _paced(self, *, wakes: int, last_claim_full: bool = False) -> float:
        from django_durable.executor.executor import Executor as _Executor

        executor = _Executor()  # never started: only the pacing is exercised
        executor._last_claim_at = time.monotonic()
        executor._last_claim_full = last_claim_full
        for _ in range(wakes):
            executor._wake_claim()
        started = time.monotonic()
        executor._pace_claims()
        return time.monotonic() - started

    def test_one_wake_up_since_the_last_claim_is_served_at_once(self):
        assert self._paced(wakes=1) < 0.004

    def test_several_wake_ups_wait_for_the_gap(self):
        from django_durable.executor.executor import CLAIM_GAP_WHEN_BUSY

        assert self._paced(wakes=5) >= CLAIM_GAP_WHEN_BUSY * 0.8

    def test_after_a_full_batch_the_next_claim_is_at_once(self):
        assert self._paced(wakes=5, last_claim_full=True) < 0.004

    def test_executors_sharing_the_rows_space_their_claims_out_together(self):
        from django_durable.executor.executor import CLAIM_GAP_MAX, CLAIM_GAP_WHEN_BUSY
        from django_durable.executor.executor import Executor as _Executor

        executor = _Executor()
        for _ in range(30):  # every claim got half the rows: another executor took the rest
            executor._learn_claim_share(wakes=10, claimed=5)
        assert executor._claim_share == pytest.approx(0.5, abs=0.01)
        executor._last_claim_at = time.monotonic()
        executor._claim_wakes = 10
        started = time.monotonic()
        executor._pace_claims()
        assert time.monotonic() - started >= 2 * CLAIM_GAP_WHEN_BUSY * 0.8
        for _ in range(30):  # nothing at all: never slower than CLAIM_GAP_MAX
            executor._learn_claim_share(wakes=10, claimed=0)
        assert CLAIM_GAP_WHEN_BUSY / executor._claim_share <= CLAIM_GAP_MAX * 1.01
