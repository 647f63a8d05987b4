"""The run context handed to task code, and its abort / shutdown signals."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from .errors import StoredError
from .results import ExecutionRef, ParentRef


class Signal(threading.Event):
    """A ``threading.Event`` that task code watches: set on cancellation, timeout or shutdown.

    ``signal.aborted`` (or ``signal.is_set()``) tells whether it fired; ``signal.wait(t)``
    sleeps up to ``t`` seconds but wakes as soon as it fires; ``await signal.await_set()``
    is the asyncio form.
    """

    @property
    def aborted(self) -> bool:
        return self.is_set()

    async def await_set(self, timeout: float | None = None) -> bool:
        """Wait in an event loop until the signal fires (or ``timeout`` passes)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.is_set():
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True


@dataclass(slots=True)
class TaskContext:
    """What a task function receives as ``ctx``.

    ``attempt`` is 0 for the first run, then 1, 2, ... on retries, with ``prev_error`` the
    stored error of the previous attempt. ``root`` is the top-most ancestor (``None`` for a
    top-level execution); ``parent`` the direct parent and this execution's place in it.
    """

    task_id: str
    execution_id: str
    attempt: int = 0
    prev_error: StoredError | None = None
    root: ExecutionRef | None = None
    parent: ParentRef | None = None
    abort_signal: Signal = field(default_factory=Signal)
    shutdown_signal: Signal = field(default_factory=Signal)
