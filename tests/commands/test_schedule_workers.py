"""Schedules in production: two real ``durable_worker`` processes sweep the same schedule.

The schedule ticks every 2 seconds (croniter's sixth field, seconds) so that the test sees
five ticks in about ten seconds rather than minutes; the minute-level rule for missed ticks is
tested with a controlled ``now`` in ``tests/test_schedules.py``.
"""

from __future__ import annotations

import itertools
import signal
from datetime import datetime

import pytest

from django_durable.models import Status, TaskExecution
from tests.testapp.models import RunRecord

from .workers import WorkerProcesses, wait_for

pytestmark = pytest.mark.slow

PREFIX = "schedule:every-2s:"
SCHEDULES = {
    "every-2s": {"task": "testapp.record", "schedule": "* * * * * */2", "input": "tick"},
}


def _ticks() -> list[datetime]:
    keys = TaskExecution.objects.filter(idempotency_key__startswith=PREFIX).values_list(
        "idempotency_key", flat=True
    )
    return sorted(datetime.fromisoformat(key.removeprefix(PREFIX)) for key in keys)


def test_two_workers_enqueue_each_tick_exactly_once_without_gaps(
    worker_processes: WorkerProcesses,
) -> None:
    # The default heartbeat: a worker's beats lagging on a busy machine must not hand its
    # executions to the other worker (that is not what this test is about).
    settings = {"SCHEDULES": SCHEDULES, "HEARTBEAT_INTERVAL": 5}
    workers = [
        worker_processes.start(name, settings=settings, wait_started=False) for name in ("a", "b")
    ]
    for worker in workers:  # started side by side
        worker.wait_for_output("event=started concurrency")
    both_running = len(_ticks())
    wait_for(
        lambda: len(_ticks()) >= both_running + 5,
        30,
        lambda: f"ticks so far: {_ticks()}\n{worker_processes.tails()}",
    )
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(30) == 0, worker.tail()

    ticks = _ticks()
    rows = list(TaskExecution.objects.filter(idempotency_key__startswith=PREFIX))
    assert len(rows) == len(ticks) == len(set(ticks))
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert all(gap.total_seconds() == 2 for gap in gaps), ticks
    # Each tick's execution ran once (or, for the last ones, was handed back at stop).
    runs = RunRecord.objects.filter(execution_id__in=[row.execution_id for row in rows])
    assert runs.count() == len({run.execution_id for run in runs})
    assert all(row.status in (Status.COMPLETED, Status.READY) for row in rows)
