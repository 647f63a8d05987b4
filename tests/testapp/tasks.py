"""Tasks run by the worker subprocesses of ``tests/commands/test_worker_processes.py``.

They are module-level (autodiscovered in every process, worker or pytest) with explicit ids.
Each run inserts a :class:`~tests.testapp.models.RunRecord` in its own short transaction:
that is how a test counts the runs of an execution across processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone

from django_durable import task
from django_durable.context import TaskContext

from .models import RunRecord

#: How long a run keeps trying to write its record while the database is unreachable.
RECORD_RETRY_SECONDS = 60.0


def record_run(ctx: TaskContext) -> int:
    """Insert this run's record; return how many runs of the execution were recorded before.

    A write that fails because the database is down (a PostgreSQL restart) is retried, so that
    the task code itself survives the restart and only the engine is under test.
    """
    deadline = time.monotonic() + RECORD_RETRY_SECONDS
    while True:
        try:
            earlier = RunRecord.objects.filter(execution_id=ctx.execution_id).count()
            RunRecord.objects.create(
                execution_id=ctx.execution_id,
                task_id=ctx.task_id,
                attempt=ctx.attempt,
                pid=os.getpid(),
                prev_error=ctx.prev_error.message if ctx.prev_error else "",
                started_at=timezone.now(),
            )
            return earlier
        except (OperationalError, InterfaceError):
            if time.monotonic() >= deadline:
                raise
            connection.close()
            time.sleep(0.1)


@task(id="testapp.record", timeout=30)
def record(ctx: TaskContext, input: Any) -> Any:
    """Record the run and return the input."""
    record_run(ctx)
    return input


@task(id="testapp.sleep", timeout=30)
def sleep(ctx: TaskContext, input: Any) -> Any:
    """Record the run, then sleep ``input["seconds"]``.

    Deaf to every signal, unless ``input["cooperative"]``: then the sleep ends early when the
    run is aborted (timed out, cancelled or handed back at shutdown).
    """
    record_run(ctx)
    seconds = float(input.get("seconds", 0))
    if input.get("cooperative"):
        if ctx.abort_signal.wait(seconds):
            return {"aborted": True}
    else:
        time.sleep(seconds)
    return {"slept": seconds}


@task(id="testapp.stuck_first_run", timeout=3)
def stuck_first_run(ctx: TaskContext, input: Any) -> Any:
    """On its first run, hang (for longer than its timeout); on later runs, return ``"test"``."""
    if record_run(ctx) == 0:
        ctx.abort_signal.wait(30)
        return "stuck"
    return "test"
