"""The engine inside a Celery worker process: one :class:`CeleryExecutor` per process.

It is an :class:`~django_durable.executor.executor.Executor` that never claims on its own: each
Celery task hands it one execution id, it claims that row and runs it with the same code as
``durable_worker`` (timeouts, retries, children, recording), and the task returns once the
attempt's end is recorded. Its background loops are only the cancellation of its running
attempts and the close sweeper (both woken by events); the other sweepers run from beat.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from typing import Any

from django.utils import timezone

from ... import wakeups
from ...executor.executor import Executor
from ...executor.loops import BackgroundLoop
from ...models import Status
from .dispatch import publish_many

logger = logging.getLogger("django_durable.celery")

__all__ = ["CeleryExecutor", "get_executor", "shutdown_executor"]

#: Fallback period of the close loop of a Celery worker process, which events wake at once
#: (the beat sweep closes what they miss).
CLOSE_POLL_INTERVAL = 5.0
#: Seconds before an execution whose concurrency key is at its limit is offered again.
CONCURRENCY_RETRY_DELAY = 1.0


class CeleryExecutor(Executor):
    """An executor that runs the executions that Celery tasks hand it, one call each."""

    def __init__(self, **overrides: Any) -> None:
        super().__init__(claim=False, sweepers=False, **overrides)
        self._stopped = threading.Event()

    def shutdown(self) -> None:
        """Stop as ``Executor.shutdown`` does; tasks waiting for handed-back attempts return
        once the hand-back is written."""
        try:
            super().shutdown()
        finally:
            self._stopped.set()

    def start(self) -> None:
        """Start the pools and the cancel and close loops; idempotent."""
        if self._started or self._shut_down:
            return
        super().start()
        interval = self.config.poll_interval
        cancel = BackgroundLoop("cancel", self._cancel_iteration, interval)
        close = BackgroundLoop(
            "close", self._close_iteration, max(interval, min(CLOSE_POLL_INTERVAL, 60.0))
        )
        listen = [(wakeups.CANCEL, cancel.wake), (wakeups.CLOSE, close.wake)]
        for channel, listener in listen:
            wakeups.add_listener(channel, listener)
        self._listeners = [*self._listeners, *listen]
        self._loops += [cancel, close]
        cancel.start()
        close.start()

    def run_execution(self, execution_id: str) -> str:
        """Claim ``execution_id`` and run it; return once its attempt's end is recorded.

        Returns what happened: ``"ran"``; ``"deferred"`` (not due yet: published again with
        the rest of its countdown); ``"skipped"`` (not ``ready``: running elsewhere, finished,
        cancelled, or being claimed by another worker); ``"missing"`` (no such row); or
        ``"requeued"`` (this executor is stopping, or not started: published again).
        """
        now = timezone.now()
        if self._shut_down or not self._started:
            publish_many([(execution_id, now)])
            return "requeued"
        row = self.storage.claim_ready_by_id(
            now,
            execution_id,
            executor_id=self.id,
            expires_at_base=now + timedelta(seconds=self.config.expire_leeway),
        )
        if row is None:
            return self._not_claimed(execution_id, now)
        logger.debug("executor=%s event=claimed execution=%s", self.id, execution_id)
        attempt = self._start_attempt(row)
        if attempt is None:
            return "ran"
        # ``_forget`` removes the attempt once its end is recorded (or it was handed back or
        # cancelled) and notifies ``_idle``.
        with self._idle:
            while self._running.get(execution_id) is attempt:
                self._idle.wait()
        if self.shutdown_signal.is_set():
            # Handed back at shutdown: the attempt left the map before the row was written
            # back; the process must not exit in between.
            self._stopped.wait(self.config.shutdown_timeout + 60)
        return "ran"

    def _not_claimed(self, execution_id: str, now: Any) -> str:
        row = self.storage.get_by_id(execution_id)
        if row is None:
            return "missing"
        if row.status == Status.READY and row.start_at >= now:
            publish_many([(execution_id, row.start_at)])
            return "deferred"
        if row.status == Status.READY and row.concurrency_key is not None:
            # Its key is at its limit (or another worker is claiming it): try again shortly.
            publish_many([(execution_id, now + timedelta(seconds=CONCURRENCY_RETRY_DELAY))])
            return "deferred"
        return "skipped"


_lock = threading.Lock()
_executor: CeleryExecutor | None = None
_pid: int | None = None


def get_executor() -> CeleryExecutor:
    """This process's executor, created and started on first use (and again after a fork)."""
    global _executor, _pid
    executor = _executor
    if executor is not None and _pid == os.getpid():
        return executor
    with _lock:
        if _executor is None or _pid != os.getpid():
            # Published only once started: other threads take it without the lock.
            started = CeleryExecutor()
            started.start()
            _executor, _pid = started, os.getpid()
        return _executor


def shutdown_executor() -> None:
    """Stop this process's executor (``SHUTDOWN_TIMEOUT`` for running attempts, then hand
    back the rest, which are published again); a no-op when there is none.

    The stopped executor stays this process's: tasks that still arrive publish their id again
    instead of claiming it.
    """
    with _lock:
        executor = _executor if _pid == os.getpid() else None
    if executor is not None:
        executor.shutdown()
