"""Executor-level storage conformance (seed-tests section R, ``runStorageTest`` part 1).

The scenarios run through a real executor on our ORM storage and the test database, with
storage batching on and off. The small scenarios are tests of their own; all of them, R2 and R7
included, also run enqueued together, as the seed runs them.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable

import pytest
from django.test import override_settings

from django_durable import (
    ParentResult,
    child,
    looping_task,
    parent_task,
    sequential_tasks,
    sleeping_task,
    task,
    wakeup_sleeping_task,
)
from django_durable.conf import durable_settings
from django_durable.models import TaskExecution
from django_durable.storage import get_storage
from django_durable.testing import wait_until
from tests.executor.connection_tracking import _close_leaked_connections  # noqa: F401

WAIT = 30


@pytest.fixture(params=[True, False], ids=["batching", "no_batching"])
def executor(request, make_executor):
    """An executor over the process-wide storage with ``STORAGE_BATCHING`` on or off."""
    batching = request.param
    with override_settings(DURABLE={"POLL_INTERVAL": 0.05, "STORAGE_BATCHING": batching}):
        assert durable_settings.STORAGE_BATCHING is batching
        # Without batching each task thread records its result on a connection of its own:
        # 50 threads, not the default 1000, keep the 500-child fan-out below PostgreSQL's
        # max_connections (300 on the shared dev server).
        executor = make_executor(**({} if batching else {"max_concurrent_executions": 50}))
        assert executor.storage is get_storage()
        yield executor
        executor.shutdown()


def hello(name: str, who: str) -> str:
    return f"Hello from {who}, {name}!"


class Scenarios:
    """The tasks of R1-R10; ``start_rN()`` enqueues scenario N and returns its check."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.close_test_runs = 0
        self.iterations = 0
        self.value: int | None = None
        self._define_tree()
        self._define_simple()
        self._define_fan_out()
        self._define_looping()
        self._define_sleeping()
        self._define_close()

    # -- task definitions ----------------------------------------------------------------

    def _define_tree(self) -> None:
        def leaf(task_id: str, timeout: float):
            @task(id=task_id, timeout=timeout)
            def run(ctx, name):
                return hello(name, f"task {task_id.upper()}")

            return run

        a1, a2, a3 = leaf("a1", 5), leaf("a2", 1), leaf("a3", 5)

        @task(id="taskAFinalize", timeout=5)
        def task_a_finalize(ctx, result):
            outputs = [c.output for c in result.children]
            if any(c.status != "completed" for c in result.children):
                raise Exception("Children failed")
            return {
                "taskAOutput": result.output,
                "taskA1Output": outputs[0],
                "taskA2Output": outputs[1],
                "taskA3Output": outputs[2],
            }

        @parent_task(id="a", timeout=5, finalize=task_a_finalize)
        def a(ctx, name):
            return ParentResult(
                output=hello(name, "task A"),
                children=[child(a1, name), child(a2, name), child(a3, name)],
            )

        def b_step(task_id: str):
            @task(id=task_id, timeout=5)
            def run(ctx, state):
                return {
                    **state,
                    f"task{task_id.upper()}Output": hello(state["name"], f"task {task_id.upper()}"),
                }

            return run

        b = sequential_tasks("b", [b_step("b1"), b_step("b2"), b_step("b3")])

        @task(id="rootFinalize", timeout=5)
        def root_finalize(ctx, result):
            if any(c.status != "completed" for c in result.children):
                raise Exception("Children failed")
            a_output, b_output = (c.output for c in result.children)
            b_output = {k: v for k, v in b_output.items() if k != "name"}
            return {"rootOutput": result.output, **a_output, **b_output}

        @parent_task(id="root", timeout=5, finalize=root_finalize)
        def root(ctx, name):
            return ParentResult(
                output=hello(name, "root task"), children=[child(a, name), child(b, {"name": name})]
            )

        self.root = root
        self.a1 = a1

    def _define_simple(self) -> None:
        def make(i: int):
            @task(id=f"t{i}", timeout=5)
            def run(ctx, name):
                time.sleep(random.uniform(0, 0.01))
                return hello(name, f"task T{i}")

            return run

        self.distinct = [make(i) for i in range(250)]

        @task(id="retry", timeout=5, retry={"max_retries": 3})
        def retry(ctx, input):
            if ctx.attempt < 2:
                raise Exception("Not yet")
            return "Success"

        @task(id="failing", timeout=5)
        def failing(ctx, input):
            raise Exception("Failed")

        @task(id="parentWithFailingChildFinalize", timeout=1)
        def strict_finalize(ctx, result):
            if any(c.status != "completed" for c in result.children):
                raise Exception("Failed")
            return "unreachable"

        @parent_task(id="parentWithFailingChild", timeout=5, finalize=strict_finalize)
        def parent_with_failing_child(ctx, input):
            return ParentResult(output=None, children=[child(failing)])

        @task(id="parentWithFailingFinalizeTaskFinalize", timeout=1)
        def failing_finalize(ctx, result):
            raise Exception("Failed")

        @parent_task(id="parentWithFailingFinalizeTask", timeout=5, finalize=failing_finalize)
        def parent_with_failing_finalize(ctx, input):
            return ParentResult(output=None, children=[child(self.a1, "world")])

        self.retry = retry
        self.failing = failing
        self.parent_with_failing_child = parent_with_failing_child
        self.parent_with_failing_finalize = parent_with_failing_finalize

    def _define_fan_out(self) -> None:
        @task(id="concurrent_child", timeout=10)
        def concurrent_child(ctx, index):
            time.sleep(0.001)
            return index

        @parent_task(id="concurrent_parent", timeout=1)
        def concurrent_parent(ctx, input):
            return ParentResult(
                output=None, children=[child(concurrent_child, i) for i in range(500)]
            )

        self.concurrent_parent = concurrent_parent

    def _define_looping(self) -> None:
        @task(id="iteration", timeout=1, sleep_before_run=0.1)
        def iteration(ctx, input):
            with self._lock:
                self.iterations += 1
                value = self.value
            if value is None:
                return {"is_done": False}
            return {"is_done": True, "output": value}

        self.looping = looping_task("looping", iteration, 20)

    def _define_sleeping(self) -> None:
        self.sleeping = sleeping_task(id="test", timeout=300)

        @task(id="finalizeTask", timeout=5)
        def finalize(ctx, result):
            record = result.children[0]
            if record.status != "completed":
                raise Exception("Sleeping task failed")
            return record.output

        @parent_task(id="parent", timeout=5, finalize=finalize)
        def parent(ctx, input):
            return ParentResult(output=None, children=[child(self.sleeping, "test_unique_id")])

        self.sleeping_parent = parent

    def _define_close(self) -> None:
        @task(id="closeTestTask", timeout=5)
        def close_test_task(ctx, input):
            with self._lock:
                self.close_test_runs += 1
            return "close_test_output"

        @parent_task(id="closeTestParentTask", timeout=5)
        def close_test_parent(ctx, input):
            return ParentResult(output="parent_output", children=[child(close_test_task)])

        self.close_test_parent = close_test_parent

    # -- scenarios: start() -> check() ---------------------------------------------------------

    def start_r1(self) -> Callable[[], None]:
        handle = self.root.enqueue("world")

        def check() -> None:
            snapshot = handle.wait(timeout=WAIT)
            assert snapshot.status == "completed", snapshot.error
            assert snapshot.task_id == "root"
            expected = {"rootOutput": hello("world", "root task")}
            for name in ("A", "A1", "A2", "A3", "B1", "B2", "B3"):
                expected[f"task{name}Output"] = hello("world", f"task {name}")
            assert snapshot.output == expected
            assert snapshot.started_at is not None
            assert snapshot.waiting_for_children_started_at is not None
            assert snapshot.waiting_for_finalize_started_at is not None
            assert snapshot.finished_at >= snapshot.started_at

        return check

    def start_r2(self) -> Callable[[], None]:
        handles = [t.enqueue("world") for t in self.distinct]

        def check() -> None:
            for i, handle in enumerate(handles):
                snapshot = handle.wait(timeout=WAIT)
                assert snapshot.status == "completed", snapshot.error
                assert snapshot.output == hello("world", f"task T{i}")
                assert re.fullmatch(r"t\d+", snapshot.task_id)

        return check

    def start_r3(self) -> Callable[[], None]:
        handle = self.retry.enqueue()

        def check() -> None:
            snapshot = handle.wait(timeout=WAIT)
            assert snapshot.status == "completed", snapshot.error
            assert snapshot.output == "Success"
            assert snapshot.retry_attempts == 2

        return check

    def start_r4(self) -> Callable[[], None]:
        handle = self.failing.enqueue()

        def check() -> None:
            snapshot = handle.wait(timeout=WAIT)
            assert snapshot.status == "failed"
            assert snapshot.error.message == "Failed"

        return check

    def start_r5(self) -> Callable[[], None]:
        handle = self.parent_with_failing_child.enqueue()

        def check() -> None:
            snapshot = handle.wait(timeout=WAIT)
            assert snapshot.status == "finalize_failed"
            assert snapshot.error.message == "Failed"

        return check

    def start_r6(self) -> Callable[[], None]:
        handle = self.parent_with_failing_finalize.enqueue()

        def check() -> None:
            snapshot = handle.wait(timeout=WAIT)
            assert snapshot.status == "finalize_failed"
            assert snapshot.error.message == "Failed"

        return check

    def start_r7(self) -> Callable[[], None]:
        handle = self.concurrent_parent.enqueue()

        def check() -> None:
            snapshot = handle.wait(timeout=WAIT)
            assert snapshot.status == "completed", snapshot.error
            records = snapshot.output["children"]
            assert len(records) == 500
            for i, record in enumerate(records):
                assert record["status"] == "completed"
                assert record["output"] == i
            assert snapshot.waiting_for_children_started_at is not None
            assert snapshot.waiting_for_finalize_started_at is None

        return check

    def start_r8(self) -> Callable[[], None]:
        handle = self.looping.enqueue()

        def set_value_later() -> None:
            # The external condition: it becomes true once the loop has iterated a while.
            wait_until(lambda: self.iterations >= 3, WAIT)
            with self._lock:
                self.value = 10

        setter = threading.Thread(target=set_value_later, daemon=True)
        setter.start()

        def check() -> None:
            snapshot = handle.wait(timeout=WAIT)
            setter.join(WAIT)
            assert snapshot.status == "completed", snapshot.error
            assert snapshot.output == {"is_success": True, "output": 10}
            assert snapshot.waiting_for_children_started_at is not None
            assert snapshot.waiting_for_finalize_started_at is not None
            assert self.iterations >= 4

        return check

    def start_r9(self) -> Callable[[], None]:
        handle = self.sleeping_parent.enqueue()

        def check() -> None:
            wait_until(
                lambda: (
                    handle.get_execution().status == "waiting_for_children"
                    or handle.get_execution().is_finished
                ),
                WAIT,
            )
            woken = wakeup_sleeping_task(
                self.sleeping, "test_unique_id", status="completed", output="sleeping_task_output"
            )
            assert woken.status == "completed"
            assert woken.output == "sleeping_task_output"
            assert woken.waiting_for_children_started_at is None
            assert woken.waiting_for_finalize_started_at is None
            snapshot = handle.wait(timeout=WAIT)
            assert snapshot.status == "completed", snapshot.error
            assert snapshot.output == "sleeping_task_output"

        return check

    def start_r10(self) -> Callable[[], None]:
        handle = self.close_test_parent.enqueue()

        def check() -> None:
            snapshot = handle.wait(timeout=WAIT)
            assert snapshot.status == "completed", snapshot.error
            assert snapshot.output["output"] == "parent_output"
            assert self.close_test_runs == 1
            row = TaskExecution.objects.get(execution_id=handle.execution_id)
            assert row.status == "completed"
            assert row.on_children_finished_processing_status == "processed"
            assert row.on_children_finished_processing_finished_at is not None

            def closed() -> TaskExecution | None:
                row = TaskExecution.objects.get(execution_id=handle.execution_id)
                return row if row.close_status == "closed" else None

            row = wait_until(closed, 5, interval=0.1)
            # The fast path processes and closes in one transaction: equal times allowed.
            assert row.closed_at >= row.on_children_finished_processing_finished_at
            child_row = TaskExecution.objects.get(task_id="closeTestTask")
            assert child_row.status == "completed"
            wait_until(
                lambda: TaskExecution.objects.get(pk=child_row.pk).close_status == "closed", 5
            )

        return check


@pytest.fixture
def scenarios(executor) -> Scenarios:
    return Scenarios()


def test_r1_mixed_tree(scenarios):
    scenarios.start_r1()()


def test_r3_retry_to_success(scenarios):
    scenarios.start_r3()()


def test_r4_failing_task(scenarios):
    scenarios.start_r4()()


def test_r5_failing_child_and_strict_finalize(scenarios):
    scenarios.start_r5()()


def test_r6_failing_finalize_task(scenarios):
    scenarios.start_r6()()


def test_r8_looping(scenarios):
    scenarios.start_r8()()


def test_r9_sleeping_child_woken_through_the_storage(scenarios):
    scenarios.start_r9()()


def test_r10_exactly_once_and_full_close(scenarios):
    scenarios.start_r10()()


def test_r1_to_r10_enqueued_together(scenarios):
    """The seed's form: every scenario enqueued at once, then each awaited. R2 (250 distinct
    tasks) and R7 (a fan-out of 500 children) run only here, to keep the file fast."""
    checks = [getattr(scenarios, f"start_r{n}")() for n in (8, 9, 1, 2, 3, 4, 5, 6, 7, 10)]
    for check in checks:
        check()
    assert not TaskExecution.objects.filter(is_finished=False).exists()
