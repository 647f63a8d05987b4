"""SQLite's stand-in for ``LISTEN/NOTIFY``: wake the executors when another connection commits.

SQLite has no notifications between processes, but ``PRAGMA data_version`` changes whenever
another connection (of any process) commits to the database file, and reading it costs a few
microseconds and no lock. :class:`DataVersionWatcher` reads it every ``interval`` seconds on one
connection of its own. When it changed, one indexed read (no write lock in WAL mode) tells
whether there is due ready work or a cancellation to act on, and only then are this process's
claim or cancellation loops woken: an execution enqueued by a web process starts within
milliseconds instead of a poll interval, while the worker's own commits (which change the
version too) cost no extra claims. The sweepers' work (children, closing) comes from executors,
and SQLite has one worker process; they keep their polling.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from django.db import connections
from django.utils import timezone

from . import wakeups
from .models import TaskExecution

logger = logging.getLogger(__name__)

#: Seconds between two reads of ``PRAGMA data_version``.
WATCH_INTERVAL = 0.005
#: Whether a commit elsewhere brought due ready work, or a cancellation of this executor's work
#: (both reads use partial indexes).
_TABLE = TaskExecution._meta.db_table
_READY_CHECK = f"SELECT 1 FROM {_TABLE} WHERE status = 'ready' AND start_at <= ? LIMIT 1"
_CANCEL_CHECK = (
    f"SELECT 1 FROM {_TABLE} WHERE needs_promise_cancellation AND executor_id = ? LIMIT 1"
)


def database_file(using: str = "default") -> str | None:
    """The file of an SQLite database, or ``None`` when it is not one (in-memory, another
    vendor)."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return None
    name = str(connection.settings_dict["NAME"] or "")
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    return name


class DataVersionWatcher:
    """Polls ``PRAGMA data_version`` on its own connection and thread; see the module."""

    def __init__(
        self,
        path: str,
        executor_id: str,
        interval: float = WATCH_INTERVAL,
        using: str = "default",
    ) -> None:
        self.path = path
        self.executor_id = executor_id
        # How Django stores a datetime in this database (text, in the connection's time zone).
        self._adapt_datetime = connections[using].ops.adapt_datetimefield_value
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="durable-sqlite-watch", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        last: int | None = None
        while not self._stop.is_set():
            try:
                if connection is None:
                    connection = sqlite3.connect(self.path, timeout=5, check_same_thread=False)
                    self.connected.set()
                    last = None
                version = connection.execute("PRAGMA data_version").fetchone()[0]
                if last is not None and version != last:
                    self._wake(connection)
                last = version
            except sqlite3.Error as error:
                logger.warning("SQLite change watcher failed (%s); reopening", error)
                self.connected.clear()
                if connection is not None:
                    connection.close()
                connection = None
                self._stop.wait(0.5)
                continue
            self._stop.wait(self.interval)
        if connection is not None:
            connection.close()

    def _wake(self, connection: sqlite3.Connection) -> None:
        now = self._adapt_datetime(timezone.now())
        if connection.execute(_READY_CHECK, (now,)).fetchone() is not None:
            wakeups.notify_local(wakeups.READY)
        if connection.execute(_CANCEL_CHECK, (self.executor_id,)).fetchone() is not None:
            wakeups.notify_local(wakeups.CANCEL)
