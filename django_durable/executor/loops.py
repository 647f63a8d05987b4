"""A background loop: runs an iteration, again at once while there is more, else waits.

The wait ends early when the loop is woken (an in-process event or a PostgreSQL notification),
so the interval is only the fallback of polling (seed-spec §11.7: jittered interval, growing
pause after three consecutive errors, stop after the iteration in progress).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from django.db import close_old_connections, connections

logger = logging.getLogger("django_durable.executor")


class BackgroundLoop:
    """Runs ``iteration() -> has_more`` on its own thread until :meth:`stop`."""

    def __init__(self, name: str, iteration: Callable[[], bool], interval: float) -> None:
        self.name = name
        self._iteration = iteration
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        self._thread = threading.Thread(target=self._run, name=f"durable-{self.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next iteration now instead of after the interval."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        consecutive_errors = 0
        try:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    has_more = self._iteration()
                    consecutive_errors = 0
                except Exception:
                    consecutive_errors += 1
                    has_more = False
                    logger.exception("Background loop %s failed", self.name)
                    close_old_connections()
                if self._stop.is_set():
                    break
                if has_more:
                    continue
                pause = self.interval * random.uniform(0.9, 1.1)
                if consecutive_errors >= 3:
                    pause = min(pause * 1.25 ** (consecutive_errors - 2), 5 * self.interval)
                self._wake.wait(pause)
        finally:
            connections.close_all()
