"""Small helpers shared by the engine tests (counters, standard finished assertions)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from django.db import connections

from django_durable.models import TaskExecution
from django_durable.testing import wait_until

__all__ = [
    "CANCELLED_ERROR",
    "TIMED_OUT_ERROR",
    "Counter",
    "assert_finished",
    "error_dict",
    "row_count",
    "run_async",
    "run_in_threads",
    "wait_for_status",
]

#: The stored error of a cancelled execution.
CANCELLED_ERROR = {
    "error_type": "cancelled",
    "message": "Task execution cancelled",
    "is_retryable": False,
    "is_internal": False,
}
#: The stored error of an execution that ran past its timeout.
TIMED_OUT_ERROR = {
    "error_type": "timed_out",
    "message": "Task execution timed out",
    "is_retryable": True,
    "is_internal": False,
}


def error_dict(
    message: str,
    *,
    error_type: str = "generic",
    is_retryable: bool = False,
    is_internal: bool = False,
) -> dict[str, Any]:
    return {
        "error_type": error_type,
        "message": message,
        "is_retryable": is_retryable,
        "is_internal": is_internal,
    }


class Counter:
    """A thread-safe counter (task code runs on executor threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def incr(self) -> int:
        with self._lock:
            self.value += 1
            return self.value

    def __repr__(self) -> str:
        return f"Counter({self.value})"


def assert_finished(snapshot: Any, task_id: str) -> None:
    """The seed's standard finished assertions (SFA)."""
    assert snapshot.is_finished, snapshot.status
    assert snapshot.task_id == task_id
    assert snapshot.execution_id.startswith("te_")
    assert isinstance(snapshot.started_at, datetime)
    assert isinstance(snapshot.finished_at, datetime)
    assert snapshot.finished_at >= snapshot.started_at


def wait_for_status(handle: Any, *statuses: str, timeout: float = 10.0) -> Any:
    """Wait until the execution of ``handle`` is in one of ``statuses``; return the snapshot."""

    def check() -> Any:
        snapshot = handle.get_execution()
        return snapshot if snapshot.status in statuses else None

    return wait_until(check, timeout, message=f"{handle} never reached {statuses}")


def row_count(**filters: Any) -> int:
    return TaskExecution.objects.filter(**filters).count()


def run_in_threads(function: Any, count: int) -> list[Any]:
    """Call ``function()`` on ``count`` threads at once; return results (re-raise errors)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait(5)
            results[index] = function()
        except BaseException as error:  # pragma: no cover - re-raised below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    if errors:
        raise errors[0]
    return results


def run_async(main: Callable[[], Awaitable[Any]]) -> Any:
    """``asyncio.run(main())`` with one default-executor thread whose database connections
    are closed at the end (the async twins run the ORM on the loop's default executor, and a
    connection left open there is reported as a ``ResourceWarning`` when collected)."""

    async def wrapper() -> Any:
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-async")
        loop.set_default_executor(pool)
        try:
            return await main()
        finally:
            await loop.run_in_executor(pool, connections.close_all)

    return asyncio.run(wrapper())
