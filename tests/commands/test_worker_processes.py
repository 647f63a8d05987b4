"""Workers in production: real ``manage.py durable_worker`` processes on the test database.

Each test starts worker subprocesses (``python -m django durable_worker``, see ``workers.py``),
enqueues executions of the tasks in ``tests/testapp/tasks.py`` from the test process and waits
(with deadlines) for their rows. Every run of those tasks inserts a ``RunRecord`` (execution id,
attempt, pid, previous error), which is how runs are counted across processes.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from django_durable.handles import TaskHandle
from django_durable.models import Status, TaskExecution
from tests.testapp.models import RunRecord
from tests.testapp.tasks import record, sleep, stuck_first_run

from .workers import (
    WorkerProcess,
    WorkerProcesses,
    postgres_datadir,
    restart_postgres,
    wait_for,
)

pytestmark = pytest.mark.slow

#: For the tests under load: the default heartbeat (a worker is taken as dead after 15 s of
#: silence). With FAST_SETTINGS' 0.5 s a busy worker's heartbeat can lag by more than 1.5 s
#: (seen up to 4.8 s on SQLite with 2 x 16 threads on 2 CPUs): it is then taken as dead and its
#: running executions run again elsewhere, which is not what these tests are about.
LOAD_SETTINGS = {"HEARTBEAT_INTERVAL": 5}


def _statuses(execution_ids: Iterable[str]) -> Counter[str]:
    return Counter(
        TaskExecution.objects.filter(execution_id__in=list(execution_ids)).values_list(
            "status", flat=True
        )
    )


def _completed(execution_ids: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        return TaskExecution.objects.filter(
            execution_id__in=execution_ids, status=Status.COMPLETED
        ).count() == len(execution_ids)

    return check


def _runs(execution_id: str) -> list[RunRecord]:
    return list(RunRecord.objects.filter(execution_id=execution_id).order_by("id"))


def _not_done(workers: WorkerProcesses, execution_ids: list[str]) -> Callable[[], str]:
    def message() -> str:
        return f"not all completed: {dict(_statuses(execution_ids))}\n{workers.tails()}"

    return message


def _duplicates_report(runs: Counter[str], workers: WorkerProcesses) -> str:
    duplicated = [execution_id for execution_id, n in runs.items() if n > 1]
    lines = [f"{len(duplicated)} executions ran more than once:"]
    for execution_id in duplicated[:10]:
        lines.append(
            f"  {execution_id}: "
            + "; ".join(
                f"pid={run.pid} attempt={run.attempt} at={run.started_at.isoformat()} "
                f"prev_error={run.prev_error!r}"
                for run in _runs(execution_id)
            )
        )
    return "\n".join(lines) + "\n" + workers.tails()


def test_sigkill_mid_task_runs_it_again_in_another_worker(
    worker_processes: WorkerProcesses,
) -> None:
    """A worker killed with SIGKILL in the middle of a task: another worker runs it again."""
    worker_a = worker_processes.start("a")
    stuck = stuck_first_run.enqueue()
    # In flight with the stuck task when A dies (they are lost unless recovered too) ...
    in_flight = sleep.enqueue_many([{"seconds": 1.0}] * 3)
    quick_before = record.enqueue_many(list(range(5)))

    wait_for(
        lambda: RunRecord.objects.filter(execution_id=stuck.execution_id).exists(),
        20,
        lambda: f"worker A never ran {stuck.execution_id}\n{worker_processes.tails()}",
    )
    assert stuck.get_execution().status == Status.RUNNING
    worker_a.send_signal(signal.SIGKILL)
    assert worker_a.wait(10) == -signal.SIGKILL
    killed_at = time.monotonic()
    # ... and enqueued while no worker runs.
    quick_after = record.enqueue_many(list(range(5, 10)))

    worker_b = worker_processes.start("b")
    everything = [h.execution_id for h in [stuck, *in_flight, *quick_before, *quick_after]]
    wait_for(_completed(everything), 30, _not_done(worker_processes, everything))
    recovered_after = time.monotonic() - killed_at

    execution = stuck.get_execution()
    assert execution.status == Status.COMPLETED
    assert execution.output == "test"
    assert execution.retry_attempts == 0  # expiry recovery is not a retry
    runs = _runs(stuck.execution_id)
    assert [run.pid for run in runs] == [worker_a.pid, worker_b.pid]
    assert [run.attempt for run in runs] == [0, 0]
    assert runs[0].prev_error == ""
    assert runs[1].prev_error.startswith("Task execution expired"), runs[1].prev_error
    # Every other execution completed; each quick one that A finished is not run again.
    assert [h.get_execution().output for h in [*quick_before, *quick_after]] == list(range(10))
    assert all(len(_runs(h.execution_id)) == 1 for h in quick_after), (
        "a quick task enqueued after the kill ran more than once"
    )
    assert all(_runs(h.execution_id)[-1].pid in {worker_a.pid, worker_b.pid} for h in in_flight)
    print(
        f"\nSIGKILL recovery: completed {recovered_after:.1f}s after the kill "
        f"(B's recovery: {runs[1].prev_error!r})"
    )


def test_two_workers_run_each_execution_exactly_once(worker_processes: WorkerProcesses) -> None:
    """Two worker processes and 1,000 executions: each completes and runs exactly once."""
    count = 1000
    workers = [
        worker_processes.start(name, settings=LOAD_SETTINGS, args=["--concurrency", "16"])
        for name in "ab"
    ]
    started = time.monotonic()
    handles = record.enqueue_many(list(range(count)))
    ids = [handle.execution_id for handle in handles]

    wait_for(_completed(ids), 90, _not_done(worker_processes, ids), interval=0.2)
    elapsed = time.monotonic() - started

    runs = Counter(RunRecord.objects.values_list("execution_id", flat=True))
    assert set(runs) == set(ids)
    assert sum(runs.values()) == count, _duplicates_report(runs, worker_processes)
    by_pid = Counter(RunRecord.objects.values_list("pid", flat=True))
    assert set(by_pid) == {worker.pid for worker in workers}, by_pid
    outputs = dict(
        TaskExecution.objects.filter(execution_id__in=ids).values_list("execution_id", "output")
    )
    assert [int(outputs[handle.execution_id]) for handle in handles] == list(range(count))

    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(20) == 0, worker.tail()
    print(
        f"\n{count} executions on 2 workers: {elapsed:.1f}s "
        f"({count / elapsed:.0f}/s), runs per worker {dict(by_pid)}"
    )


@pytest.mark.skipif(
    postgres_datadir() is None,
    reason="needs PostgreSQL (DATABASE_URL) and a server to restart (DURABLE_TEST_PG_DATADIR)",
)
def test_postgres_restart_while_workers_run(
    worker_processes: WorkerProcesses, tmp_path: Path
) -> None:
    """PostgreSQL is restarted while two workers run 500 executions: all 500 complete.

    The attempts' timeout is 60 s, so all of them completing within 45 s of the restart
    means that no result was lost with the connection (a lost write leaves its execution
    ``running`` until it expires, 61 s later).
    """
    count = 500
    workers = [
        worker_processes.start(name, settings=LOAD_SETTINGS, args=["--concurrency", "16"])
        for name in "ab"
    ]
    started = time.monotonic()
    handles = sleep.enqueue_many([{"seconds": 0.02}] * count, timeout=60)
    ids = [handle.execution_id for handle in handles]

    wait_for(
        lambda: TaskExecution.objects.filter(status=Status.COMPLETED).count() >= 100,
        60,
        _not_done(worker_processes, ids),
    )
    restart_seconds = restart_postgres(tmp_path / "pg_ctl.log")
    restarted = time.monotonic()
    connection.close()  # the test's own connection died with the server
    completed_at_restart = TaskExecution.objects.filter(status=Status.COMPLETED).count()

    wait_for(_completed(ids), 45, _not_done(worker_processes, ids), interval=0.2)
    elapsed = time.monotonic() - started
    after_restart = time.monotonic() - restarted

    runs = Counter(RunRecord.objects.values_list("execution_id", flat=True))
    assert set(runs) == set(ids)
    duplicates = {execution_id: n for execution_id, n in runs.items() if n > 1}
    for worker in workers:
        assert worker.returncode is None, worker.tail()
    # A run may repeat after a write lost with the connection: reported, not failed.
    print(
        f"\nPostgreSQL restart ({restart_seconds:.1f}s) at {completed_at_restart}/{count} "
        f"completed: all {count} completed {after_restart:.1f}s after it ({elapsed:.1f}s in "
        f"all); executions run more than once: {len(duplicates)} {duplicates}"
    )


def _sigterm_during_task(
    worker_processes: WorkerProcesses, task_input: dict[str, Any], shutdown_timeout: float
) -> tuple[WorkerProcess, TaskHandle, float]:
    """Start a worker, SIGTERM it while it runs ``sleep(task_input)``; it must exit 0 in time."""
    worker = worker_processes.start("a", settings={"SHUTDOWN_TIMEOUT": shutdown_timeout})
    handle = sleep.enqueue(task_input)
    wait_for(
        lambda: RunRecord.objects.filter(execution_id=handle.execution_id).exists(),
        20,
        lambda: f"the worker never ran the task\n{worker.tail()}",
    )
    worker.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    margin = 5
    try:
        returncode = worker.wait(shutdown_timeout + margin)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the worker did not exit within SHUTDOWN_TIMEOUT ({shutdown_timeout}s) + {margin}s"
            f"\n{worker.tail()}"
        ) from None
    exited_after = time.monotonic() - signalled
    assert returncode == 0, worker.tail()
    assert "event=stopping signal=SIGTERM" in worker.output()
    return worker, handle, exited_after


def test_sigterm_lets_the_running_task_finish(worker_processes: WorkerProcesses) -> None:
    """SIGTERM during a 2 s task: the worker finishes it, then exits 0 within the grace period."""
    worker, handle, exited_after = _sigterm_during_task(worker_processes, {"seconds": 2.0}, 10)

    execution = handle.get_execution()
    assert execution.status == Status.COMPLETED
    assert execution.output == {"slept": 2.0}
    assert [run.pid for run in _runs(handle.execution_id)] == [worker.pid]
    assert exited_after < 10
    assert "event=handed_back" not in worker.output()
    print(f"\nSIGTERM: exited 0 {exited_after:.1f}s after the signal, task completed there")


@pytest.mark.parametrize(
    "cooperative",
    [
        pytest.param(True, id="task-watches-abort-signal"),
        pytest.param(False, id="task-ignores-signals"),
    ],
)
def test_sigterm_hands_back_a_task_longer_than_the_grace_period(
    worker_processes: WorkerProcesses, cooperative: bool
) -> None:
    """SIGTERM during a task that outlasts the 1 s grace period: the worker hands it back and
    exits 0 within the grace period (+ a margin); another worker then runs it to completion."""
    seconds = 4.0 if cooperative else 20.0
    worker, handle, exited_after = _sigterm_during_task(
        worker_processes, {"seconds": seconds, "cooperative": cooperative}, 1
    )

    assert "event=handed_back" in worker.output(), worker.tail()
    assert handle.get_execution().status in {Status.READY, Status.RUNNING}
    worker_b = worker_processes.start("b")
    wait_for(
        _completed([handle.execution_id]),
        seconds + 20,
        _not_done(worker_processes, [handle.execution_id]),
    )
    execution = handle.get_execution()
    assert execution.output == {"slept": seconds}
    assert execution.retry_attempts == 0
    assert [run.pid for run in _runs(handle.execution_id)] == [worker.pid, worker_b.pid]
    print(f"\nSIGTERM with hand-back: exited 0 {exited_after:.1f}s after the signal")


def test_an_idle_worker_is_woken_by_an_enqueue_from_another_process(
    worker_processes: WorkerProcesses,
) -> None:
    """With a 60 s poll interval, only a cross-process wake-up can start the execution in
    time: LISTEN/NOTIFY on PostgreSQL, the ``PRAGMA data_version`` watcher on SQLite."""
    worker_processes.start("idle", settings={"POLL_INTERVAL": 60})
    time.sleep(0.5)  # past the first claims made at start-up: the worker is idle, waiting
    handles = [record.enqueue({"n": n}) for n in range(3)]
    ids = [handle.execution_id for handle in handles]
    wait_for(_completed(ids), 30, _not_done(worker_processes, ids))
    assert {run.execution_id for run in RunRecord.objects.all()} == set(ids)
