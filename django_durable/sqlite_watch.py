"""SQLite's stand-in for ``LISTEN/NOTIFY``: wake the executors when another connection commits.

SQLite has no notifications between processes, but ``PRAGMA data_version`` changes whenever
another connection (of any process) commits to the database file, and reading it costs a few
microseconds and no lock. :class:`DataVersionWatcher` reads it every ``interval`` seconds on one
connection of its own and wakes this process's claim and cancellation loops when it changed, so
an execution enqueued by a web process starts within milliseconds instead of a poll interval.
The sweepers' work (children, closing) comes from executors, and SQLite has one worker process;
they keep their polling.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from django.db import connections

from . import wakeups

logger = logging.getLogger(__name__)

#: Seconds between two reads of ``PRAGMA data_version``.
WATCH_INTERVAL = 0.005
#: What a commit elsewhere may have brought: work to claim, or executions to cancel.
WOKEN_CHANNELS = (wakeups.READY, wakeups.CANCEL)


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

    def __init__(self, path: str, interval: float = WATCH_INTERVAL) -> None:
        self.path = path
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
                    for channel in WOKEN_CHANNELS:
                        wakeups.notify_local(channel)
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
