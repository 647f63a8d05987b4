"""Parent tasks through a real executor: children, finalize functions and tasks, nesting,
sleeping children, closing (seed-tests sections K and J)."""

from __future__ import annotations

import threading
import time

import pytest
from rest_framework import serializers

from django_durable import (
    DurableExecutionError,
    ParentResult,
    child,
    get_handle,
    parent_task,
    sleeping_task,
    task,
    wakeup_sleeping_task,
)
from django_durable.models import TaskExecution
from django_durable.results import ExecutionRef
from django_durable.testing import wait_until
from tests.executor.connection_tracking import _close_leaked_connections  # noqa: F401

WAIT = 20


class Count:
    """A thread-safe counter of runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def inc(self) -> None:
        with self._lock:
            self.value += 1


def concat(result) -> str:
    """The seed's ``concat`` finalize: ``output + '_' + '_'.join(child outputs)``."""
    return (
        result.output
        + "_"
        + "_".join(c.output if c.status == "completed" else "" for c in result.children)
    )


def assert_finished(snapshot, task_id: str) -> None:
    """The seed's standard finished assertions (SFA)."""
    assert snapshot.task_id == task_id
    assert snapshot.execution_id.startswith("te_")
    assert snapshot.started_at is not None
    assert snapshot.finished_at is not None
    assert snapshot.finished_at >= snapshot.started_at


def row(execution_id: str) -> TaskExecution:
    return TaskExecution.objects.get(execution_id=execution_id)


@pytest.fixture
def count() -> Count:
    return Count()


@pytest.fixture
def children(count):
    """The common ``child1`` / ``child2`` of section K."""

    @task(id="child1", timeout=1)
    def child1(ctx, input):
        time.sleep(0.001)
        count.inc()
        return "child1_output"

    @task(id="child2", timeout=1)
    def child2(ctx, input):
        time.sleep(0.001)
        count.inc()
        return "child2_output"

    return child1, child2


def make_parent(count, children, **options):
    child1, child2 = children

    @parent_task(id="test", timeout=1, **options)
    def parent(ctx, input):
        time.sleep(0.001)
        count.inc()
        return ParentResult(output="test_output", children=[child(child1), child(child2)])

    return parent


# -- K: parent tasks -------------------------------------------------------------------------


def test_k1_parallel_children_without_finalize(executor, count, children):
    parent = make_parent(count, children)

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert count.value == 3
    output = snapshot.output
    assert output["output"] == "test_output"
    assert [
        {key: record[key] for key in ("task_id", "status", "output")}
        for record in output["children"]
    ] == [
        {"task_id": "child1", "status": "completed", "output": "child1_output"},
        {"task_id": "child2", "status": "completed", "output": "child2_output"},
    ]
    for record in output["children"]:
        assert record["execution_id"].startswith("te_")
        assert "error" not in record
    assert [c.execution_id for c in snapshot.children] == [
        r["execution_id"] for r in output["children"]
    ]
    assert snapshot.waiting_for_children_started_at is not None
    assert snapshot.waiting_for_finalize_started_at is None
    assert_finished(snapshot, "test")


def test_k2_parent_without_children(executor, count):
    @parent_task(id="test", timeout=1)
    def parent(ctx, input):
        count.inc()
        return ParentResult(output="test_output", children=[])

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == {"output": "test_output", "children": []}
    assert count.value == 1
    assert snapshot.waiting_for_children_started_at is None
    assert snapshot.waiting_for_finalize_started_at is None
    assert_finished(snapshot, "test")


def test_k3_finalize_function(executor, count, children):
    def finalize(result):
        count.inc()
        return concat(result)

    parent = make_parent(count, children, finalize=finalize)

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == "test_output_child1_output_child2_output"
    assert count.value == 4
    assert snapshot.waiting_for_children_started_at is not None
    assert snapshot.waiting_for_finalize_started_at is not None
    assert_finished(snapshot, "test")


def test_k3_finalize_function_may_take_the_context(executor, count, children):
    seen = {}

    def finalize(ctx, result):
        seen["task_id"] = ctx.task_id
        seen["execution_id"] = ctx.execution_id
        return concat(result)

    parent = make_parent(count, children, finalize=finalize)

    handle = parent.enqueue()
    snapshot = handle.wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == "test_output_child1_output_child2_output"
    assert seen == {"task_id": "test", "execution_id": handle.execution_id}


def test_k4_finalize_task(executor, count, children):
    @task(id="finalizeTask", timeout=1)
    def finalize(ctx, input):
        count.inc()
        return concat(input)

    parent = make_parent(count, children, finalize=finalize)

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == "test_output_child1_output_child2_output"
    assert count.value == 4
    assert snapshot.waiting_for_children_started_at is not None
    assert snapshot.waiting_for_finalize_started_at is not None
    assert snapshot.finalize is not None
    assert snapshot.finalize.task_id == "finalizeTask"
    finalize_snapshot = get_handle(finalize, snapshot.finalize.execution_id).get_execution()
    assert finalize_snapshot.status == "completed"
    assert finalize_snapshot.parent.execution_id == snapshot.execution_id
    assert finalize_snapshot.parent.is_finalize_of_parent is True
    assert_finished(snapshot, "test")


def test_k4_finalize_task_receives_the_children_records_as_input(executor, count, children):
    received = {}

    @task(id="finalizeTask", timeout=1)
    def finalize(ctx, input):
        received["output"] = input.output
        received["children"] = [(c.task_id, c.status, c.output) for c in input.children]
        received["dict_access"] = input["children"][0]["output"]
        return "done"

    parent = make_parent(count, children, finalize=finalize)

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert received == {
        "output": "test_output",
        "children": [
            ("child1", "completed", "child1_output"),
            ("child2", "completed", "child2_output"),
        ],
        "dict_access": "child1_output",
    }


def test_k5_finalize_function_without_children(executor, count):
    def finalize(result):
        count.inc()
        return concat(result)

    @parent_task(id="test", timeout=1, finalize=finalize)
    def parent(ctx, input):
        count.inc()
        return ParentResult(output="test_output")

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == "test_output_"
    assert count.value == 2
    assert snapshot.waiting_for_children_started_at is None
    assert snapshot.waiting_for_finalize_started_at is not None


def test_k6_finalize_task_without_children(executor, count):
    @task(id="finalizeTask", timeout=1)
    def finalize(ctx, input):
        count.inc()
        return concat(input)

    @parent_task(id="test", timeout=1, finalize=finalize)
    def parent(ctx, input):
        count.inc()
        return ParentResult(output="test_output")

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == "test_output_"
    assert count.value == 2
    assert snapshot.waiting_for_children_started_at is not None
    assert snapshot.waiting_for_finalize_started_at is not None


class NameSerializer(serializers.Serializer):
    name = serializers.CharField()


class NameVersionSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()


def test_k7_parent_with_input_schema(executor, count, children):
    child1, child2 = children

    @parent_task(id="test", timeout=1, input_schema=NameSerializer)
    def parent(ctx, input):
        count.inc()
        return ParentResult(output=input["name"], children=[child(child1), child(child2)])

    snapshot = parent.enqueue({"name": "test_output"}).wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert count.value == 3
    assert snapshot.output["output"] == "test_output"
    assert [r["output"] for r in snapshot.output["children"]] == [
        "child1_output",
        "child2_output",
    ]


def test_k8_parent_with_invalid_input_fails_at_enqueue(executor, count, children):
    child1, _ = children

    @parent_task(id="test", timeout=1, input_schema=NameVersionSerializer)
    def parent(ctx, input):
        count.inc()
        return ParentResult(output=input["name"], children=[child(child1)])

    with pytest.raises(DurableExecutionError, match="Invalid input to task test") as info:
        parent.enqueue({"name": 0})

    assert info.value.is_retryable is False
    assert info.value.to_dict()["error_type"] == "generic"
    assert not TaskExecution.objects.exists()
    assert count.value == 0


def test_k9_one_child_fails_and_finalize_decides(executor, count):
    @task(id="child1", timeout=1)
    def child1(ctx, input):
        count.inc()
        raise Exception("child1 error")

    @task(id="child2", timeout=1)
    def child2(ctx, input):
        count.inc()
        return "child2_output"

    seen = {}

    def finalize(result):
        count.inc()
        seen["statuses"] = [c.status for c in result.children]
        seen["error"] = result.children[0].error
        if any(c.status == "failed" for c in result.children):
            raise DurableExecutionError.non_retryable("finalizeTask error")
        return "unreachable"

    @parent_task(id="test", timeout=1, finalize=finalize)
    def parent(ctx, input):
        count.inc()
        return ParentResult(output="test_output", children=[child(child1), child(child2)])

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "finalize_failed"
    assert "finalizeTask error" in snapshot.error.message
    assert snapshot.error.error_type == "generic"
    assert snapshot.error.is_retryable is False
    assert count.value == 4
    assert seen["statuses"] == ["failed", "completed"]
    assert seen["error"].message == "child1 error"
    assert seen["error"]["is_retryable"] is True


def test_k10_both_children_fail(executor, count):
    @task(id="child1", timeout=1)
    def child1(ctx, input):
        count.inc()
        raise Exception("child1 error")

    @task(id="child2", timeout=1)
    def child2(ctx, input):
        count.inc()
        raise Exception("child2 error")

    def finalize(result):
        count.inc()
        if any(c.status == "failed" for c in result.children):
            raise DurableExecutionError.non_retryable("finalizeTask error")
        return "unreachable"

    @parent_task(id="test", timeout=1, finalize=finalize)
    def parent(ctx, input):
        count.inc()
        return ParentResult(output="test_output", children=[child(child1), child(child2)])

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "finalize_failed"
    assert "finalizeTask error" in snapshot.error.message
    assert snapshot.error.error_type == "generic"
    assert snapshot.error.is_retryable is False
    assert count.value == 4


def test_k11_too_many_children(executor, count, children):
    child1, _ = children

    def finalize(result):
        count.inc()
        return "unreachable"

    @parent_task(id="test", timeout=5, finalize=finalize)
    def parent(ctx, input):
        count.inc()
        return ParentResult(output="test_output", children=[child(child1)] * 1001)

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "failed"
    assert "tried to spawn more than max children tasks" in snapshot.error.message
    assert snapshot.error.error_type == "generic"
    assert snapshot.error.is_retryable is False
    assert count.value == 1
    assert TaskExecution.objects.count() == 1  # no child was stored


def test_k12_finalize_function_raises_without_children(executor, count):
    def finalize(result):
        count.inc()
        raise Exception("finalizeTask error")

    @parent_task(id="test", timeout=1, finalize=finalize)
    def parent(ctx, input):
        count.inc()
        return ParentResult(output="test_output")

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "finalize_failed"
    assert "finalizeTask error" in snapshot.error.message
    assert snapshot.error.is_retryable is False
    assert count.value == 2


def test_k13_finalize_task_raises_without_children(executor, count):
    @task(id="finalizeTask", timeout=1)
    def finalize(ctx, input):
        count.inc()
        raise Exception("finalizeTask error")

    @parent_task(id="test", timeout=1, finalize=finalize)
    def parent(ctx, input):
        count.inc()
        return ParentResult(output="test_output")

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "finalize_failed"
    assert "finalizeTask error" in snapshot.error.message
    assert snapshot.error.error_type == "generic"
    assert snapshot.error.is_retryable is True  # the finalize execution's error, verbatim
    assert count.value == 2


def test_k14_finalize_function_raises_after_children(executor, count, children):
    def finalize(result):
        count.inc()
        raise Exception("finalizeTask error")

    parent = make_parent(count, children, finalize=finalize)

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "finalize_failed"
    assert "finalizeTask error" in snapshot.error.message
    assert snapshot.error.is_retryable is False
    assert count.value == 4


def test_k15_finalize_task_raises_after_children(executor, count, children):
    @task(id="finalizeTask", timeout=1)
    def finalize(ctx, input):
        count.inc()
        raise Exception("finalizeTask error")

    parent = make_parent(count, children, finalize=finalize)

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "finalize_failed"
    assert "finalizeTask error" in snapshot.error.message
    assert snapshot.error.error_type == "generic"
    assert snapshot.error.is_retryable is True
    assert count.value == 4
    finalize_row = row(snapshot.finalize.execution_id)
    assert finalize_row.status == "failed"
    assert finalize_row.error == snapshot.error


def test_k16_finalize_is_itself_a_parent_task(executor, count, children):
    @task(id="finalizeTaskChild1", timeout=1)
    def finalize_child1(ctx, input):
        count.inc()
        return "finalizeTaskChild1_output"

    @task(id="finalizeTaskChild2", timeout=1)
    def finalize_child2(ctx, input):
        count.inc()
        return "finalizeTaskChild2_output"

    @task(id="finalizeTaskNested", timeout=1)
    def finalize_nested(ctx, input):
        count.inc()
        return concat(input)

    @parent_task(id="finalizeTask", timeout=1, finalize=finalize_nested)
    def finalize_parent(ctx, input):
        count.inc()
        return ParentResult(
            output=concat(input), children=[child(finalize_child1), child(finalize_child2)]
        )

    parent = make_parent(count, children, finalize=finalize_parent)

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == (
        "test_output_child1_output_child2_output"
        "_finalizeTaskChild1_output_finalizeTaskChild2_output"
    )
    assert count.value == 7


def test_k17_grandparent_parent_child_failure_chain(executor, count):
    @task(id="grandchild", timeout=1)
    def grandchild(ctx, input):
        count.inc()
        raise Exception("Grandchild failed")

    @task(id="child_parent_finalize", timeout=1)
    def child_parent_finalize(ctx, input):
        if any(c.status != "completed" for c in input.children):
            raise Exception("Grandchild failed")
        return "ok"

    @parent_task(id="child_parent", timeout=2, finalize=child_parent_finalize)
    def child_parent(ctx, input):
        return ParentResult(output="child_parent_output", children=[child(grandchild)])

    @task(id="grandparent_finalize", timeout=1)
    def grandparent_finalize(ctx, input):
        if any(c.status != "completed" for c in input.children):
            raise Exception("Child parent failed")
        return "ok"

    @parent_task(id="grandparent", timeout=5, finalize=grandparent_finalize)
    def grandparent(ctx, input):
        return ParentResult(output="grandparent_output", children=[child(child_parent)])

    snapshot = grandparent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "finalize_failed"
    assert "Child parent failed" in snapshot.error.message
    assert count.value == 1
    child_parent_row = TaskExecution.objects.get(task_id="child_parent")
    assert child_parent_row.status == "finalize_failed"
    assert child_parent_row.error["message"] == "Grandchild failed"


def test_k18_child_timeout_is_visible_to_finalize(executor, count):
    @task(id="child1", timeout=0.1)
    def slow(ctx, input):
        count.inc()
        ctx.abort_signal.wait(5)
        return "late"

    seen = {}

    @task(id="finalizeTask", timeout=1)
    def finalize(ctx, input):
        seen["errors"] = [c.error for c in input.children]
        if any(c.status == "timed_out" for c in input.children):
            raise Exception("Finalize task failed")
        return "unreachable"

    @parent_task(id="test", timeout=1, finalize=finalize)
    def parent(ctx, input):
        return ParentResult(output="test_output", children=[child(slow)])

    snapshot = parent.enqueue().wait(timeout=WAIT)

    assert snapshot.status == "finalize_failed"
    assert "Finalize task failed" in snapshot.error.message
    assert count.value == 1
    assert seen["errors"][0]["error_type"] == "timed_out"
    assert seen["errors"][0]["message"] == "Task execution timed out"


def test_k19_sleeping_child_woken_externally(executor):
    sleeping = sleeping_task(id="test", timeout=10)

    @task(id="finalizeTask", timeout=1)
    def finalize(ctx, input):
        record = input.children[0]
        if record.status != "completed":
            raise Exception("Finalize task failed")
        return record.output

    @parent_task(id="parent", timeout=1, finalize=finalize)
    def parent(ctx, input):
        return ParentResult(output="parent_output", children=[child(sleeping, "test_unique_id")])

    handle = parent.enqueue()
    wait_until(lambda: handle.get_execution().status == "waiting_for_children", WAIT)

    woken = wakeup_sleeping_task(
        sleeping, "test_unique_id", status="completed", output="test_output"
    )

    assert woken.status == "completed"
    assert woken.output == "test_output"
    assert woken.parent.execution_id == handle.execution_id
    snapshot = handle.wait(timeout=WAIT)
    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == "test_output"


def test_k20_sleeping_child_failed_externally(executor):
    sleeping = sleeping_task(id="test", timeout=10)

    @task(id="finalizeTask", timeout=1)
    def finalize(ctx, input):
        record = input.children[0]
        if record.status != "completed":
            raise Exception("Finalize task failed")
        return record.output

    @parent_task(id="parent", timeout=1, finalize=finalize)
    def parent(ctx, input):
        return ParentResult(output="parent_output", children=[child(sleeping, "test_unique_id")])

    handle = parent.enqueue()
    wait_until(lambda: handle.get_execution().status == "waiting_for_children", WAIT)

    woken = wakeup_sleeping_task(
        sleeping, "test_unique_id", status="failed", error=Exception("test_error")
    )

    assert woken.status == "failed"
    assert woken.error.message == "test_error"
    snapshot = handle.wait(timeout=WAIT)
    assert snapshot.status == "finalize_failed"
    assert snapshot.error.message == "Finalize task failed"


def test_root_is_the_top_most_ancestor_on_every_descendant(executor):
    """DESIGN: ``root`` is the top-level execution on children, grandchildren, finalize
    executions and the finalize of a nested parent alike; the top level has none."""
    roots: dict[str, ExecutionRef | None] = {}
    lock = threading.Lock()

    def record(ctx) -> None:
        with lock:
            roots[ctx.task_id] = ctx.root

    @task(id="grandchild", timeout=1)
    def grandchild(ctx, input):
        record(ctx)
        return "grandchild"

    @task(id="middle_finalize", timeout=1)
    def middle_finalize(ctx, input):
        record(ctx)
        return "middle"

    @parent_task(id="middle", timeout=1, finalize=middle_finalize)
    def middle(ctx, input):
        record(ctx)
        return ParentResult(output=None, children=[child(grandchild)])

    @task(id="top_finalize", timeout=1)
    def top_finalize(ctx, input):
        record(ctx)
        return "top"

    @parent_task(id="top", timeout=1, finalize=top_finalize)
    def top(ctx, input):
        record(ctx)
        return ParentResult(output=None, children=[child(middle)])

    handle = top.enqueue()
    snapshot = handle.wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    expected = ExecutionRef("top", handle.execution_id)
    assert roots == {
        "top": None,
        "middle": expected,
        "grandchild": expected,
        "middle_finalize": expected,
        "top_finalize": expected,
    }
    for execution in TaskExecution.objects.exclude(execution_id=handle.execution_id):
        assert execution.root_execution_id == handle.execution_id, execution.task_id


# -- J: closure --------------------------------------------------------------------------------


def test_j1_finished_task_gets_closed(executor):
    @task(id="test", timeout=1)
    def t(ctx, input):
        return "test"

    handle = t.enqueue()
    snapshot = handle.wait(timeout=WAIT)
    assert snapshot.status == "completed"

    def closed():
        execution = row(handle.execution_id)
        assert execution.status == "completed"
        return execution.close_status == "closed"

    wait_until(closed, WAIT)
    execution = row(handle.execution_id)
    assert execution.closed_at is not None
    assert execution.closed_at >= execution.finished_at


def test_j2_parent_closure_ordering(executor, count):
    @task(id="test", timeout=1)
    def t(ctx, input):
        count.inc()
        return "test"

    @parent_task(id="parent", timeout=1)
    def parent(ctx, input):
        return ParentResult(output="parent_output", children=[child(t)])

    handle = parent.enqueue()
    snapshot = handle.wait(timeout=WAIT)

    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output["output"] == "parent_output"
    assert count.value == 1
    execution = row(handle.execution_id)
    assert execution.on_children_finished_processing_status == "processed"
    assert execution.on_children_finished_processing_finished_at is not None
    wait_until(lambda: row(handle.execution_id).close_status == "closed", WAIT)
    execution = row(handle.execution_id)
    # Closed no earlier than processed (the fast path does both in one transaction, so the
    # two times may be equal; the seed, with separate loops, has closed_at strictly later).
    assert execution.closed_at >= execution.on_children_finished_processing_finished_at
    child_row = TaskExecution.objects.get(task_id="test")
    wait_until(lambda: row(child_row.execution_id).close_status == "closed", WAIT)
