"""Sequential tasks (seed G) and looping tasks (seed H) through a real executor."""

from __future__ import annotations

import threading
import time

import pytest

from django_durable import (
    DurableExecutionError,
    get_handle,
    looping_task,
    sequential_tasks,
    sleeping_task,
    task,
    wakeup_sleeping_task,
)
from django_durable.models import TaskExecution
from django_durable.testing import wait_until

from ..scenario_helpers import Counter, assert_finished, error_dict, row_count, wait_for_status

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["django_durable"])


# -- G: sequential tasks ------------------------------------------------------------------------


class TestSequentialTasks:
    def test_pipeline_with_a_transforming_validator(self, executor) -> None:  # G1
        count = Counter()

        @task(id="string", timeout=1)
        def string(ctx, input):
            count.incr()
            return input

        @task(id="number", timeout=1, validate_input=float)
        def number(ctx, input):
            count.incr()
            assert isinstance(input, float)
            return input

        @task(id="boolean", timeout=1)
        def boolean(ctx, input):
            count.incr()
            return input > 10

        seq = sequential_tasks("seq", [string, number, boolean])

        first = seq.enqueue("10.5").wait(timeout=10)
        assert first.status == "completed", first.error
        assert first.output is True
        assert count.value == 3
        assert_finished(first, "seq")
        assert first.are_children_sequential is True
        assert [c.task_id for c in first.children] == ["string", "number", "boolean"]

        second = seq.enqueue("9.5").wait(timeout=10)
        assert second.status == "completed", second.error
        assert second.output is False
        assert count.value == 6

    def test_pipeline_with_a_schema_that_transforms(self, executor) -> None:  # G2
        from rest_framework import serializers

        class NameToString(serializers.Serializer):
            name = serializers.CharField()

            def validate(self, attrs):
                return attrs["name"]

        count = Counter()

        @task(id="string", timeout=1, input_schema=NameToString)
        def string(ctx, input):
            count.incr()
            assert isinstance(input, str)
            return input

        @task(id="number", timeout=1, validate_input=float)
        def number(ctx, input):
            count.incr()
            return input

        @task(id="boolean", timeout=1)
        def boolean(ctx, input):
            count.incr()
            return input > 10

        seq = sequential_tasks("seq", [string, number, boolean])
        assert seq.enqueue({"name": "10.5"}).wait(timeout=10).output is True
        assert count.value == 3
        assert seq.enqueue({"name": "9.5"}).wait(timeout=10).output is False
        assert count.value == 6

    def test_failure_stops_the_sequence(self, executor) -> None:  # G4
        count = Counter()

        @task(id="seq_task1", timeout=1)
        def task1(ctx, input):
            count.incr()
            return "task1"

        @task(id="seq_task2", timeout=1)
        def task2(ctx, input):
            count.incr()
            raise Exception("Task 2 failed")

        @task(id="seq_task3", timeout=1)
        def task3(ctx, input):
            count.incr()
            return "task3"

        seq = sequential_tasks("seq", [task1, task2, task3])
        snapshot = seq.enqueue().wait(timeout=10)
        assert snapshot.status == "finalize_failed"
        assert snapshot.error == error_dict(
            "Sequential task failed [parentTaskId=seq] [index=1]: Task 2 failed"
        )
        assert count.value == 2
        assert row_count(task_id="seq_task3") == 0

    def test_cancel_mid_sequence(self, executor) -> None:  # G5
        started = {"task1": threading.Event(), "task2": threading.Event()}
        task2_aborted = threading.Event()
        count3 = Counter()

        @task(id="seq_task1", timeout=5)
        def task1(ctx, input):
            started["task1"].set()
            time.sleep(0.01)
            return "task1"

        @task(id="seq_task2", timeout=5)
        def task2(ctx, input):
            started["task2"].set()
            if ctx.abort_signal.wait(5):
                task2_aborted.set()
            return "task2"

        @task(id="seq_task3", timeout=5)
        def task3(ctx, input):
            count3.incr()
            return "task3"

        seq = sequential_tasks("seq", [task1, task2, task3])
        handle = seq.enqueue()
        assert started["task2"].wait(5)
        assert started["task1"].is_set()
        handle.cancel()
        snapshot = handle.wait(timeout=10)
        assert snapshot.status == "cancelled"
        step2 = get_handle(task2, snapshot.children[1].execution_id).wait(timeout=10)
        assert step2.status == "cancelled"
        assert step2.error.message.startswith("Parent task failed [parentTaskId=seq]")
        assert task2_aborted.wait(5)
        assert count3.value == 0
        assert snapshot.children[2].execution_id == "dummy"

    def test_timeout_inside_a_sequence(self, executor) -> None:  # G6
        count2 = Counter()

        @task(id="seq_task1", timeout=0.1)
        def task1(ctx, input):
            ctx.abort_signal.wait(5)
            return "task1"

        @task(id="seq_task2", timeout=1)
        def task2(ctx, input):
            count2.incr()
            return "task2"

        seq = sequential_tasks("seq", [task1, task2])
        snapshot = seq.enqueue().wait(timeout=10)
        assert snapshot.status == "finalize_failed"
        assert (
            "Sequential task failed [parentTaskId=seq] [index=0]: Task execution timed out"
            in snapshot.error.message
        )
        assert count2.value == 0

    def test_single_task_sequence(self, executor) -> None:  # G7
        count = Counter()

        @task(id="seq_task1", timeout=1)
        def task1(ctx, input):
            count.incr()
            return "task1"

        snapshot = sequential_tasks("seq", [task1]).enqueue().wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == "task1"
        assert count.value == 1

    def test_single_task_sequence_failing(self, executor) -> None:  # G8
        count = Counter()

        @task(id="seq_task1", timeout=1)
        def task1(ctx, input):
            count.incr()
            raise Exception("Task 1 failed")

        snapshot = sequential_tasks("seq", [task1]).enqueue().wait(timeout=10)
        assert snapshot.status == "finalize_failed"
        assert "Task 1 failed" in snapshot.error.message
        assert count.value == 1

    def test_sequence_of_sleeping_tasks(self, executor) -> None:  # G9
        seq_task = sleeping_task(id="seq_task", timeout=10)
        seq = sequential_tasks("seq", [seq_task, seq_task, seq_task])
        handle = seq.enqueue("unique_id_1")

        def sleeping(unique_id: str) -> bool:
            return TaskExecution.objects.filter(
                sleeping_task_unique_id=unique_id, status="running"
            ).exists()

        for unique_id, output in [
            ("unique_id_1", "unique_id_2"),
            ("unique_id_2", "unique_id_3"),
            ("unique_id_3", "final_output"),
        ]:
            wait_until(lambda uid=unique_id: sleeping(uid), 10)
            woken = wakeup_sleeping_task(seq_task, unique_id, status="completed", output=output)
            assert woken.status == "completed"
            assert woken.output == output
        snapshot = handle.wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == "final_output"

    def test_sleeping_step_with_an_invalid_unique_id_ends_the_sequence(self, executor) -> None:
        @task(id="number", timeout=1)
        def number(ctx, input):
            return 123  # not a unique id string

        seq_task = sleeping_task(id="seq_task", timeout=10)
        seq = sequential_tasks("seq", [number, seq_task])
        snapshot = seq.enqueue().wait(timeout=3)
        # spawning the step failed (like a child with invalid input): the sequence fails
        assert snapshot.status == "failed"
        assert (
            "Input must be a unique id string for sleeping task [taskId=seq_task]"
            in snapshot.error.message
        )
        assert snapshot.error.is_retryable is False
        assert row_count(task_id="seq_task") == 0

    def test_step_validator_failing_at_run_time(self, executor) -> None:
        count = Counter()

        @task(id="words", timeout=1)
        def words(ctx, input):
            return "not a number"

        @task(id="number", timeout=1, validate_input=int)
        def number(ctx, input):
            count.incr()
            return input

        seq = sequential_tasks("seq", [words, number])
        snapshot = seq.enqueue().wait(timeout=10)
        assert snapshot.status == "finalize_failed"
        assert snapshot.error.message.startswith(
            "Sequential task failed [parentTaskId=seq] [index=1]: Invalid input to task number:"
        )
        assert count.value == 0
        step = get_handle(number, snapshot.children[1].execution_id).get_execution()
        assert step.status == "failed"
        assert step.error.is_retryable is False

    def test_sequence_input_is_validated_at_enqueue(self, executor) -> None:
        @task(id="a", timeout=1)
        def a(ctx, input):
            return input

        def positive(value):
            if value <= 0:
                raise ValueError("must be positive")
            return value

        seq = sequential_tasks("seq", [a], validate_input=positive)
        with pytest.raises(
            DurableExecutionError, match=r"^Invalid input to task seq: must be positive"
        ):
            seq.enqueue(-1)
        assert row_count() == 0
        assert seq.enqueue(3).wait(timeout=10).output == 3

    def test_steps_see_the_sequence_as_root_and_parent(self, executor) -> None:
        seen: list[tuple] = []

        @task(id="step", timeout=1)
        def step(ctx, input):
            seen.append((ctx.root, ctx.parent))
            return input + 1

        seq = sequential_tasks("seq", [step, step, step])
        handle = seq.enqueue(0)
        snapshot = handle.wait(timeout=10)
        assert snapshot.output == 3
        assert len(seen) == 3
        for index, (root, parent) in enumerate(seen):
            assert (root.task_id, root.execution_id) == ("seq", handle.execution_id)
            assert (parent.task_id, parent.execution_id) == ("seq", handle.execution_id)
            assert parent.index_in_parent_children == index
            assert parent.is_finalize_of_parent is False


# -- H: looping tasks ----------------------------------------------------------------------


def _iteration(done_on_call: int | None, count: Counter, output="iteration_output", **options):
    @task(id="iteration", timeout=1, **options)
    def iteration(ctx, input):
        call = count.incr()
        if done_on_call is not None and call >= done_on_call:
            return {"is_done": True, "output": output}
        return {"is_done": False}

    return iteration


class TestLoopingTasks:
    def test_loop_until_done(self, executor) -> None:  # H1
        count = Counter()
        looping = looping_task("looping", _iteration(3, count), 10)
        snapshot = looping.enqueue().wait(timeout=10)
        assert snapshot.status == "completed", snapshot.error
        assert snapshot.task_id == "looping"
        assert snapshot.output == {"is_success": True, "output": "iteration_output"}
        assert count.value == 3
        assert_finished(snapshot, "looping")

    def test_loop_with_an_input_schema(self, executor) -> None:  # H2
        import pydantic

        class Name(pydantic.BaseModel):
            name: str

        count = Counter()

        @task(id="iteration", timeout=1, input_schema=Name)
        def iteration(ctx, input):
            if count.incr() >= 3:
                return {"is_done": True, "output": input.name}
            return {"is_done": False}

        looping = looping_task("looping", iteration, 10)
        snapshot = looping.enqueue({"name": "iteration_output"}).wait(timeout=10)
        assert snapshot.output == {"is_success": True, "output": "iteration_output"}
        assert count.value == 3

    def test_numeric_sleep_between(self, executor) -> None:  # H3
        count = Counter()
        starts: list[float] = []

        @task(id="iteration", timeout=1)
        def iteration(ctx, input):
            starts.append(time.monotonic())
            if count.incr() >= 2:
                return {"is_done": True, "output": "done"}
            return {"is_done": False}

        looping = looping_task("looping", iteration, 10, 0.1)
        snapshot = looping.enqueue().wait(timeout=10)
        assert snapshot.output == {"is_success": True, "output": "done"}
        assert count.value == 2
        assert starts[1] - starts[0] >= 0.1 - 0.01

    def test_function_sleep_between(self, executor) -> None:  # H4
        count = Counter()
        attempts: list[int] = []

        def sleep_between(attempt):
            attempts.append(attempt)
            return attempt * 0.001

        looping = looping_task("looping", _iteration(2, count), 10, sleep_between)
        snapshot = looping.enqueue().wait(timeout=10)
        assert snapshot.output == {"is_success": True, "output": "iteration_output"}
        assert count.value == 2
        assert attempts[:2] == [0, 1]

    def test_iteration_failure(self, executor) -> None:  # H5
        count = Counter()

        @task(id="iteration", timeout=1)
        def iteration(ctx, input):
            if count.incr() == 2:
                raise Exception("unknown error")
            return {"is_done": False}

        looping = looping_task("looping", iteration, 10)
        snapshot = looping.enqueue().wait(timeout=10)
        assert snapshot.status == "finalize_failed"
        assert snapshot.task_id == "looping"
        assert snapshot.error.message == "Iteration task failed [taskId=iteration]: unknown error"
        assert snapshot.error.is_retryable is False
        assert count.value == 2

    def test_max_attempts_exhausted(self, executor) -> None:  # H6
        count = Counter()
        looping = looping_task("looping", _iteration(None, count), 2)
        snapshot = looping.enqueue().wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == {"is_success": False}
        assert count.value == 2

    def test_loop_done_at_once(self, executor) -> None:  # H8
        count = Counter()
        looping = looping_task("looping", _iteration(1, count, output={"n": 1}), 50)
        snapshot = looping.enqueue().wait(timeout=10)
        assert snapshot.output == {"is_success": True, "output": {"n": 1}}
        assert count.value == 1

    def test_iterations_run_one_after_another_with_the_loop_input(self, executor) -> None:
        inputs: list = []
        running = Counter()
        overlaps = Counter()

        @task(id="iteration", timeout=1)
        def iteration(ctx, input):
            if running.incr() > 1:
                overlaps.incr()
            inputs.append(input)
            time.sleep(0.01)
            with running._lock:
                running.value -= 1
            if len(inputs) >= 4:
                return {"is_done": True, "output": len(inputs)}
            return {"is_done": False}

        looping = looping_task("looping", iteration, 10)
        handle = looping.enqueue({"k": "v"})
        wait_for_status(handle, "completed", timeout=10)
        assert handle.get_execution().output == {"is_success": True, "output": 4}
        assert inputs == [{"k": "v"}] * 4
        assert overlaps.value == 0
