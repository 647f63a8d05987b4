"""In-process wake-ups: executors learn of new work at once, waiters of finished executions.

A worker never sleeps on a timer where an event can wake it: enqueueing, spawning children and
retries notify ``READY`` (on commit), which wakes every executor of this process at once;
cancelling notifies ``CANCEL`` and leaving close work notifies ``CLOSE``. Recording a finish
calls :func:`notify_finished`, which wakes ``handle.wait()`` callers. Other processes learn the
same through PostgreSQL ``LISTEN/NOTIFY`` or, failing that, by polling.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

READY = "ready"
CANCEL = "cancel"
CLOSE = "close"
CHILDREN = "children"

_listeners: defaultdict[str, list[Callable[[], None]]] = defaultdict(list)
_lock = threading.Lock()
_finished = threading.Condition()
_finished_generation = 0
_remote_notifiers: list[Callable[[str], None]] = []


def add_listener(channel: str, listener: Callable[[], None]) -> None:
    with _lock:
        _listeners[channel].append(listener)


def remove_listener(channel: str, listener: Callable[[], None]) -> None:
    with _lock:
        if listener in _listeners[channel]:
            _listeners[channel].remove(listener)


def add_remote_notifier(notifier: Callable[[str], None]) -> None:
    """Also tell other processes (e.g. PostgreSQL ``NOTIFY``) when :func:`notify` is called."""
    with _lock:
        if notifier not in _remote_notifiers:
            _remote_notifiers.append(notifier)


def notify_local(channel: str) -> None:
    """Wake this process's listeners of ``channel``."""
    with _lock:
        listeners = list(_listeners[channel])
    for listener in listeners:
        listener()


def notify(channel: str) -> None:
    """Wake the listeners of ``channel`` here and, where supported, in other processes."""
    notify_local(channel)
    for notifier in list(_remote_notifiers):
        notifier(channel)


def notify_finished() -> None:
    """Wake callers of :func:`wait_for_finished` (some execution finished)."""
    global _finished_generation
    with _finished:
        _finished_generation += 1
        _finished.notify_all()


def finished_generation() -> int:
    return _finished_generation


def wait_for_finished(generation: int, timeout: float) -> None:
    """Sleep up to ``timeout`` seconds, or until something finished after ``generation``."""
    with _finished:
        if _finished_generation == generation:
            _finished.wait(timeout)
