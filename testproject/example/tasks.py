"""Example tasks of the test project: the workflows that ``manage.py durable_example`` runs.

The short sleeps only make the progress of the demo visible; real tasks do real work.
"""

from __future__ import annotations

import time
from typing import Any

from django.utils import timezone

from django_durable import (
    DurableExecutionError,
    ParentResult,
    RetryOptions,
    child,
    looping_task,
    parent_task,
    sequential_tasks,
    sleeping_task,
    task,
)

# -- a parent with children run in parallel, and a finalize ----------------------------------


@task(id="example.extract_title", timeout=30, api=True)
def extract_title(ctx: Any, input: dict[str, str]) -> dict[str, str]:
    """Pretend to read a file's title."""
    time.sleep(0.3)
    return {"title": f"Title of {input['path']}"}


@task(id="example.count_words", timeout=30)
def count_words(ctx: Any, input: dict[str, str]) -> dict[str, int]:
    """Pretend to count a file's words."""
    time.sleep(0.5)
    return {"words": len(input["path"]) * 100}


def combine(ctx: Any, result: Any) -> dict[str, Any]:
    """Finalize: merge the parent's output with its children's."""
    merged = dict(result.output)
    for record in result.children:
        if record.status == "completed":
            merged.update(record.output)
    return merged


@parent_task(id="example.upload_file", timeout=60, finalize=combine, api=True)
def upload_file(ctx: Any, input: dict[str, str]) -> ParentResult:
    """A parent with two children run in parallel, and a finalize that combines them."""
    return ParentResult(
        output={"path": input["path"]},
        children=[child(extract_title, input), child(count_words, input)],
    )


# -- retries with backoff ----------------------------------------------------------------------


@task(
    id="example.flaky",
    timeout=10,
    retry=RetryOptions(max_retries=3, base_delay=0.3, delay_multiplier=2, max_delay=2),
    api=True,
)
def flaky(ctx: Any, input: Any) -> str:
    """Fails twice, then succeeds: retried with backoff (0.3 s, then 0.6 s)."""
    if ctx.attempt < 2:
        raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
    return f"succeeded on attempt {ctx.attempt}"


# -- a sequence: each step's output is the next step's input -----------------------------------


@task(id="example.add_one", timeout=10)
def add_one(ctx: Any, input: int) -> int:
    time.sleep(0.2)
    return input + 1


pipeline = sequential_tasks("example.pipeline", [add_one, add_one, add_one], api=True)


# -- a loop: poll until something is ready -----------------------------------------------------


@task(id="example.check_report", timeout=10)
def check_report(ctx: Any, input: dict[str, Any]) -> dict[str, Any]:
    """One iteration of a poll: done once the report's ``ready_at`` time (a datetime) passed."""
    if timezone.now() < input["ready_at"]:
        return {"is_done": False}
    return {"is_done": True, "output": {"report": input["report"], "pages": 12}}


poll_report = looping_task(
    "example.poll_report", check_report, max_attempts=50, sleep_between=0.4, api=True
)


# -- a sleeping task, woken by a webhook, inside an order workflow ------------------------------

wait_for_payment = sleeping_task(id="example.wait_for_payment", timeout=3600)


def ship(ctx: Any, result: Any) -> dict[str, Any]:
    """Finalize of an order: ship it once its payment arrived."""
    payment = result.children[0]
    if payment.status != "completed":
        raise DurableExecutionError(f"Order {result.output['order']} was not paid")
    return {**result.output, "payment": payment.output, "shipped": True}


@parent_task(id="example.place_order", timeout=30, finalize=ship, api=True)
def place_order(ctx: Any, input: dict[str, str]) -> ParentResult:
    """An order that waits (without holding a worker) for its payment provider's webhook."""
    return ParentResult(
        output={"order": input["order"]},
        children=[child(wait_for_payment, input["order"])],
    )
