"""A worker process: one executor plus the sweepers, heartbeats and a graceful stop.

``manage.py durable_worker`` is a thin shell around :class:`Worker`. On SIGTERM or SIGINT the
worker stops claiming, lets running attempts finish for ``SHUTDOWN_TIMEOUT`` seconds, hands
back what is still running (``ready``, for another worker) and exits 0. A second signal skips
the grace period.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from django.db import close_old_connections, connections
from django.utils import timezone

from .. import wakeups
from ..conf import durable_settings
from ..storage import workers as worker_registry
from .executor import Executor

logger = logging.getLogger("django_durable.worker")

#: GIL switch interval of a worker process (Python's default is 5 ms).
SWITCH_INTERVAL = 0.0005


class Worker:
    """Runs an :class:`Executor` until stopped; the body of ``durable_worker``."""

    def __init__(
        self,
        *,
        concurrency: int | None = None,
        queues: Sequence[str] | None = None,
        sweepers: bool = True,
        executor_id: str | None = None,
        shutdown_timeout: float | None = None,
        **overrides: Any,
    ) -> None:
        if concurrency is not None:
            overrides["max_concurrent_executions"] = concurrency
        if shutdown_timeout is not None:
            overrides["shutdown_timeout"] = shutdown_timeout
        self.executor = Executor(
            queues=list(queues) if queues else None,
            executor_id=executor_id,
            sweepers=sweepers,
            **overrides,
        )
        self.sweepers = sweepers
        self._stop = threading.Event()
        self._signals = 0

    @property
    def id(self) -> str:
        return self.executor.id

    def stop(self) -> None:
        """Ask the worker to stop gracefully (what SIGTERM does)."""
        self._stop.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            logger.info("worker=%s event=stopping signal=%s", self.id, name)
        else:
            logger.warning("worker=%s event=forced_stop signal=%s", self.id, name)
            self.executor.expedite_shutdown()
        self._stop.set()

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def run(self) -> int:
        """Run until stopped; return the process exit code (0 on a graceful stop)."""
        if threading.current_thread() is threading.main_thread():
            self.install_signal_handlers()
        # The worker's threads hand work to each other constantly (claim, run, batch, record);
        # a shorter GIL switch interval keeps each hand-off from waiting up to 5 ms.
        sys.setswitchinterval(SWITCH_INTERVAL)
        interval = durable_settings.HEARTBEAT_INTERVAL
        config = self.executor.config
        worker_registry.register_worker(
            self.id,
            queues=self.executor.queues,
            concurrency=config.max_concurrent_executions,
            now=timezone.now(),
        )
        self.executor.start()
        logger.info(
            "worker=%s event=started concurrency=%d queues=%s sweepers=%s",
            self.id,
            config.max_concurrent_executions,
            ",".join(self.executor.queues or ["*"]),
            self.sweepers,
        )
        heartbeat = Heartbeat(self.id, interval)
        heartbeat.start()
        try:
            while not self._stop.wait(interval):
                if self.sweepers:
                    self._recover_silent_workers(interval)
        finally:
            heartbeat.stop()
            self.executor.shutdown()
            try:
                worker_registry.mark_stopped(self.id, timezone.now())
            except Exception:
                logger.exception("worker=%s event=deregister_failed", self.id)
            close_old_connections()
            logger.info("worker=%s event=stopped", self.id)
        return 0

    def _recover_silent_workers(self, interval: float) -> None:
        try:
            now = timezone.now()
            recovered = worker_registry.recover_silent_workers(now, interval)
            worker_registry.forget_stopped_workers(now)
            if recovered:
                logger.warning(
                    "worker=%s event=recovered executions=%d reason=silent_worker",
                    self.id,
                    recovered,
                )
                wakeups.notify(wakeups.READY)
                from .. import dispatch

                dispatch.requeued_at(now)
        except Exception as error:
            logger.warning("worker=%s event=recovery_failed error=%s", self.id, error)
        finally:
            close_old_connections()


class Heartbeat:
    """Records every ``interval`` seconds that the worker is alive, on a daemon thread of its
    own: neither the recovery of other workers nor anything else delays a beat."""

    def __init__(self, worker_id: str, interval: float) -> None:
        self.worker_id = worker_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"durable-heartbeat-{worker_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.interval + 5)

    def _run(self) -> None:
        due = time.monotonic() + self.interval
        try:
            while not self._stop.wait(max(0.0, due - time.monotonic())):
                started = time.monotonic()
                late = started - due
                if late > self.interval:
                    logger.warning(
                        "worker=%s event=heartbeat_late seconds=%.1f", self.worker_id, late
                    )
                try:
                    worker_registry.beat(self.worker_id, timezone.now())
                except Exception as error:
                    logger.warning(
                        "worker=%s event=heartbeat_failed error=%s", self.worker_id, error
                    )
                finally:
                    close_old_connections()
                due = started + self.interval
        finally:
            connections.close_all()
