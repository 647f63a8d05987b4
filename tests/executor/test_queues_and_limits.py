"""Queues, priorities and concurrency limits through real executors."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from django_durable import DurableExecutionError, ParentResult, child, parent_task, task
from django_durable.models import Status, TaskExecution

WAIT = 20


def test_a_high_priority_execution_enqueued_last_runs_first_with_one_slot(make_executor):
    order: list[str] = []

    @task(id="q.job", timeout=10)
    def job(ctx, input):
        order.append(input)
        return input

    handles = [job.enqueue(f"low-{i}") for i in range(5)]
    handles.append(job.enqueue("high", priority=10))
    make_executor(max_concurrent_executions=1)
    for handle in handles:
        handle.wait(timeout=WAIT)
    assert order == ["high", "low-0", "low-1", "low-2", "low-3", "low-4"]


@pytest.mark.django_db
def test_task_queue_and_priority_are_defaults_that_enqueue_overrides():
    @task(id="q.mail", queue="emails", priority=3)
    def mail(ctx, input):
        return input

    default = TaskExecution.objects.get(execution_id=mail.enqueue().execution_id)
    assert (default.queue, default.priority) == ("emails", 3)
    moved = TaskExecution.objects.get(
        execution_id=mail.enqueue(queue="bulk", priority=-1).execution_id
    )
    assert (moved.queue, moved.priority) == ("bulk", -1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("options", "message"),
    [({"queue": ""}, "queue must be"), ({"priority": 2**40}, "priority must be")],
)
def test_invalid_queue_or_priority_at_enqueue_stores_nothing(options, message):
    @task(id="q.bad")
    def bad(ctx, input):
        return input

    with pytest.raises(DurableExecutionError, match=message):
        bad.enqueue(**options)
    assert not TaskExecution.objects.exists()


def test_an_executor_for_other_queues_leaves_the_execution_ready(make_executor):
    @task(id="q.mail", queue="emails", timeout=10)
    def mail(ctx, input):
        return "sent"

    handle = mail.enqueue()
    other = make_executor(queues=["default", "reports"])
    # The other executor claims (and runs) work of its own queues meanwhile ...
    marker = task(id="q.marker", timeout=10)(lambda ctx, input: "done")
    assert marker.enqueue().wait(timeout=WAIT).output == "done"
    assert handle.get_execution().status == Status.READY
    other.shutdown()
    # ... and an executor for the queue runs it.
    make_executor(queues=["emails"])
    assert handle.wait(timeout=WAIT).output == "sent"


def test_children_and_finalize_inherit_the_parents_queue_unless_their_task_names_one(
    make_executor,
):
    plain = task(id="q.plain", timeout=10)(lambda ctx, input: input)
    pinned = task(id="q.pinned", queue="pinned", timeout=10)(lambda ctx, input: input)
    finalize = task(id="q.finalize", timeout=10)(lambda ctx, input: "final")

    @parent_task(id="q.parent", queue="bulk", timeout=10, finalize=finalize)
    def parent(ctx, input):
        return ParentResult(children=[child(plain, 1), child(pinned, 2)])

    handle = parent.enqueue()
    make_executor(queues=["bulk", "pinned"])
    assert handle.wait(timeout=WAIT).output == "final"
    queues = dict(
        TaskExecution.objects.filter(root_execution_id=handle.execution_id).values_list(
            "task_id", "queue"
        )
    )
    assert queues == {"q.plain": "bulk", "q.pinned": "pinned", "q.finalize": "bulk"}


class KeyTracker:
    """How many executions of each key run at once, at most."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.max_running: dict[str, int] = {}

    def enter(self, key: str) -> None:
        with self._lock:
            self.running[key] = self.running.get(key, 0) + 1
            self.max_running[key] = max(self.max_running.get(key, 0), self.running[key])

    def leave(self, key: str) -> None:
        with self._lock:
            self.running[key] -= 1


def test_executions_of_one_key_never_overlap_and_other_keys_still_run(make_executor):
    tracker = KeyTracker()
    others_done = threading.Event()

    @task(
        id="q.tenant_job",
        timeout=30,
        concurrency_key=lambda input: input["tenant"],
        max_concurrency=1,
    )
    def tenant_job(ctx, input):
        tracker.enter(input["tenant"])
        try:
            if input.get("hold"):
                # The first "a" holds its slot until the other tenants' work finished.
                assert others_done.wait(WAIT)
            time.sleep(0.05)
        finally:
            tracker.leave(input["tenant"])
        return input["n"]

    first = tenant_job.enqueue({"tenant": "a", "n": 0, "hold": True})
    same_key = [tenant_job.enqueue({"tenant": "a", "n": n}) for n in range(1, 4)]
    other_keys = [tenant_job.enqueue({"tenant": t, "n": 9}) for t in ("b", "c")]
    # Two executors with room for everything: only the limit keeps "a" to one at a time.
    make_executor(max_concurrent_executions=10)
    make_executor(max_concurrent_executions=10)
    for handle in other_keys:
        assert handle.wait(timeout=WAIT).status == Status.COMPLETED
    assert first.get_execution().status == Status.RUNNING
    assert all(h.get_execution().status == Status.READY for h in same_key)
    others_done.set()
    for handle in [first, *same_key]:
        assert handle.wait(timeout=WAIT).status == Status.COMPLETED
    assert tracker.max_running == {"a": 1, "b": 1, "c": 1}


def test_a_string_concurrency_key_limits_every_execution_of_the_task(make_executor):
    tracker = KeyTracker()

    @task(id="q.report", timeout=30, concurrency_key="reports", max_concurrency=2)
    def report(ctx, input: Any):
        tracker.enter("reports")
        time.sleep(0.05)
        tracker.leave("reports")
        return input

    handles = [report.enqueue(n) for n in range(6)]
    make_executor(max_concurrent_executions=10)
    assert [h.wait(timeout=WAIT).output for h in handles] == list(range(6))
    assert tracker.max_running == {"reports": 2}
    row = TaskExecution.objects.get(execution_id=handles[0].execution_id)
    assert (row.concurrency_key, row.max_concurrency) == ("reports", 2)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency_key": "k"}, "concurrency_key needs max_concurrency"),
        ({"max_concurrency": 2}, "max_concurrency needs a concurrency_key"),
        ({"concurrency_key": "k", "max_concurrency": 0}, "positive integer"),
        ({"concurrency_key": 5, "max_concurrency": 1}, "concurrency_key must be"),
    ],
)
def test_bad_concurrency_options_fail_at_definition(options, message):
    with pytest.raises(DurableExecutionError, match=message):
        task(id="q.bad_limits", **options)(lambda ctx, input: None)


def test_a_finalize_task_with_a_concurrency_key_gets_its_key(make_executor):
    finalize = task(id="q.fin", timeout=10, concurrency_key="fin", max_concurrency=1)(
        lambda ctx, input: "final"
    )

    @parent_task(id="q.fin_parent", timeout=10, finalize=finalize)
    def parent(ctx, input):
        return ParentResult(children=[])

    handle = parent.enqueue()
    make_executor()
    assert handle.wait(timeout=WAIT).output == "final"
    row = TaskExecution.objects.get(parent_execution_id=handle.execution_id)
    assert (row.task_id, row.concurrency_key, row.max_concurrency) == ("q.fin", "fin", 1)


def test_queues_given_as_a_string_is_a_clear_error():
    from django_durable import Executor

    with pytest.raises(TypeError, match="queues must be a list"):
        Executor(queues="emails")
