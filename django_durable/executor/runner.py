"""Where task code runs: a thread pool for sync tasks, an event loop for ``async def`` tasks,
and one timer thread for every deadline (attempt timeouts, delayed wake-ups)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

logger = logging.getLogger(__name__)


class DeadlineScheduler:
    """Runs callbacks at monotonic deadlines on one thread; callbacks must be quick.

    Every attempt schedules its timeout here and nearly every attempt cancels it soon after:
    a cancelled entry lets go of its callback at once (and of what the callback holds), and
    the heap is rebuilt without cancelled entries once they are the majority, so that a busy
    worker with hour-long timeouts does not keep an hour of finished attempts in memory.
    """

    #: Cancelled entries tolerated in the heap before it is rebuilt without them.
    COMPACT_AFTER = 1024

    def __init__(self, name: str = "durable-deadlines") -> None:
        # Entries are [deadline, token, callback or None once cancelled].
        self._heap: list[list[Any]] = []
        self._entries: dict[int, list[Any]] = {}
        self._cancelled = 0
        self._counter = itertools.count()
        self._condition = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Entries in the heap, cancelled ones not yet dropped included."""
        return len(self._heap)

    def call_at(self, deadline: float, callback: Callable[[], None]) -> int:
        """Call ``callback`` at ``deadline`` (``time.monotonic()`` scale); return a token."""
        with self._condition:
            token = next(self._counter)
            entry = [deadline, token, callback]
            self._entries[token] = entry
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._condition.notify()
            return token

    def call_later(self, delay: float, callback: Callable[[], None]) -> int:
        return self.call_at(time.monotonic() + delay, callback)

    def cancel(self, token: int) -> None:
        with self._condition:
            entry = self._entries.pop(token, None)
            if entry is None:
                return
            entry[2] = None
            self._cancelled += 1
            if self._cancelled > self.COMPACT_AFTER and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2] is not None]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def shutdown(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join(5)

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._stopping:
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._condition.wait(timeout)
                if self._stopping:
                    return
                _, token, callback = heapq.heappop(self._heap)
                if callback is None:
                    self._cancelled = max(0, self._cancelled - 1)
                    continue
                del self._entries[token]
            try:
                callback()
            except Exception:
                logger.exception("Deadline callback failed")


class AsyncLoopThread:
    """An asyncio event loop on its own thread, for ``async def`` tasks."""

    def __init__(self, name: str = "durable-asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def call_soon(self, callback: Callable[[], Any]) -> None:
        self.loop.call_soon_threadsafe(callback)

    def shutdown(self, timeout: float = 5.0) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(timeout)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
