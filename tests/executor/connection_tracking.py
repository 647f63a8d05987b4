"""Which threads opened database connections, and whether they closed them.

Django keeps one connection per thread. A thread that ends with its connection open leaves it
to the garbage collector, and psycopg then warns (``ResourceWarning``), at an unpredictable
moment, in whatever test runs then. :class:`ConnectionTracker` records every connection opened
(Django's ``connection_created`` signal) with its thread and keeps it alive, so that a test can
assert that the executor's threads closed theirs, and so that connections leaked anyway are
closed deterministically at the end of the test instead of in a later one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from django.db.backends.signals import connection_created


class ConnectionTracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._opened: list[tuple[threading.Thread, object]] = []

    def _on_created(self, sender: object, connection: object, **kwargs: object) -> None:
        with self._lock:
            if all(wrapper is not connection for _, wrapper in self._opened):
                self._opened.append((threading.current_thread(), connection))

    def start(self) -> None:
        connection_created.connect(self._on_created, weak=False, dispatch_uid=id(self))

    def stop(self) -> None:
        connection_created.disconnect(dispatch_uid=id(self))

    def open_on(self, thread_prefix: str) -> list[str]:
        """Names of the threads named ``thread_prefix...`` whose connection is still open."""
        with self._lock:
            opened = list(self._opened)
        return [
            thread.name
            for thread, wrapper in opened
            if thread.name.startswith(thread_prefix) and wrapper.connection is not None  # type: ignore[attr-defined]
        ]

    def wait_for_threads(self, thread_prefix: str, timeout: float = 5.0) -> None:
        """Wait (bounded) until the threads named ``thread_prefix...`` that opened a
        connection have ended."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [t for t, _ in self._opened if t.name.startswith(thread_prefix)]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def close_leaked(self) -> None:
        """Close the connections left open by threads that have ended."""
        with self._lock:
            opened = list(self._opened)
        for thread, wrapper in opened:
            if thread.is_alive() or wrapper.connection is None:  # type: ignore[attr-defined]
                continue
            try:
                wrapper.connection.close()  # type: ignore[attr-defined]
            except Exception:
                pass
            wrapper.connection = None  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _close_leaked_connections() -> Iterator[None]:
    """Close, at the end of each test, connections that executor threads left open (see the
    module docstring), so that a leak shows in the test that asserts there is none
    (``test_executor_threads_close_their_database_connections``), not at random later."""
    tracker = ConnectionTracker()
    tracker.start()
    yield
    tracker.stop()
    # The task and engine pools of shut-down executors: their threads end once idle.
    tracker.wait_for_threads("durable-task-")
    tracker.wait_for_threads("durable-engine-")
    tracker.close_leaked()
