"""Example tasks of the test project: the documented workflows of django-durable."""

from __future__ import annotations

from typing import Any

from django_durable import (
    ParentResult,
    RetryOptions,
    child,
    looping_task,
    parent_task,
    sequential_tasks,
    sleeping_task,
    task,
)


@task(id="example.extract_title", timeout=30, api=True)
def extract_title(ctx: Any, input: dict[str, str]) -> dict[str, str]:
    """Pretend to read a file's title."""
    return {"title": f"Title of {input['path']}"}


@task(id="example.count_words", timeout=30)
def count_words(ctx: Any, input: dict[str, str]) -> dict[str, int]:
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


@task(
    id="example.flaky",
    timeout=10,
    retry=RetryOptions(max_retries=3, base_delay=0.05, delay_multiplier=2, max_delay=1),
)
def flaky(ctx: Any, input: Any) -> str:
    """Fails twice, then succeeds: retries with backoff."""
    if ctx.attempt < 2:
        raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
    return f"succeeded on attempt {ctx.attempt}"


@task(id="example.add_one", timeout=10)
def add_one(ctx: Any, input: int) -> int:
    return input + 1


pipeline = sequential_tasks("example.pipeline", [add_one, add_one, add_one])


@task(id="example.poll_once", timeout=10)
def poll_once(ctx: Any, input: dict[str, int]) -> dict[str, Any]:
    """One iteration of a loop: done on the attempt given in the input."""
    poll_once.calls = getattr(poll_once, "calls", 0) + 1  # type: ignore[attr-defined]
    if poll_once.calls >= input["done_after"]:  # type: ignore[attr-defined]
        return {"is_done": True, "output": poll_once.calls}  # type: ignore[attr-defined]
    return {"is_done": False}


poll = looping_task("example.poll", poll_once, max_attempts=10, sleep_between=0.01)

wait_for_payment = sleeping_task(id="example.wait_for_payment", timeout=3600)
