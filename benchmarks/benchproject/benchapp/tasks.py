"""The benchmark's tasks: a no-op, a fan-out parent with a summing finalize, and a chain.

The chain's length comes from ``DURABLE_BENCH_CHAIN_STEPS`` (default 100): the benchmark
driver sets it for itself and for the workers it starts, so both define the same task.
"""

from __future__ import annotations

import os
from typing import Any

from django_durable import ParentResult, child, parent_task, sequential_tasks, task

CHAIN_STEPS = int(os.environ.get("DURABLE_BENCH_CHAIN_STEPS", "100"))


@task(id="bench.noop", timeout=60)
def noop(ctx: Any, input: Any) -> Any:
    """Does nothing: returns its input."""
    return input


@task(id="bench.step", timeout=60)
def step(ctx: Any, input: int) -> int:
    """One link of the chain: adds one, so that the chain's output proves every step ran."""
    return input + 1


def sum_children(ctx: Any, result: Any) -> int:
    """Finalize of the fan-out: the sum of the children's outputs (each child returns 1)."""
    return sum(record.output for record in result.children if record.status == "completed")


@parent_task(id="bench.fanout", timeout=60, finalize=sum_children)
def fanout(ctx: Any, input: dict[str, int]) -> ParentResult:
    """A parent with ``input["children"]`` no-op children run in parallel."""
    return ParentResult(output=None, children=[child(noop, 1) for _ in range(input["children"])])


chain = sequential_tasks("bench.chain", [step] * CHAIN_STEPS, timeout=60)
