"""The Celery runner end to end: real ``celery worker`` processes, a real Redis, PostgreSQL.

The pytest process enqueues (publishing to Redis on commit, ``DISPATCH = "celery"``) and waits
for the rows; the workers claim and run them with the engine. Runs are counted with
``RunRecord`` rows (one per run, written by the task code in the worker).
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import pytest
import redis
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_durable import wakeup_sleeping_task
from django_durable.contrib.celery.dispatch import publish_many
from django_durable.models import Status, TaskExecution
from tests.commands.workers import wait_for
from tests.testapp.models import RunRecord
from tests.testapp.tasks import record, sleep

from .conftest import CeleryWorkers
from .workflows import (
    await_approval,
    chain,
    fan_out,
    flaky,
    hang_first_run,
    too_slow,
    wait_for_cancel,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="Celery workers run on PostgreSQL only here"
    ),
]


def _wait_finished(handle, workers: CeleryWorkers, timeout: float = 30.0) -> TaskExecution:
    def finished() -> TaskExecution | None:
        row = handle.get_execution()
        return row if row.is_finished else None

    return wait_for(
        finished,
        timeout,
        lambda: (
            f"{handle.execution_id} not finished: {handle.get_execution().status}\n"
            + workers.tails()
        ),
    )


def test_example_workflows_complete_through_celery_workers(celery_workers: CeleryWorkers) -> None:
    """Parent + children + finalize task, a sequence, a sleeping child woken up, retries with a
    countdown, a timeout, a cancellation and a delayed start: the same outcomes as with
    ``durable_worker``."""
    worker = celery_workers.start("a", beat=True)
    delayed = record.enqueue("delayed", sleep_before_run=1.5)
    # A copy that comes early: the worker finds the row not due and publishes it again.
    publish_many([(delayed.execution_id, timezone.now())])
    parent = fan_out.enqueue([1, 2, 3])
    sequence = chain.enqueue(1)
    waiting = await_approval.enqueue("approval-1")
    retried = flaky.enqueue(None)
    slow = too_slow.enqueue(None)
    cancelled = wait_for_cancel.enqueue(None)

    assert _wait_finished(parent, celery_workers).status == Status.COMPLETED
    assert parent.wait(timeout=1).output == {"sum": 12}
    assert sequence.wait(timeout=30).output == 4

    # The sleeping child runs nothing: it waits, running, for its wake-up.
    wait_for(
        lambda: TaskExecution.objects.filter(
            sleeping_task_unique_id="approval-1", status=Status.RUNNING
        ).exists(),
        30,
        lambda: "the sleeping child was never spawned\n" + celery_workers.tails(),
    )
    wakeup_sleeping_task("celery_tests.approval", "approval-1", output="ok")
    finished = waiting.wait(timeout=30).output
    assert finished["output"] == "asked"
    assert [child["output"] for child in finished["children"]] == ["ok"]

    assert retried.wait(timeout=30).output == "attempt 2"
    assert [run.attempt for run in RunRecord.objects.filter(execution_id=retried.execution_id)] == [
        0,
        1,
        2,
    ]

    assert _wait_finished(slow, celery_workers).status == Status.TIMED_OUT

    wait_for(
        lambda: RunRecord.objects.filter(execution_id=cancelled.execution_id).exists(),
        30,
        lambda: "the cancellable task never ran\n" + celery_workers.tails(),
    )
    cancelled.cancel()
    # The worker running it learns of the cancellation and interrupts the attempt.
    wait_for(
        lambda: (
            not TaskExecution.objects.get(
                execution_id=cancelled.execution_id
            ).needs_promise_cancellation
        ),
        30,
        lambda: "the worker never took the cancellation\n" + celery_workers.tails(),
    )
    assert cancelled.get_execution().status == Status.CANCELLED

    assert delayed.wait(timeout=30).output == "delayed"
    (run,) = RunRecord.objects.filter(execution_id=delayed.execution_id)
    assert run.started_at >= delayed.get_execution().start_at
    assert "'deferred'" in worker.output()


def test_sigkill_mid_task_completes_after_expiry(celery_workers: CeleryWorkers) -> None:
    """A worker killed with SIGKILL in the middle of a task: the expiry sweeper (beat) makes the
    row ready again, it is published again, and another worker runs it."""
    worker_a = celery_workers.start("a")
    stuck = hang_first_run.enqueue(None)
    wait_for(
        lambda: RunRecord.objects.filter(execution_id=stuck.execution_id).exists(),
        30,
        lambda: "worker A never ran it\n" + celery_workers.tails(),
    )
    assert stuck.get_execution().status == Status.RUNNING
    celery_workers.kill(worker_a)
    assert worker_a.returncode == -signal.SIGKILL

    worker_b = celery_workers.start("b", beat=True)
    assert _wait_finished(stuck, celery_workers).status == Status.COMPLETED
    assert stuck.wait(timeout=1).output == "recovered"
    assert stuck.get_execution().retry_attempts == 0  # expiry recovery is not a retry
    runs = list(RunRecord.objects.filter(execution_id=stuck.execution_id))
    assert [run.pid for run in runs] == [worker_a.pid, worker_b.pid]


def test_two_workers_never_run_one_execution_twice(
    celery_workers: CeleryWorkers, settings: Any, redis_url: str
) -> None:
    """500 executions, each published twice in a row to two workers of 8 threads, so
    that copies of one message are taken at the same moment: each runs exactly once (the claim
    is the guard), and every other copy is dropped."""
    celery_workers.start("a", concurrency=8)
    celery_workers.start("b", concurrency=8)
    with override_settings(DURABLE={**settings.DURABLE, "DISPATCH": "worker"}):
        handles = record.enqueue_many(list(range(500)))  # published below, not on commit
    ids = [handle.execution_id for handle in handles]
    now = timezone.now()
    assert publish_many((execution_id, now) for execution_id in ids for _ in range(2)) == 1000

    broker = redis.Redis.from_url(redis_url)

    def all_done() -> bool:
        completed = TaskExecution.objects.filter(execution_id__in=ids, status=Status.COMPLETED)
        # Every copy handled: nothing left in the queue, nothing received and unacknowledged.
        return (
            completed.count() == len(ids)
            and broker.llen("celery") == 0
            and broker.hlen("unacked") == 0
        )

    def not_done() -> str:
        statuses = TaskExecution.objects.filter(execution_id__in=ids).values_list("status")
        return (
            f"not all done: {Counter(statuses)}, queued {broker.llen('celery')}, "
            f"unacked {broker.hlen('unacked')}\n{celery_workers.tails()}"
        )

    wait_for(all_done, 90, not_done, interval=0.2)
    runs = Counter(
        RunRecord.objects.filter(execution_id__in=ids).values_list("execution_id", flat=True)
    )
    assert set(runs) == set(ids)
    assert [execution_id for execution_id, n in runs.items() if n > 1] == []
    pids = set(RunRecord.objects.filter(execution_id__in=ids).values_list("pid", flat=True))
    assert pids == {worker.pid for worker in celery_workers.workers}


def test_warm_shutdown_hands_running_attempts_back(celery_workers: CeleryWorkers) -> None:
    """SIGTERM: the worker gives its running attempt SHUTDOWN_TIMEOUT, hands it back (ready,
    published again) and exits; another worker runs it."""
    worker_a = celery_workers.start("a", settings={"SHUTDOWN_TIMEOUT": 0.5})
    handle = sleep.enqueue({"seconds": 30, "cooperative": True})
    wait_for(
        lambda: RunRecord.objects.filter(execution_id=handle.execution_id).exists(),
        30,
        lambda: "worker A never ran it\n" + celery_workers.tails(),
    )
    worker_a.send_signal(signal.SIGTERM)
    assert worker_a.wait(30) == 0
    assert "event=handed_back" in worker_a.output()
    assert handle.get_execution().status == Status.READY

    worker_b = celery_workers.start("b")
    wait_for(
        lambda: RunRecord.objects.filter(execution_id=handle.execution_id).count() == 2,
        30,
        lambda: "worker B never ran it again\n" + celery_workers.tails(),
    )
    runs = list(RunRecord.objects.filter(execution_id=handle.execution_id))
    assert [run.pid for run in runs] == [worker_a.pid, worker_b.pid]
    handle.cancel()  # no need to wait 30 s for it
