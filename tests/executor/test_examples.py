"""The documented examples (seed P1-P18, mirroring the README) and the example of DESIGN.md,
through a real executor. Input is ``{"name": "world"}`` unless stated."""

from __future__ import annotations

import asyncio
import threading

import pytest

from django_durable import (
    DurableExecutionError,
    ParentResult,
    RetryOptions,
    child,
    get_handle,
    looping_task,
    parent_task,
    sequential_tasks,
    sleeping_task,
    task,
    wakeup_sleeping_task,
)
from django_durable.testing import wait_until

from ..scenario_helpers import Counter, assert_finished, row_count, wait_for_status

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["django_durable"])
WORLD = {"name": "world"}


def hello(who: str, name: str = "world") -> str:
    return f"Hello from {who}, {name}!"


def run(t, input=WORLD, *, status="completed"):
    handle = t.enqueue(input)
    snapshot = handle.wait(timeout=15)
    assert snapshot.status == status, snapshot.error
    if status == "completed":
        assert_finished(snapshot, t.id)
    return snapshot


# -- P1-P6: simple tasks -----------------------------------------------------------------------


def test_sync(executor) -> None:  # P1
    @task(id="a", timeout=1)
    def a(ctx, input):
        return f"Hello, {input['name']}!"

    assert run(a).output == "Hello, world!"


def test_async(executor) -> None:  # P2
    @task(id="a", timeout=1)
    async def a(ctx, input):
        await asyncio.sleep(0.001)
        return f"Hello, {input['name']}!"

    assert run(a).output == "Hello, world!"


def test_validate_input(executor) -> None:  # P3
    def only_world(value):
        if value["name"] != "world":
            raise ValueError("Invalid name")
        return value

    @task(id="a", timeout=1, validate_input=only_world)
    def a(ctx, input):
        return f"Hello, {input['name']}!"

    assert run(a).output == "Hello, world!"
    with pytest.raises(DurableExecutionError, match=r"^Invalid input to task a: Invalid name$"):
        a.enqueue({"name": "mars"})


def test_input_schema(executor) -> None:  # P4
    from rest_framework import serializers

    class Input(serializers.Serializer):
        name = serializers.CharField()

    @task(id="a", timeout=1, input_schema=Input)
    def a(ctx, input):
        return f"Hello, {input['name']}!"

    assert run(a).output == "Hello, world!"


def test_retry(executor) -> None:  # P5 (= B7)
    @task(
        id="a",
        timeout=1,
        retry=RetryOptions(max_retries=5, base_delay=0.1, delay_multiplier=1.5, max_delay=1),
    )
    def a(ctx, input):
        if ctx.attempt < 2:
            raise Exception("Failed")
        return {"total_attempts": ctx.attempt + 1, "output": f"Hello, {input['name']}!"}

    assert run(a).output == {"total_attempts": 3, "output": "Hello, world!"}


def test_run_context(executor) -> None:  # P6
    @task(id="a", timeout=1)
    def a(ctx, input):
        return {
            "task_id": ctx.task_id,
            "execution_id": ctx.execution_id,
            "attempt": ctx.attempt,
            "prev_error": ctx.prev_error,
            "root": ctx.root,
            "parent": ctx.parent,
            "signals": [ctx.abort_signal.aborted, ctx.shutdown_signal.aborted],
        }

    handle = a.enqueue()
    snapshot = handle.wait(timeout=10)
    assert snapshot.output == {
        "task_id": "a",
        "execution_id": handle.execution_id,
        "attempt": 0,
        "prev_error": None,
        "root": None,
        "parent": None,
        "signals": [False, False],
    }


# -- P7-P10: parents and finalize --------------------------------------------------------------


def _children_a_b(fail_b: bool = False):
    @task(id="a", timeout=1)
    def a(ctx, input):
        return hello("task A", input["name"])

    @task(id="b", timeout=1)
    def b(ctx, input):
        if fail_b:
            raise Exception("Failed")
        return hello("task B", input["name"])

    return a, b


def test_parallel_children(executor) -> None:  # P7
    a, b = _children_a_b()

    @parent_task(id="parent", timeout=1)
    def parent(ctx, input):
        return ParentResult(
            output=hello("parent task", input["name"]),
            children=[child(a, input), child(b, input)],
        )

    snapshot = run(parent)
    output = snapshot.output
    assert output["output"] == "Hello from parent task, world!"
    assert [c["task_id"] for c in output["children"]] == ["a", "b"]
    for record, expected in zip(
        output["children"], ["Hello from task A, world!", "Hello from task B, world!"], strict=True
    ):
        assert record["status"] == "completed"
        assert record["output"] == expected
        assert record["execution_id"].startswith("te_")
        assert set(record) == {"task_id", "execution_id", "status", "output"}
    assert [c.execution_id for c in snapshot.children] == [
        r["execution_id"] for r in output["children"]
    ]
    assert snapshot.waiting_for_children_started_at is not None
    assert snapshot.waiting_for_finalize_started_at is None


def test_combined_output(executor) -> None:  # P8
    a, b = _children_a_b()

    @task(id="on_parent_run_and_children_complete", timeout=1)
    def combine(ctx, result):
        if any(c.status != "completed" for c in result.children):
            raise DurableExecutionError.non_retryable("Children failed")
        return {
            "parent_output": result.output,
            "task_a_output": result.children[0].output,
            "task_b_output": result.children[1].output,
        }

    @parent_task(id="parent", timeout=1, finalize=combine)
    def parent(ctx, input):
        return ParentResult(
            output=hello("parent task", input["name"]),
            children=[child(a, input), child(b, input)],
        )

    snapshot = run(parent)
    assert snapshot.output == {
        "parent_output": "Hello from parent task, world!",
        "task_a_output": "Hello from task A, world!",
        "task_b_output": "Hello from task B, world!",
    }
    assert snapshot.waiting_for_children_started_at is not None
    assert snapshot.waiting_for_finalize_started_at is not None
    assert snapshot.finalize is not None
    assert snapshot.finalize.task_id == "on_parent_run_and_children_complete"


def test_fail_if_any_child_fails(executor) -> None:  # P9
    a, b = _children_a_b(fail_b=True)

    @task(id="on_parent_run_and_children_complete", timeout=1)
    def combine(ctx, result):
        if any(c.status != "completed" for c in result.children):
            raise DurableExecutionError.non_retryable("Children failed")
        return "unreachable"

    @parent_task(id="parent", timeout=1, finalize=combine)
    def parent(ctx, input):
        return ParentResult(output="parent", children=[child(a, input), child(b)])

    snapshot = run(parent, status="finalize_failed")
    assert "Children failed" in snapshot.error.message
    assert snapshot.error.error_type == "generic"
    assert snapshot.error.is_retryable is False
    assert snapshot.output is None


def test_partial_success(executor) -> None:  # P10
    a, b = _children_a_b(fail_b=True)

    @task(id="resilient_finalize", timeout=1)
    def resilient_finalize(ctx, result):
        results = [
            {
                "index": index,
                "success": record.status == "completed",
                "result": record.output if record.status == "completed" else record.error.message,
            }
            for index, record in enumerate(result.children)
        ]
        return {
            "parent_output": result.output,
            "successful_count": sum(r["success"] for r in results),
            "total_count": len(results),
            "results": results,
        }

    @parent_task(id="parent", timeout=1, finalize=resilient_finalize)
    def parent(ctx, input):
        return ParentResult(
            output=hello("parent task", input["name"]),
            children=[child(a, input), child(b, input)],
        )

    assert run(parent).output == {
        "parent_output": "Hello from parent task, world!",
        "successful_count": 1,
        "total_count": 2,
        "results": [
            {"index": 0, "success": True, "result": "Hello from task A, world!"},
            {"index": 1, "success": False, "result": "Failed"},
        ],
    }


def test_async_parent_with_async_finalize_function(executor) -> None:
    a, b = _children_a_b()

    async def finalize(ctx, result):
        await asyncio.sleep(0.001)
        return [result.output, *(c.output for c in result.children)]

    @parent_task(id="parent", timeout=1, finalize=finalize)
    async def parent(ctx, input):
        await asyncio.sleep(0.001)
        return ParentResult(
            output=hello("parent task", input["name"]),
            children=[child(a, input), child(b, input)],
        )

    assert run(parent).output == [
        "Hello from parent task, world!",
        "Hello from task A, world!",
        "Hello from task B, world!",
    ]


def test_parent_without_finalize_lists_failed_children(executor) -> None:
    a, b = _children_a_b(fail_b=True)

    @parent_task(id="parent", timeout=1)
    def parent(ctx, input):
        return ParentResult(output="p", children=[child(a, input), child(b, input)])

    output = run(parent).output
    assert output["children"][0]["status"] == "completed"
    failed = output["children"][1]
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "error_type": "generic",
        "message": "Failed",
        "is_retryable": True,
        "is_internal": False,
    }
    assert "output" not in failed


# -- P11-P14: sequences and trees --------------------------------------------------------------


def test_sequential(executor) -> None:  # P11
    @task(id="a", timeout=1)
    def a(ctx, input):
        return {"name": input["name"], "task_a_output": hello("task A", input["name"])}

    @task(id="b", timeout=1)
    def b(ctx, input):
        return {**input, "task_b_output": hello("task B", input["name"])}

    @task(id="c", timeout=1)
    def c(ctx, input):
        return {
            "task_a_output": input["task_a_output"],
            "task_b_output": input["task_b_output"],
            "task_c_output": hello("task C", input["name"]),
        }

    snapshot = run(sequential_tasks("seq", [a, b, c]))
    assert snapshot.task_id == "seq"
    assert snapshot.output == {
        "task_a_output": "Hello from task A, world!",
        "task_b_output": "Hello from task B, world!",
        "task_c_output": "Hello from task C, world!",
    }


def test_sequential_by_nested_finalize_parents(executor) -> None:  # P12
    @task(id="b", timeout=1)
    def b(ctx, input):
        return hello("task B", input["name"])

    @task(id="c", timeout=1)
    def c(ctx, input):
        return hello("task C", input["name"])

    def task_b_finalize_combine(ctx, result):
        outputs = dict(result.output)
        outputs.pop("name")
        return {**outputs, "task_c_output": result.children[0].output}

    @parent_task(id="task_b_finalize", timeout=1, finalize=task_b_finalize_combine)
    def task_b_finalize(ctx, result):
        state = {**result.output, "task_b_output": result.children[0].output}
        return ParentResult(output=state, children=[child(c, {"name": state["name"]})])

    @parent_task(id="task_a_finalize", timeout=1, finalize=task_b_finalize)
    def task_a_finalize(ctx, result):
        state = result.output
        return ParentResult(output=state, children=[child(b, {"name": state["name"]})])

    @parent_task(id="a", timeout=1, finalize=task_a_finalize)
    def a(ctx, input):
        return ParentResult(
            output={"name": input["name"], "task_a_output": hello("task A", input["name"])}
        )

    snapshot = run(a)
    assert snapshot.task_id == "a"
    assert snapshot.output == {
        "task_a_output": "Hello from task A, world!",
        "task_b_output": "Hello from task B, world!",
        "task_c_output": "Hello from task C, world!",
    }


def _leaf(task_id: str, label: str, roots: list | None = None):
    @task(id=task_id, timeout=1)
    def leaf(ctx, input):
        if roots is not None:
            roots.append((task_id, ctx.root))
        return hello(label, input["name"])

    return leaf


def test_parents_with_children_in_sequence(executor) -> None:  # P13
    a1, a2 = _leaf("a1", "task A1"), _leaf("a2", "task A2")
    b1, b2 = _leaf("b1", "task B1"), _leaf("b2", "task B2")

    def finalize_a(result):
        return {
            **result.output,
            "task_a1_output": result.children[0].output,
            "task_a2_output": result.children[1].output,
        }

    @parent_task(id="a", timeout=1, finalize=finalize_a)
    def a(ctx, input):
        return ParentResult(
            output={"name": input["name"], "task_a_output": hello("task A", input["name"])},
            children=[child(a1, input), child(a2, input)],
        )

    def finalize_b(result):
        outputs = {
            **result.output,
            "task_b1_output": result.children[0].output,
            "task_b2_output": result.children[1].output,
        }
        outputs.pop("name")
        return outputs

    @parent_task(id="b", timeout=1, finalize=finalize_b)
    def b(ctx, input):
        name = {"name": input["name"]}
        return ParentResult(
            output={**input, "task_b_output": hello("task B", input["name"])},
            children=[child(b1, name), child(b2, name)],
        )

    snapshot = run(sequential_tasks("seq", [a, b]))
    assert snapshot.output == {
        "task_a_output": "Hello from task A, world!",
        "task_a1_output": "Hello from task A1, world!",
        "task_a2_output": "Hello from task A2, world!",
        "task_b_output": "Hello from task B, world!",
        "task_b1_output": "Hello from task B1, world!",
        "task_b2_output": "Hello from task B2, world!",
    }


def test_task_tree(executor) -> None:  # P14
    roots: list = []
    a1, a2, a3 = (_leaf(f"a{i}", f"task A{i}", roots) for i in (1, 2, 3))

    def finalize_a(ctx, result):
        roots.append(("a_finalize_fn", ctx.root))
        return {
            "task_a_output": result.output,
            **{f"task_a{i + 1}_output": c.output for i, c in enumerate(result.children)},
        }

    @parent_task(id="a", timeout=1, finalize=finalize_a)
    def a(ctx, input):
        roots.append(("a", ctx.root))
        return ParentResult(
            output=hello("task A", input["name"]),
            children=[child(a1, input), child(a2, input), child(a3, input)],
        )

    def _step(index: int):
        @task(id=f"b{index}", timeout=1)
        def step(ctx, input):
            roots.append((f"b{index}", ctx.root))
            return {**input, f"task_b{index}_output": hello(f"task B{index}", input["name"])}

        return step

    b = sequential_tasks("b", [_step(1), _step(2), _step(3)])

    @task(id="root_finalize", timeout=1)
    def root_finalize(ctx, result):
        roots.append(("root_finalize", ctx.root))
        if any(c.status != "completed" for c in result.children):
            raise DurableExecutionError.non_retryable("Children failed")
        b_output = dict(result.children[1].output)
        b_output.pop("name")
        return {"root_output": result.output, **result.children[0].output, **b_output}

    @parent_task(id="root", timeout=5, finalize=root_finalize)
    def root(ctx, input):
        return ParentResult(
            output=hello("root task", input["name"]), children=[child(a, input), child(b, input)]
        )

    handle = root.enqueue(WORLD)
    snapshot = handle.wait(timeout=15)
    assert snapshot.status == "completed", snapshot.error
    assert snapshot.task_id == "root"
    assert snapshot.output == {
        "root_output": "Hello from root task, world!",
        "task_a_output": "Hello from task A, world!",
        "task_a1_output": "Hello from task A1, world!",
        "task_a2_output": "Hello from task A2, world!",
        "task_a3_output": "Hello from task A3, world!",
        "task_b1_output": "Hello from task B1, world!",
        "task_b2_output": "Hello from task B2, world!",
        "task_b3_output": "Hello from task B3, world!",
    }
    assert snapshot.waiting_for_children_started_at is not None
    assert snapshot.waiting_for_finalize_started_at is not None
    # DESIGN: root is the top-most ancestor on every descendant (finalize and steps included)
    ran = {name for name, _ in roots}
    assert ran == {"a", "a1", "a2", "a3", "b1", "b2", "b3", "a_finalize_fn", "root_finalize"}
    wrong = [
        (name, root_ref)
        for name, root_ref in roots
        if root_ref is None or root_ref.execution_id != handle.execution_id
    ]
    assert wrong == []


def test_recursive_parent(executor) -> None:  # P15
    from rest_framework import serializers

    class Index(serializers.Serializer):
        index = serializers.IntegerField(min_value=0)

    @task(id="recursive_finalize", timeout=1)
    def recursive_finalize(ctx, result):
        if any(c.status != "completed" for c in result.children):
            raise DurableExecutionError.non_retryable("Children failed")
        return {"count": 1 + sum(c.output["count"] for c in result.children)}

    @parent_task(id="recursive", timeout=1, input_schema=Index, finalize=recursive_finalize)
    def recursive(ctx, input):
        index = input["index"]
        children = [child(recursive, {"index": index + 1})] if index < 9 else []
        return ParentResult(output=None, children=children)

    assert run(recursive, {"index": 0}).output == {"count": 10}
    assert row_count(task_id="recursive") == 10
    with pytest.raises(DurableExecutionError, match=r"^Invalid input to task recursive"):
        recursive.enqueue({"index": -1})


# -- P16-P18: loops and webhooks ---------------------------------------------------------------


def test_looping_with_an_external_condition(executor) -> None:  # P16
    state: dict = {"value": None}
    calls = Counter()

    @task(id="iteration", timeout=1, sleep_before_run=0.1)
    def iteration(ctx, input):
        calls.incr()
        if state["value"] is None:
            return {"is_done": False}
        return {"is_done": True, "output": state["value"]}

    looping = looping_task("looping", iteration, 20, 0.1)
    handle = looping.enqueue()
    wait_until(lambda: calls.value >= 2, 10)
    state["value"] = 10
    snapshot = handle.wait(timeout=10)
    assert snapshot.status == "completed"
    assert snapshot.output == {"is_success": True, "output": 10}
    assert 3 <= calls.value < 20


def test_looping_by_self_spawning_parent(executor) -> None:  # P17
    import pydantic

    class PrevCount(pydantic.BaseModel):
        prev_count: int

    state: dict = {"value": None}
    calls = Counter()

    @task(id="looping_finalize", timeout=1)
    def looping_finalize(ctx, result):
        if not result.children:
            return result.output
        record = result.children[0]
        if record.status != "completed":
            raise DurableExecutionError.non_retryable("Looping child failed")
        return record.output

    @parent_task(
        id="looping",
        timeout=1,
        sleep_before_run=0.1,
        input_schema=PrevCount,
        finalize=looping_finalize,
    )
    def looping(ctx, input):
        calls.incr()
        count = input.prev_count + 1
        if state["value"] is None and count < 20:
            return ParentResult(output=None, children=[child(looping, {"prev_count": count})])
        return ParentResult(output={"count": count, "value": state["value"]})

    handle = looping.enqueue({"prev_count": 0})
    wait_until(lambda: calls.value >= 2, 10)
    state["value"] = 10
    snapshot = handle.wait(timeout=10)
    assert snapshot.status == "completed", snapshot.error
    assert 2 <= snapshot.output["count"] < 20
    assert snapshot.output["value"] == 10


def test_webhook(executor) -> None:  # P18
    wait_for_webhook = sleeping_task(id="wait_for_webhook", timeout=3600)

    @task(id="webhook_finalize", timeout=1)
    def webhook_finalize(ctx, result):
        record = result.children[0]
        if record.status != "completed":
            raise Exception(f"Webhook task failed: {record.error.message}")
        return record.output

    @parent_task(id="parent", timeout=1, finalize=webhook_finalize)
    def parent(ctx, input):
        return ParentResult(output=None, children=[child(wait_for_webhook, "entity_id")])

    handle = parent.enqueue()
    waiting = wait_for_status(handle, "waiting_for_children")
    webhook_handle = get_handle(wait_for_webhook, waiting.children[0].execution_id)
    assert webhook_handle.get_execution().status == "running"
    woken = wakeup_sleeping_task(
        wait_for_webhook, "entity_id", status="completed", output="webhook_output"
    )
    assert woken.status == "completed"
    assert woken.output == "webhook_output"
    assert woken.parent.execution_id == handle.execution_id
    snapshot = handle.wait(timeout=10)
    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == "webhook_output"


def test_webhook_failed(executor) -> None:  # P18, failure branch (K20)
    wait_for_webhook = sleeping_task(id="wait_for_webhook", timeout=3600)

    @task(id="webhook_finalize", timeout=1)
    def webhook_finalize(ctx, result):
        record = result.children[0]
        if record.status != "completed":
            raise Exception(f"Webhook task failed: {record.error.message}")
        return record.output

    @parent_task(id="parent", timeout=1, finalize=webhook_finalize)
    def parent(ctx, input):
        return ParentResult(output=None, children=[child(wait_for_webhook, "entity_id")])

    handle = parent.enqueue()
    wait_for_status(handle, "waiting_for_children")
    woken = wakeup_sleeping_task(wait_for_webhook, "entity_id", status="failed", error="test_error")
    assert woken.status == "failed"
    snapshot = handle.wait(timeout=10)
    assert snapshot.status == "finalize_failed"
    assert snapshot.error.message == "Webhook task failed: test_error"
    assert snapshot.error.is_retryable is True  # a finalize task's error is copied verbatim


# -- DESIGN.md ---------------------------------------------------------------------------------


def test_design_upload_file_example(executor) -> None:
    calls = Counter()

    @task(
        id="extract_title",
        timeout=30,
        retry=RetryOptions(max_retries=5, base_delay=0.1, delay_multiplier=1.5, max_delay=1.0),
    )
    def extract_title(ctx, input):
        calls.incr()
        return {"title": "File Title"}

    def combine(ctx, result):
        return {"title": result.children[0].output["title"], **result.output}

    @parent_task(id="upload_file", timeout=60, finalize=combine)
    def upload_file(ctx, input):
        return ParentResult(
            output={"path": input["path"]},
            children=[child(extract_title, {"path": input["path"]})],
        )

    handle = upload_file.enqueue({"path": "a.txt"})
    assert handle.execution_id.startswith("te_")
    snapshot = handle.wait(timeout=10)
    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == {"title": "File Title", "path": "a.txt"}
    assert calls.value == 1
    assert len(snapshot.children) == 1
    extract = get_handle(extract_title, snapshot.children[0].execution_id).get_execution()
    assert extract.parent.execution_id == handle.execution_id
    assert extract.root.execution_id == handle.execution_id


def test_design_sleeping_task_example(executor) -> None:
    wait_for_payment = sleeping_task(id="wait_for_payment", timeout=3600)
    handle = wait_for_payment.enqueue("order-42")
    woken = wakeup_sleeping_task(
        wait_for_payment, "order-42", status="completed", output={"paid": True}
    )
    assert woken.output == {"paid": True}
    assert handle.wait(timeout=5).output == {"paid": True}


def test_many_children_finish_in_parallel(executor) -> None:
    release = threading.Event()
    running = Counter()

    @task(id="worker", timeout=5)
    def worker(ctx, input):
        if running.incr() == 5:
            release.set()
        release.wait(5)
        return input * input

    @parent_task(id="fan_out", timeout=5)
    def fan_out(ctx, input):
        return ParentResult(output="fan", children=[child(worker, i) for i in range(5)])

    snapshot = run(fan_out, None)
    assert release.is_set(), "the children did not run in parallel"
    assert [c["output"] for c in snapshot.output["children"]] == [0, 1, 4, 9, 16]


def test_recursion_fifty_deep(executor) -> None:
    """A parent that spawns itself 50 levels deep completes, each level summing the next."""

    @task(id="deep_finalize", timeout=5)
    def deep_finalize(ctx, result):
        return 1 + sum(c.output for c in result.children if c.status == "completed")

    @parent_task(id="deep", timeout=5, finalize=deep_finalize)
    def deep(ctx, input):
        children = [child(deep, input + 1)] if input < 49 else []
        return ParentResult(output=None, children=children)

    snapshot = deep.enqueue(0).wait(timeout=60)
    assert snapshot.status == "completed", snapshot.error
    assert snapshot.output == 50
    assert row_count(task_id="deep") == 50
