"""The Celery tasks: run one execution, sweep, re-dispatch; and the worker's shutdown hooks.

Add this module to the Celery app's imports (``app.autodiscover_tasks(["django_durable.
contrib.celery"])`` or ``include=[...]``) so that workers register the tasks.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import shared_task, signals
from django.db import close_old_connections
from django.utils import timezone

from ...conf import durable_settings
from ...executor.executor import Executor
from .dispatch import redispatch_stale
from .executor import get_executor, shutdown_executor
from .schedule import REDISPATCH_TASK, RUN_TASK, SWEEP_TASK

logger = logging.getLogger("django_durable.celery")

__all__ = ["redispatch", "run_execution", "sweep"]


@shared_task(name=RUN_TASK, acks_late=True, ignore_result=True)
def run_execution(execution_id: str) -> str:
    """Claim the execution ``execution_id`` and run it in this worker process.

    Blocks until the attempt's end is recorded, so the message is acknowledged (``acks_late``)
    only then. The claim is the guard against running an execution twice at once: a duplicate
    or stale message finds the row not ``ready`` and is dropped.
    """
    return get_executor().run_execution(execution_id)


@shared_task(name=SWEEP_TASK, ignore_result=True)
def sweep() -> dict[str, int]:
    """Run every sweeper until it finds nothing more (what ``durable_sweep --once`` does).

    Expired executions of crashed workers become ``ready`` here and are published again.
    """
    try:
        return Executor(claim=False).sweep_once()
    finally:
        close_old_connections()


@shared_task(name=REDISPATCH_TASK, ignore_result=True)
def redispatch() -> int:
    """Publish again the ``ready`` executions that have been due for longer than
    ``DURABLE["CELERY_REDISPATCH_AFTER"]`` (their message was lost)."""
    try:
        return redispatch_stale(
            timezone.now(),
            durable_settings.CELERY_REDISPATCH_AFTER,
            durable_settings.SWEEP_BATCH_SIZE,
        )
    finally:
        close_old_connections()


@signals.worker_shutting_down.connect
def _on_worker_shutting_down(**kwargs: Any) -> None:
    # A warm shutdown waits for running tasks, which wait for their attempts: stopping the
    # executor now gives them SHUTDOWN_TIMEOUT, then hands the rest back (published again).
    threading.Thread(target=shutdown_executor, name="durable-celery-shutdown", daemon=True).start()


@signals.worker_process_shutdown.connect
def _on_worker_process_shutdown(**kwargs: Any) -> None:
    shutdown_executor()
