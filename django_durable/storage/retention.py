"""Purging old executions: whole closed trees, never a part of a tree still in use."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q

from ..models import CloseStatus, TaskExecution


def purge_closed(now: datetime, older_than: float, *, limit: int = 500) -> int:
    """Delete up to ``limit`` top-level executions closed more than ``older_than`` seconds
    ago, with all their descendants; return the number of rows deleted.

    A tree is deleted only when its root is closed: descendants always finish (and close)
    before their root does.
    """
    cutoff = now - timedelta(seconds=older_than)
    with transaction.atomic():
        roots = list(
            TaskExecution.objects.filter(
                close_status=CloseStatus.CLOSED,
                closed_at__lt=cutoff,
                parent_execution_id__isnull=True,
            )
            .order_by("closed_at")
            .values_list("execution_id", flat=True)[:limit]
        )
        if not roots:
            return 0
        deleted, _ = TaskExecution.objects.filter(
            Q(execution_id__in=roots) | Q(root_execution_id__in=roots)
        ).delete()
    return deleted
