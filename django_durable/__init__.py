"""django-durable: a durable execution engine for Django.

The public API. Task definitions and errors import eagerly; the parts that touch the database
(handles, the executor) load on first use, so that importing ``django_durable`` before the
app registry is ready (settings, ``INSTALLED_APPS``) is safe.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    DurableExecutionCancelledError,
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutionTimedOutError,
)
from .results import ChildResult, ParentResult, ParentRunResult, child
from .tasks import (
    RetryOptions,
    Task,
    looping_task,
    parent_task,
    sequential_tasks,
    sleeping_task,
    task,
)

if TYPE_CHECKING:
    from .context import TaskContext
    from .executions import ExecutionSnapshot
    from .executor.executor import Executor
    from .handles import TaskHandle, awakeup_sleeping_task, get_handle, wakeup_sleeping_task

__version__ = "0.1.0"

_LAZY = {
    "Executor": ".executor.executor",
    "TaskHandle": ".handles",
    "get_handle": ".handles",
    "wakeup_sleeping_task": ".handles",
    "awakeup_sleeping_task": ".handles",
    "ExecutionSnapshot": ".executions",
    "TaskContext": ".context",
}

__all__ = [
    "ChildResult",
    "DurableExecutionCancelledError",
    "DurableExecutionError",
    "DurableExecutionNotFoundError",
    "DurableExecutionTimedOutError",
    "ExecutionSnapshot",
    "Executor",
    "ParentResult",
    "ParentRunResult",
    "RetryOptions",
    "Task",
    "TaskContext",
    "TaskHandle",
    "awakeup_sleeping_task",
    "child",
    "get_handle",
    "looping_task",
    "parent_task",
    "sequential_tasks",
    "sleeping_task",
    "task",
    "wakeup_sleeping_task",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'django_durable' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
