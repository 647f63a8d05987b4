"""Enqueueing, handles (inspect, wait, cancel and their async twins), sleeping tasks and their
wake-up (seed D2, D4, D5, E1-E7, I1-I8, L4-L8 and the wait timeout)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest

from django_durable import (
    DurableExecutionCancelledError,
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutionTimedOutError,
    ParentResult,
    RetryOptions,
    awakeup_sleeping_task,
    child,
    get_handle,
    parent_task,
    sleeping_task,
    task,
    wakeup_sleeping_task,
)
from django_durable.handles import TaskHandle
from django_durable.models import TaskExecution
from django_durable.testing import wait_until

from .scenario_helpers import (
    CANCELLED_ERROR,
    TIMED_OUT_ERROR,
    Counter,
    assert_finished,
    error_dict,
    row_count,
    run_async,
    run_in_threads,
    wait_for_status,
)

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["django_durable"])


def make(task_id: str = "test", **options):
    def run(ctx, input):
        return input

    return task(id=task_id, **options)(run)


# -- enqueue ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("transactional_db")
class TestEnqueue:
    def test_enqueue_stores_a_ready_execution(self) -> None:
        t = make(timeout=2)
        handle = t.enqueue({"name": "world"})
        assert isinstance(handle, TaskHandle)
        assert handle.task_id == "test"
        snapshot = handle.get_execution()
        assert snapshot.status == "ready"
        assert snapshot.is_finished is False
        assert snapshot.task_id == "test"
        assert snapshot.execution_id == handle.execution_id
        assert snapshot.input == {"name": "world"}
        assert snapshot.timeout == 2.0
        assert snapshot.retry_attempts == 0
        # fields that do not apply to a ready execution are None
        assert snapshot.output is None
        assert snapshot.error is None
        assert snapshot.started_at is None
        assert snapshot.finished_at is None
        assert snapshot.executor_id is None
        assert snapshot.root is None
        assert snapshot.parent is None
        assert snapshot.children == []
        assert snapshot.start_at >= snapshot.created_at

    def test_execution_ids(self) -> None:  # D5
        t = make()
        first, second = t.enqueue(), t.enqueue()
        assert first.execution_id != second.execution_id
        for handle in (first, second):
            assert handle.execution_id.startswith("te_")
            assert len(handle.execution_id) == 27
        assert row_count(task_id="test") == 2

    def test_enqueue_by_task_id(self) -> None:
        from django_durable.handles import enqueue

        make()
        handle = enqueue("test", 5)
        assert handle.get_execution().input == 5

    def test_enqueue_an_unregistered_task_id(self) -> None:  # L4
        from django_durable.handles import enqueue

        with pytest.raises(
            DurableExecutionNotFoundError, match=r"^Task not found \[taskId=unknown\]"
        ):
            enqueue("unknown", 1)
        assert row_count() == 0

    def test_enqueue_a_task_object_no_longer_registered(self) -> None:  # L3-like
        from django_durable.tasks import registry

        t = make()
        registry.unregister("test")
        with pytest.raises(DurableExecutionNotFoundError, match=r"Task not found \[taskId=test\]"):
            t.enqueue(1)
        assert row_count() == 0

    # D4: enqueue-time overrides replace the task's options for this execution only
    def test_no_override_keeps_the_task_defaults(self) -> None:
        t = make(retry=RetryOptions(max_retries=1), sleep_before_run=1, timeout=2)
        snapshot = t.enqueue().get_execution()
        assert snapshot.retry_options == RetryOptions(max_retries=1)
        assert snapshot.sleep_before_run == 1.0
        assert snapshot.timeout == 2.0
        assert snapshot.start_at - snapshot.created_at == timedelta(seconds=1)

    def test_retry_override_replaces_retry_wholesale(self) -> None:
        t = make(
            retry=RetryOptions(max_retries=1, delay_multiplier=2), sleep_before_run=1, timeout=2
        )
        snapshot = t.enqueue(retry=RetryOptions(max_retries=3, base_delay=0.5)).get_execution()
        assert snapshot.retry_options == RetryOptions(max_retries=3, base_delay=0.5)
        assert snapshot.retry_options.delay_multiplier == 1.0
        assert snapshot.sleep_before_run == 1.0
        assert snapshot.timeout == 2.0
        assert t.retry == RetryOptions(max_retries=1, delay_multiplier=2)  # task unchanged

    def test_all_overrides(self) -> None:
        t = make(retry=RetryOptions(max_retries=1), sleep_before_run=1, timeout=2)
        snapshot = t.enqueue(
            retry=RetryOptions(max_retries=3), sleep_before_run=timedelta(seconds=5), timeout=7
        ).get_execution()
        assert snapshot.retry_options.max_retries == 3
        assert snapshot.sleep_before_run == 5.0
        assert snapshot.timeout == 7.0
        assert snapshot.start_at - snapshot.created_at == timedelta(seconds=5)

    # D2: enqueue options are validated with the task's rules; nothing is stored
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"retry": RetryOptions(max_retries="1")}, "Invalid retry options for task test"),
            ({"retry": RetryOptions(max_retries=-1)}, "Invalid retry options for task test"),
            ({"retry": RetryOptions(max_retries=10000)}, "Invalid retry options for task test"),
            ({"retry": {"max_retries": 1, "max_delay": -1}}, "Invalid retry options for task test"),
            ({"sleep_before_run": "1000"}, "Invalid sleep before run value for task test"),
            ({"sleep_before_run": -1}, "Invalid sleep before run value for task test"),
            ({"timeout": "1000"}, "Invalid timeout value for task test"),
            ({"timeout": -1}, "Invalid timeout value for task test"),
            ({"timeout": 0}, "Invalid timeout value for task test"),
        ],
    )
    def test_invalid_enqueue_options(self, options, message) -> None:
        t = make()
        with pytest.raises(DurableExecutionError, match=f"^{message}"):
            t.enqueue("x", **options)
        assert row_count() == 0

    @pytest.mark.parametrize(
        "retry",
        [
            RetryOptions(max_retries=1),
            RetryOptions(max_retries=2, delay_multiplier=2),
            RetryOptions(max_retries=3, base_delay=1, delay_multiplier=3, max_delay=3),
        ],
    )
    def test_valid_enqueue_retry_options(self, retry) -> None:
        t = make()
        assert t.enqueue("x", retry=retry).get_execution().retry_options == retry

    def test_unserializable_input_is_refused(self) -> None:
        t = make()
        with pytest.raises(DurableExecutionError, match=r"not serializable") as info:
            t.enqueue({"value": object()})
        assert info.value.is_retryable is False
        assert row_count() == 0

    def test_input_over_the_size_limit_is_refused(self) -> None:  # F1
        t = make("too_large_input")
        with pytest.raises(DurableExecutionError, match=r"size"):
            t.enqueue("x" * (1_048_576 + 1000))
        assert row_count() == 0


# -- handles -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("transactional_db")
class TestGetHandle:
    def test_get_handle_for_an_existing_execution(self) -> None:
        t = make()
        handle = t.enqueue(1)
        again = get_handle(t, handle.execution_id)
        assert again == handle
        assert hash(again) == hash(handle)
        assert again.get_execution().input == 1
        assert get_handle("test", handle.execution_id) == handle

    def test_get_handle_by_execution_id_alone(self) -> None:
        t = make()
        handle = t.enqueue(1)
        found = get_handle(handle.execution_id)
        assert found.task_id == "test"
        assert found == handle

    def test_unknown_execution(self) -> None:  # L6
        t = make()
        with pytest.raises(
            DurableExecutionNotFoundError,
            match=r"^Task execution not found \[executionId=invalid\]$",
        ):
            get_handle(t, "invalid")
        with pytest.raises(DurableExecutionNotFoundError):
            get_handle("invalid")

    def test_unregistered_task(self) -> None:  # L5
        with pytest.raises(
            DurableExecutionNotFoundError, match=r"^Task not found \[taskId=invalid\]"
        ):
            get_handle("invalid", "te_whatever")

    def test_execution_of_another_task(self) -> None:  # L7
        first, second = make("test1"), make("test2")
        handle = first.enqueue(1)
        with pytest.raises(DurableExecutionNotFoundError, match=r"belongs to another task") as info:
            get_handle(second, handle.execution_id)
        assert "[providedTaskId=test2] [taskId=test1]" in info.value.message

    def test_get_handle_with_a_task_and_no_id(self) -> None:
        with pytest.raises(TypeError):
            get_handle(make())

    def test_execution_deleted_under_a_handle(self) -> None:  # L8
        t = make()
        handle = t.enqueue(1)
        TaskExecution.objects.filter(execution_id=handle.execution_id).delete()
        with pytest.raises(DurableExecutionNotFoundError, match=r"not found"):
            handle.get_execution()
        with pytest.raises(DurableExecutionNotFoundError, match=r"not found"):
            handle.wait(timeout=5)

    def test_wait_timeout(self) -> None:
        t = make()
        handle = t.enqueue(1)  # no executor: it never runs
        started = time.monotonic()
        with pytest.raises(DurableExecutionTimedOutError, match=r"did not finish within") as info:
            handle.wait(timeout=0.2)
        elapsed = time.monotonic() - started
        assert isinstance(info.value, TimeoutError)
        assert 0.2 <= elapsed < 2
        with pytest.raises(DurableExecutionTimedOutError):
            handle.wait(timeout=timedelta(milliseconds=50))
        assert handle.get_execution().status == "ready"


class TestWait:
    def test_wait_returns_the_finished_snapshot(self, executor) -> None:
        @task(id="slow", timeout=5)
        def slow(ctx, input):
            time.sleep(0.2)
            return "done"

        handle = slow.enqueue()
        snapshot = handle.wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == "done"
        assert snapshot.is_completed
        # waiting again returns at once with the same result
        assert handle.wait(timeout=0.5).output == "done"

    def test_wait_sees_a_finish_recorded_elsewhere(self, executor) -> None:
        t = make()
        handle = t.enqueue("x")
        other = get_handle(handle.execution_id)
        assert other.wait(timeout=10).output == "x"


# -- async twins ----------------------------------------------------------------------------


class TestAsyncTwins:
    def test_aenqueue_aget_execution_and_await_finished(self, executor) -> None:
        @task(id="echo", timeout=5)
        async def echo(ctx, input):
            await asyncio.sleep(0.01)
            return {"echo": input}

        async def main():
            handle = await echo.aenqueue("hi")
            first = await handle.aget_execution()
            finished = await handle.await_finished(timeout=10)
            return first, finished

        first, finished = run_async(main)
        assert first.status in {"ready", "running", "completed"}
        assert finished.status == "completed"
        assert finished.output == {"echo": "hi"}

    def test_await_finished_timeout(self, transactional_db) -> None:
        t = make()

        async def main():
            handle = await t.aenqueue(1)
            await handle.await_finished(timeout=0.1)

        with pytest.raises(DurableExecutionTimedOutError):
            run_async(main)

    def test_acancel(self, executor) -> None:
        started = threading.Event()

        @task(id="long", timeout=10)
        def long(ctx, input):
            started.set()
            ctx.abort_signal.wait(5)
            return "late"

        async def main():
            handle = await long.aenqueue()
            await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
            await handle.acancel()
            return await handle.await_finished(timeout=10)

        snapshot = run_async(main)
        assert snapshot.status == "cancelled"
        assert snapshot.error == CANCELLED_ERROR

    def test_awakeup_sleeping_task(self, executor) -> None:
        sleeper = sleeping_task(id="sleeper", timeout=30)

        async def main():
            handle = await sleeper.aenqueue("uid-async")
            woken = await awakeup_sleeping_task(sleeper, "uid-async", output={"ok": True})
            return handle, woken

        handle, woken = run_async(main)
        assert woken.status == "completed"
        assert woken.output == {"ok": True}
        assert woken.execution_id == handle.execution_id


# -- sleeping tasks (I1-I8) ---------------------------------------------------------------------


class TestSleepingTasks:
    def test_wakeup_completes(self, executor) -> None:  # I1
        sleeper = sleeping_task(id="test", timeout=10)
        handle = sleeper.enqueue("test_unique_id")
        snapshot = handle.get_execution()
        assert snapshot.status == "running"
        assert snapshot.sleeping_task_unique_id == "test_unique_id"
        assert snapshot.input == "test_unique_id"
        assert snapshot.started_at is not None
        assert snapshot.executor_id is None
        woken = wakeup_sleeping_task(
            sleeper, "test_unique_id", status="completed", output="test_output"
        )
        assert woken.status == "completed"
        assert woken.output == "test_output"
        assert woken.execution_id == handle.execution_id
        assert_finished(woken, "test")
        finished = handle.wait(timeout=5)
        assert finished.status == "completed"
        assert finished.output == "test_output"

    def test_wakeup_defaults_to_completed(self, executor) -> None:
        sleeper = sleeping_task(id="test", timeout=10)
        sleeper.enqueue("uid")
        assert wakeup_sleeping_task("test", "uid", output=[1, 2]).output == [1, 2]

    @pytest.mark.parametrize(
        "error",
        [
            Exception("test_error"),
            "test_error",
            {"message": "test_error"},
            DurableExecutionError.retryable("test_error"),
        ],
        ids=["exception", "string", "dict", "durable"],
    )
    def test_wakeup_fails(self, executor, error) -> None:  # I2
        sleeper = sleeping_task(id="test", timeout=10)
        handle = sleeper.enqueue("test_unique_id")
        woken = wakeup_sleeping_task(sleeper, "test_unique_id", status="failed", error=error)
        assert woken.status == "failed"
        assert woken.error == error_dict("test_error")
        assert woken.error.message == "test_error"
        assert woken.output is None
        assert handle.wait(timeout=5).status == "failed"

    def test_sleeping_timeout(self, executor) -> None:  # I3
        sleeper = sleeping_task(id="test", timeout=0.05)
        handle = sleeper.enqueue("test_unique_id")
        assert handle.get_execution().status in {"running", "timed_out"}
        snapshot = handle.wait(timeout=10)
        assert snapshot.status == "timed_out"
        assert snapshot.error == TIMED_OUT_ERROR
        assert snapshot.error.message == "Task execution timed out"

    def test_wakeup_after_cancel_returns_the_cancelled_execution(self, executor) -> None:  # I4
        sleeper = sleeping_task(id="test", timeout=10)
        handle = sleeper.enqueue("test_unique_id")
        assert handle.get_execution().status == "running"
        handle.cancel()
        woken = wakeup_sleeping_task(
            sleeper, "test_unique_id", status="completed", output="test_output"
        )
        assert woken.status == "cancelled"
        assert woken.error.message == "Task execution cancelled"
        assert woken.output is None

    def test_wakeup_twice_returns_the_first_result(self, executor) -> None:
        sleeper = sleeping_task(id="test", timeout=10)
        sleeper.enqueue("uid")
        first = wakeup_sleeping_task(sleeper, "uid", output="first")
        second = wakeup_sleeping_task(sleeper, "uid", status="failed", error="second")
        assert first.output == "first"
        assert second.status == "completed"
        assert second.output == "first"

    def test_wakeup_after_timeout_returns_the_timed_out_execution(self, executor) -> None:
        sleeper = sleeping_task(id="test", timeout=0.05)
        handle = sleeper.enqueue("uid")
        handle.wait(timeout=10)
        woken = wakeup_sleeping_task(sleeper, "uid", output="late")
        assert woken.status == "timed_out"

    def test_wakeup_through_a_regular_task(self, executor) -> None:  # I5, I7
        regular = make("regular")
        handle = regular.enqueue("test_unique_id")
        handle.wait(timeout=10)
        with pytest.raises(
            DurableExecutionError, match=r"^Task is not a sleeping task \[taskId=regular\]$"
        ):
            wakeup_sleeping_task(regular, "test_unique_id", output="x")

    def test_wakeup_with_invalid_status(self, executor) -> None:  # I6
        sleeper = sleeping_task(id="test", timeout=10)
        handle = sleeper.enqueue("test_unique_id")
        with pytest.raises(
            DurableExecutionError, match=r"Invalid status for sleeping task execution"
        ):
            wakeup_sleeping_task(sleeper, "test_unique_id", status="timed_out", output="x")
        assert handle.get_execution().status == "running"

    def test_wakeup_of_an_unknown_unique_id(self, transactional_db) -> None:  # I7
        sleeper = sleeping_task(id="test", timeout=10)
        with pytest.raises(
            DurableExecutionNotFoundError,
            match=r"^Sleeping task execution not found \[sleepingTaskUniqueId=invalid_unique_id\]$",
        ):
            wakeup_sleeping_task(sleeper, "invalid_unique_id", output="x")

    def test_wakeup_through_another_sleeping_task(self, executor) -> None:  # I7
        first = sleeping_task(id="sleeping_task1", timeout=0.2)
        second = sleeping_task(id="sleeping_task2", timeout=10)
        handle = first.enqueue("test_unique_id")
        with pytest.raises(DurableExecutionNotFoundError, match=r"belongs to another task"):
            wakeup_sleeping_task(second, "test_unique_id", output="x")
        assert handle.wait(timeout=10).status == "timed_out"
        with pytest.raises(DurableExecutionNotFoundError, match=r"belongs to another task"):
            wakeup_sleeping_task(second, "test_unique_id", output="x")

    @pytest.mark.parametrize(
        ("unique_id", "message"),
        [
            (None, "A unique id string is required"),
            (10, "Input must be a unique id string"),
            ("", "A non-empty unique id string is required"),
            ("a" * 300, "The unique id string must be shorter than 256 characters"),
        ],
    )
    def test_unique_id_validation_at_enqueue(self, transactional_db, unique_id, message) -> None:
        sleeper = sleeping_task(id="test", timeout=10)  # I8
        with pytest.raises(DurableExecutionError, match=message):
            sleeper.enqueue(unique_id)
        assert row_count() == 0

    def test_duplicate_unique_id(self, transactional_db) -> None:
        sleeper = sleeping_task(id="test", timeout=10)
        sleeper.enqueue("same")
        with pytest.raises(DurableExecutionError, match=r"already exists"):
            sleeper.enqueue("same")
        assert row_count() == 1

    def test_wakeup_output_over_the_size_limit(self, executor) -> None:
        sleeper = sleeping_task(id="test", timeout=10)
        handle = sleeper.enqueue("uid")
        with pytest.raises(DurableExecutionError, match=r"size"):
            wakeup_sleeping_task(sleeper, "uid", output="z" * (1_048_576 + 10))
        assert handle.get_execution().status == "running"


# -- cancellation (E1-E7) -------------------------------------------------------------------------


class TestCancel:
    def test_cancel_before_pickup(self, executor) -> None:  # E1
        count = Counter()

        @task(id="test", timeout=5)
        def t(ctx, input):
            count.incr()
            ctx.abort_signal.wait(1)
            return "done"

        handle = t.enqueue()
        handle.cancel()
        snapshot = handle.wait(timeout=10)
        assert snapshot.status == "cancelled"
        assert snapshot.error == CANCELLED_ERROR
        assert snapshot.finished_at is not None
        assert snapshot.output is None
        assert count.value <= 1

    def test_cancel_a_ready_execution_without_executor(self, transactional_db) -> None:
        t = make()
        handle = t.enqueue()
        handle.cancel()
        snapshot = handle.get_execution()
        assert snapshot.status == "cancelled"
        assert snapshot.error == CANCELLED_ERROR
        assert snapshot.finished_at is not None

    def test_cancel_a_running_execution(self, executor) -> None:  # E2
        count = Counter()
        returned = threading.Event()
        tracked_when_returning: list[bool] = []

        @task(id="test", timeout=10)
        def t(ctx, input):
            count.incr()
            time.sleep(2)  # ignores the abort signal
            tracked_when_returning.append(ctx.execution_id in executor.running_execution_ids)
            returned.set()
            return "late"

        handle = t.enqueue()
        wait_until(lambda: handle.execution_id in executor.running_execution_ids, 5)
        assert handle.get_execution().status == "running"
        handle.cancel()
        snapshot = handle.wait(timeout=10)
        assert snapshot.status == "cancelled"
        assert snapshot.error.message == "Task execution cancelled"
        assert snapshot.started_at is not None
        assert_finished(snapshot, "test")
        # the late return does not overwrite the cancellation...
        assert returned.wait(5)
        wait_until(lambda: executor.running_count == 0, 5)
        assert handle.get_execution().status == "cancelled"
        assert count.value == 1
        # ...and the executor had let go of the attempt before the code returned
        assert tracked_when_returning == [False]

    def test_three_concurrent_cancels_before_start(self, transactional_db) -> None:  # E3
        t = make()
        handle = t.enqueue()
        run_in_threads(handle.cancel, 3)
        snapshot = handle.get_execution()
        assert snapshot.status == "cancelled"
        assert snapshot.error == CANCELLED_ERROR

    def test_three_concurrent_cancels_after_start(self, executor) -> None:  # E4
        @task(id="test", timeout=10)
        def t(ctx, input):
            ctx.abort_signal.wait(5)
            return "late"

        handle = t.enqueue()
        wait_for_status(handle, "running")
        run_in_threads(handle.cancel, 3)
        snapshot = handle.wait(timeout=10)
        assert snapshot.status == "cancelled"
        assert snapshot.error == CANCELLED_ERROR

    def test_cancel_reaches_the_abort_signal(self, executor) -> None:  # E5
        started = threading.Event()
        aborted = threading.Event()

        @task(id="test", timeout=30)
        def t(ctx, input):
            started.set()
            for _ in range(100):
                if ctx.abort_signal.aborted:
                    aborted.set()
                    raise DurableExecutionCancelledError()
                time.sleep(0.05)
            return "not cancelled"

        handle = t.enqueue()
        assert started.wait(5)
        handle.cancel()
        snapshot = handle.wait(timeout=10)
        assert snapshot.status == "cancelled"
        assert snapshot.error.message == "Task execution cancelled"
        assert aborted.wait(2.5), "the run never saw its abort signal"

    def test_async_task_is_cancelled_with_asyncio_cancellation(self, executor) -> None:
        started = threading.Event()
        cancelled = threading.Event()

        @task(id="test", timeout=30)
        async def t(ctx, input):
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "not cancelled"

        handle = t.enqueue()
        assert started.wait(5)
        handle.cancel()
        assert handle.wait(timeout=10).status == "cancelled"
        assert cancelled.wait(2.5)
        wait_until(lambda: executor.running_count == 0, 2.5)

    def test_shutdown_signal_cooperative_cancel(self, make_executor) -> None:  # E6
        executor = make_executor()
        count = Counter()
        started = threading.Event()

        @task(id="test", timeout=20)
        def t(ctx, input):
            count.incr()
            started.set()
            for _ in range(20):
                if ctx.shutdown_signal.aborted:
                    raise DurableExecutionCancelledError()
                ctx.shutdown_signal.wait(0.5)
            return "not cancelled"

        handle = t.enqueue()
        assert started.wait(5)
        executor.shutdown()
        assert executor.is_running is False
        snapshot = handle.wait(timeout=10)  # handles keep working after shutdown
        assert snapshot.status == "cancelled"
        assert snapshot.error == CANCELLED_ERROR
        assert count.value == 1
        assert (snapshot.finished_at - snapshot.started_at).total_seconds() < 10

    def test_cancel_a_finished_execution_is_a_no_op(self, executor) -> None:
        t = make()
        handle = t.enqueue("x")
        assert handle.wait(timeout=10).status == "completed"
        handle.cancel()
        snapshot = handle.get_execution()
        assert snapshot.status == "completed"
        assert snapshot.output == "x"
        assert snapshot.error is None

    def test_cancel_an_unknown_execution_is_a_no_op(self, transactional_db) -> None:
        make()
        TaskHandle("test", "te_doesnotexist000000000000").cancel()
        assert row_count() == 0

    def test_cancel_parent_while_a_child_runs(self, executor) -> None:  # E7
        child_started = threading.Event()
        child_completed = threading.Event()
        child_saw_abort = threading.Event()

        @task(id="slow_child", timeout=10)
        def slow_child(ctx, input):
            child_started.set()
            for _ in range(100):
                if ctx.abort_signal.aborted:
                    child_saw_abort.set()
                    return "cancelled_by_parent"
                time.sleep(0.05)
            child_completed.set()
            return "completed"

        @parent_task(id="parent_cancel", timeout=10)
        def parent(ctx, input):
            return ParentResult(output="parent", children=[child(slow_child)])

        handle = parent.enqueue()
        assert child_started.wait(5)
        handle.cancel()
        snapshot = handle.get_execution()
        assert snapshot.status == "cancelled"
        assert snapshot.error == CANCELLED_ERROR
        assert not child_completed.is_set()
        # the cancellation flows down to the running child and interrupts it
        assert len(snapshot.children) == 1
        child_handle = get_handle(slow_child, snapshot.children[0].execution_id)
        child_snapshot = child_handle.wait(timeout=10)
        assert child_snapshot.status == "cancelled"
        assert child_snapshot.error == error_dict(
            "Parent task failed [parentTaskId=parent_cancel] "
            f"[parentExecutionId={handle.execution_id}]: Task execution cancelled",
            error_type="cancelled",
        )
        assert child_saw_abort.wait(5)
        assert not child_completed.is_set()
        assert handle.get_execution().status == "cancelled"

    def test_cancel_parent_waiting_for_finalize_cancels_the_finalize(self, executor) -> None:
        finalize_started = threading.Event()

        @task(id="slow_finalize", timeout=10)
        def slow_finalize(ctx, input):
            finalize_started.set()
            ctx.abort_signal.wait(5)
            return "late"

        @parent_task(id="parent", timeout=10, finalize=slow_finalize)
        def parent(ctx, input):
            return ParentResult(output="parent_output")

        handle = parent.enqueue()
        assert finalize_started.wait(5)
        snapshot = handle.get_execution()
        assert snapshot.status == "waiting_for_finalize"
        assert snapshot.finalize is not None
        handle.cancel()
        assert handle.wait(timeout=5).status == "cancelled"
        finalize = get_handle(slow_finalize, snapshot.finalize.execution_id).wait(timeout=10)
        assert finalize.status == "cancelled"
        assert finalize.error.message == (
            f"Parent task failed [parentTaskId=parent] [parentExecutionId={handle.execution_id}]: "
            "Task execution cancelled"
        )
        assert handle.get_execution().status == "cancelled"
