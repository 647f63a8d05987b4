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
from collections.abc import Callable, Iterable, Sequence

READY = "ready"
CANCEL = "cancel"
CLOSE = "close"
CHILDREN = "children"

#: Per channel, ``(listener, queues)``: ``queues`` None hears every wake-up, else only those
#: of these queues and those that name no queue.
_listeners: defaultdict[str, list[tuple[Callable[[], None], frozenset[str] | None]]] = defaultdict(
    list
)
_lock = threading.Lock()
_finished = threading.Condition()
_finished_generation = 0
_remote_notifiers: list[Callable[[str, str | None], None]] = []


def one_queue(queues: Iterable[str]) -> str | None:
    """The queue of a wake-up for new work in ``queues``: the queue when there is only one,
    else ``None`` (every executor is woken)."""
    distinct = set(queues)
    return distinct.pop() if len(distinct) == 1 else None


def add_listener(
    channel: str, listener: Callable[[], None], queues: Sequence[str] | None = None
) -> None:
    """Call ``listener`` on wake-ups of ``channel`` (of ``queues`` only, when given)."""
    with _lock:
        _listeners[channel].append((listener, None if queues is None else frozenset(queues)))


def remove_listener(channel: str, listener: Callable[[], None]) -> None:
    with _lock:
        _listeners[channel] = [entry for entry in _listeners[channel] if entry[0] != listener]


def add_remote_notifier(notifier: Callable[[str, str | None], None]) -> None:
    """Also tell other processes (e.g. PostgreSQL ``NOTIFY``) when :func:`notify` is called;
    ``notifier(channel, queue)``."""
    with _lock:
        if notifier not in _remote_notifiers:
            _remote_notifiers.append(notifier)


def notify_local(channel: str, queue: str | None = None) -> None:
    """Wake this process's listeners of ``channel`` (new work in ``queue``, when known)."""
    with _lock:
        listeners = list(_listeners[channel])
    for listener, queues in listeners:
        if queue is None or queues is None or queue in queues:
            listener()


def notify(channel: str, queue: str | None = None) -> None:
    """Wake the listeners of ``channel`` here and, where supported, in other processes (new
    work in ``queue``, when it is all in one queue)."""
    notify_local(channel, queue)
    for notifier in list(_remote_notifiers):
        notifier(channel, queue)


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
