"""Worker heartbeats in production: a worker killed mid-task is recovered by its silence.

The killed worker's task has a one-hour timeout and the default ``EXPIRE_LEEWAY`` (5 minutes):
expiry would take over an hour, so only the heartbeat recovery can finish it in the test's
30 seconds. ``HEARTBEAT_INTERVAL`` is 2 s here, so a worker is taken as dead after 6 s (short,
but long enough that a busy CI machine does not starve a live worker's beats for that long).
"""

from __future__ import annotations

import signal
import time

import pytest

from django_durable.conf import DEFAULTS
from django_durable.models import Status, Worker
from tests.testapp.models import RunRecord
from tests.testapp.tasks import stuck_first_run

from .workers import WorkerProcesses, wait_for

pytestmark = pytest.mark.slow

SETTINGS = {"HEARTBEAT_INTERVAL": 2, "EXPIRE_LEEWAY": DEFAULTS["EXPIRE_LEEWAY"]}


def test_a_sigkilled_workers_task_is_completed_by_another_worker_within_30s(
    worker_processes: WorkerProcesses,
) -> None:
    workers = [
        worker_processes.start(name, settings=SETTINGS, wait_started=False) for name in ("a", "b")
    ]
    for worker in workers:  # started side by side
        worker.wait_for_output("event=started concurrency")
    handle = stuck_first_run.enqueue(timeout=3600)
    wait_for(
        lambda: RunRecord.objects.filter(execution_id=handle.execution_id).exists(),
        20,
        lambda: f"no worker ran the task\n{worker_processes.tails()}",
    )
    running = handle.get_execution()
    assert running.status == Status.RUNNING
    runner_pid = Worker.objects.get(worker_id=running.executor_id).pid
    [victim] = [w for w in workers if w.pid == runner_pid]
    [survivor] = [w for w in workers if w.pid != runner_pid]
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    killed_at = time.monotonic()

    wait_for(
        lambda: handle.get_execution().status == Status.COMPLETED,
        30,
        lambda: f"not completed: {handle.get_execution().status}\n{worker_processes.tails()}",
    )
    recovered_after = time.monotonic() - killed_at
    assert recovered_after < 30
    execution = handle.get_execution()
    assert execution.output == "test"
    assert execution.retry_attempts == 0  # like expiry, not counted as a retry
    runs = list(RunRecord.objects.filter(execution_id=handle.execution_id).order_by("id"))
    assert [run.pid for run in runs] == [victim.pid, survivor.pid]
    assert runs[1].prev_error == "Task execution expired: its worker stopped responding"
    print(f"\nheartbeat recovery: completed {recovered_after:.1f}s after the kill")
