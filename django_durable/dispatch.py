"""Dispatch hooks: tell an external runner (Celery) which executions became ready.

The engine calls :func:`rows_ready` (new rows, retries, rows handed back) and
:func:`requeued_at` (bulk recoveries that set ``start_at`` to one timestamp) wherever an
execution becomes ``ready``. With ``DURABLE["DISPATCH"] == "worker"`` (the default) both return
at once: ``durable_worker`` processes find ready rows by claiming, and nothing is published.
With ``"celery"`` the ids are published to Celery once the caller's transaction commits (see
:mod:`django_durable.contrib.celery`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction

from .conf import durable_settings

if TYPE_CHECKING:
    from .models import TaskExecution

__all__ = ["ready", "requeued_at", "rows_ready"]


def _enabled() -> bool:
    return durable_settings.DISPATCH == "celery"


def ready(pairs: Iterable[tuple[str, datetime]]) -> None:
    """Publish ``(execution_id, start_at)`` pairs of ``ready`` rows, on commit."""
    if not _enabled():
        return
    items = list(pairs)
    if not items:
        return
    from .contrib.celery.dispatch import publish_many

    transaction.on_commit(lambda: publish_many(items))


def rows_ready(rows: Iterable[TaskExecution]) -> None:
    """Publish the ``ready`` rows among ``rows`` (others, e.g. sleeping tasks, are skipped)."""
    if not _enabled():
        return
    ready(
        (row.execution_id, row.start_at)
        for row in rows
        if row.status == "ready" and not row.is_sleeping_task
    )


def requeued_at(start_at: datetime) -> None:
    """Publish the rows that a bulk recovery made ``ready`` with ``start_at = start_at``.

    Expiry and the recovery of silent workers update many rows and return only a count; the
    rows they made ready are found again by their exact new start time (one query, only when
    dispatching to Celery).
    """
    if not _enabled():
        return
    from .contrib.celery.dispatch import publish_requeued

    transaction.on_commit(lambda: publish_requeued(start_at))
