"""Publishing execution ids to Celery: on commit, when due, and again when a message was lost.

A publish that fails (the broker is down) is logged and dropped: the row stays ``ready`` in the
database and the re-dispatcher publishes it again once it has waited ``CELERY_REDISPATCH_AFTER``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.utils import timezone

from ...models import Status, TaskExecution

logger = logging.getLogger("django_durable.celery")

__all__ = ["MAX_COUNTDOWN", "countdown", "publish_many", "publish_requeued", "redispatch_stale"]

#: Longest countdown given to a message, in seconds. A row due later is published with this
#: countdown and, when the message arrives early, published again with the rest: a broker never
#: holds a message (e.g. Redis's unacked ETA messages) for longer than this.
MAX_COUNTDOWN = 600.0


def countdown(start_at: datetime, now: datetime) -> float:
    """Seconds until ``start_at`` (0 when due), capped at :data:`MAX_COUNTDOWN`."""
    return min(MAX_COUNTDOWN, max(0.0, (start_at - now).total_seconds()))


def publish_many(items: Iterable[tuple[str, datetime]]) -> int:
    """Publish ``(execution_id, start_at)`` pairs to the run task; return how many went out."""
    from .tasks import run_execution

    items = list(items)
    if not items:
        return 0
    now = timezone.now()
    sent = 0
    try:
        with run_execution.app.producer_or_acquire() as producer:
            for execution_id, start_at in items:
                delay = countdown(start_at, now)
                run_execution.apply_async(
                    (execution_id,), countdown=delay if delay > 0 else None, producer=producer
                )
                sent += 1
    except Exception:
        logger.exception(
            "event=publish_failed count=%d: the re-dispatcher will publish them again",
            len(items) - sent,
        )
    return sent


def publish_requeued(start_at: datetime) -> int:
    """Publish the rows that a bulk recovery made ``ready`` with exactly this ``start_at``."""
    rows = TaskExecution.objects.filter(
        status=Status.READY, start_at=start_at, is_sleeping_task=False
    ).values_list("execution_id", "start_at")
    return publish_many(rows)


def redispatch_stale(now: datetime, after: float, limit: int) -> int:
    """Publish again up to ``limit`` ``ready`` rows that have been due for more than ``after``
    seconds: their message was lost (or is stuck behind a long backlog, in which case the claim
    makes the duplicate harmless)."""
    rows = list(
        TaskExecution.objects.filter(
            status=Status.READY,
            is_sleeping_task=False,
            start_at__lt=now - timedelta(seconds=after),
        )
        .order_by("start_at", "id")
        .values_list("execution_id", "start_at")[:limit]
    )
    if rows:
        logger.warning("event=redispatched count=%d", len(rows))
    return publish_many(rows)
