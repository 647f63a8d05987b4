"""PostgreSQL ``LISTEN/NOTIFY``: wake-ups that cross processes and machines.

:class:`Notifier` sends the wake-ups of :mod:`django_durable.wakeups` to other processes on
one dedicated connection, coalescing bursts (a thousand spawns become a handful of
``NOTIFY``); :class:`Listener` receives them on another dedicated connection and wakes the
executors of its process at once. Notifications from the process itself are ignored (it
already woke its executors). Polling stays the fallback: a lost notification delays work by
at most one poll interval, and SQLite only polls.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from django.db import connections

from . import wakeups

logger = logging.getLogger(__name__)

CHANNEL = "django_durable"
#: Seconds after which an idle notifier closes its connection.
IDLE_CLOSE_AFTER = 5.0


def _connect(using: str) -> Any:
    import psycopg

    params = dict(connections[using].get_connection_params())
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    return psycopg.connect(autocommit=True, **params)


def wakeup_payload(channel: str, queue: str | None = None) -> str:
    """The ``NOTIFY`` payload of a wake-up of ``channel`` sent by this process (its listener
    ignores it: the process already woke its own executors): ``channel:pid``, or
    ``channel:pid:queue`` when the new work is all in one queue (executors of other queues
    are not woken)."""
    if queue is None:
        return f"{channel}:{os.getpid()}"
    return f"{channel}:{os.getpid()}:{queue}"


def parse_payload(payload: str) -> tuple[str, str, str | None]:
    """``(channel, pid, queue or None)`` of a :func:`wakeup_payload`."""
    channel, _, rest = payload.partition(":")
    pid, separator, queue = rest.partition(":")
    return channel, pid, queue if separator else None


def announce_channel(using: str = "default") -> str | None:
    """The ``NOTIFY`` channel when this process sends wake-ups to other processes through
    database ``using``, else ``None``: a statement may then carry its own wake-up."""
    return CHANNEL if _notifier is not None and _notifier.using == using else None


def supports_notify(using: str = "default") -> bool:
    return connections[using].vendor == "postgresql"


class Notifier:
    """Sends ``NOTIFY`` for wake-ups raised in this process, on its own thread."""

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._pending: set[tuple[str, str | None]] = set()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._close_requested = False

    def __call__(self, channel: str, queue: str | None = None) -> None:
        with self._condition:
            if self._thread is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="durable-notifier", daemon=True
                )
                self._thread.start()
            self._pending.add((channel, queue))
            self._condition.notify()

    def close(self) -> None:
        """Close the connection now (it reopens on the next wake-up)."""
        with self._condition:
            self._close_requested = True
            self._condition.notify()
            if self._thread is not None and self._thread.is_alive():
                self._condition.wait_for(lambda: not self._close_requested, timeout=5)

    def _run(self) -> None:
        connection = None
        while True:
            with self._condition:
                while not self._pending and not self._close_requested:
                    if not self._condition.wait(IDLE_CLOSE_AFTER) and connection is not None:
                        break  # idle: let the connection go
                channels, self._pending = self._pending, set()
                if self._close_requested or not channels:
                    if connection is not None:
                        connection.close()
                        connection = None
                    self._close_requested = False
                    self._condition.notify_all()
                    if not channels:
                        continue
            try:
                if connection is None or connection.closed:
                    connection = _connect(self.using)
                with connection.cursor() as cursor:
                    for channel, queue in _coalesce(channels):
                        cursor.execute(
                            "SELECT pg_notify(%s, %s)", (CHANNEL, wakeup_payload(channel, queue))
                        )
            except Exception as error:
                logger.warning("Could not send wake-up notifications: %s", error)
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:
                        pass
                connection = None
                time.sleep(0.5)


def _coalesce(pending: set[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """The wake-ups to send for ``pending``: per channel, one for all queues when one of them
    named none, else one per queue."""
    unqueued = {channel for channel, queue in pending if queue is None}
    return sorted(
        {(channel, None if channel in unqueued else queue) for channel, queue in pending},
        key=lambda item: (item[0], item[1] or ""),
    )


class Listener:
    """``LISTEN`` on a dedicated connection; wakes this process's executors on notifications."""

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="durable-listener", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        own_pid = str(os.getpid())
        backoff = 0.1
        while not self._stop.is_set():
            connection = None
            try:
                connection = _connect(self.using)
                connection.execute(f"LISTEN {CHANNEL}")
                self.connected.set()
                backoff = 0.1
                # Work may have arrived while we were not listening.
                for channel in (wakeups.READY, wakeups.CHILDREN, wakeups.CLOSE, wakeups.CANCEL):
                    wakeups.notify_local(channel)
                while not self._stop.is_set():
                    for notification in connection.notifies(timeout=0.5):
                        channel, pid, queue = parse_payload(notification.payload)
                        if pid != own_pid:
                            wakeups.notify_local(channel, queue)
                        if self._stop.is_set():
                            break
            except Exception as error:
                self.connected.clear()
                if self._stop.is_set():
                    break
                logger.warning("Wake-up listener lost its connection (%s); reconnecting", error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:
                        pass


_notifier: Notifier | None = None


def install_notifier(using: str = "default") -> None:
    """Send this process's wake-ups to other processes (PostgreSQL only; idempotent)."""
    global _notifier
    if _notifier is None and supports_notify(using):
        _notifier = Notifier(using)
        wakeups.add_remote_notifier(_notifier)


def close_notifier() -> None:
    """Close the notifier's connection (tests: before the test database is dropped)."""
    if _notifier is not None:
        _notifier.close()
