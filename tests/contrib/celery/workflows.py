"""Tasks run by the Celery workers of these tests (imported by ``tests/celery_app.py``).

The example workflows of the engine: a parent with children and a finalize task, a sequence, a
parent waiting on a sleeping task, retries, a timeout and a cancellable task. Runs are counted
with :func:`tests.testapp.tasks.record_run` (one ``RunRecord`` per run).
"""

from __future__ import annotations

import time
from typing import Any

from django_durable import (
    ParentResult,
    RetryOptions,
    child,
    parent_task,
    sequential_tasks,
    sleeping_task,
    task,
)
from django_durable.context import TaskContext
from tests.testapp.tasks import record_run


@task(id="celery_tests.double", timeout=30)
def double(ctx: TaskContext, input: int) -> int:
    record_run(ctx)
    return input * 2


@task(id="celery_tests.combine", timeout=30)
def combine(ctx: TaskContext, input: Any) -> dict[str, Any]:
    """A finalize *task*: sums the children's outputs."""
    return {"sum": sum(record.output for record in input.children)}


@parent_task(id="celery_tests.fan_out", timeout=30, finalize=combine)
def fan_out(ctx: TaskContext, input: list[int]) -> ParentResult:
    return ParentResult(output=None, children=[child(double, value) for value in input])


@task(id="celery_tests.add_one", timeout=30)
def add_one(ctx: TaskContext, input: int) -> int:
    return input + 1


chain = sequential_tasks("celery_tests.chain", [add_one, add_one, add_one])

approval = sleeping_task(id="celery_tests.approval", timeout=60)


@parent_task(id="celery_tests.await_approval", timeout=30)
def await_approval(ctx: TaskContext, input: str) -> ParentResult:
    return ParentResult(output="asked", children=[child(approval, input)])


@task(
    id="celery_tests.flaky",
    timeout=30,
    retry=RetryOptions(max_retries=3, base_delay=0.3, delay_multiplier=1, max_delay=1),
)
def flaky(ctx: TaskContext, input: Any) -> str:
    """Fails on its first two attempts (the retries wait 0.3 s: a countdown), then succeeds."""
    record_run(ctx)
    if ctx.attempt < 2:
        raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
    return f"attempt {ctx.attempt}"


@task(id="celery_tests.too_slow", timeout=1)
def too_slow(ctx: TaskContext, input: Any) -> str:
    """Outlives its timeout (cooperatively: the abort signal ends the wait)."""
    ctx.abort_signal.wait(20)
    return "late"


@task(id="celery_tests.wait_for_cancel", timeout=60)
def wait_for_cancel(ctx: TaskContext, input: Any) -> str:
    """Records its run, then waits until it is cancelled (or 30 s)."""
    record_run(ctx)
    if ctx.abort_signal.wait(30):
        return "aborted"
    return "not cancelled"


@task(id="celery_tests.hang_first_run", timeout=2)
def hang_first_run(ctx: TaskContext, input: Any) -> str:
    """On its first run, hangs (its worker is killed meanwhile); later runs return at once."""
    if record_run(ctx) == 0:
        time.sleep(30)
        return "hung"
    return "recovered"
