"""Queries on the worker registry: heartbeats, and recovery of a silent worker's executions."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import transaction

from ..errors import DurableExecutionError
from ..models import Status, TaskExecution, Worker
from ..state import derive_update


def register_worker(
    worker_id: str, *, queues: Sequence[str] | None, concurrency: int, now: datetime
) -> None:
    """Record a starting worker process."""
    Worker.objects.update_or_create(
        worker_id=worker_id,
        defaults={
            "hostname": socket.gethostname()[:255],
            "pid": os.getpid(),
            "queues": list(queues or []),
            "concurrency": concurrency,
            "started_at": now,
            "last_heartbeat_at": now,
            "stopped_at": None,
        },
    )


def beat(worker_id: str, now: datetime) -> None:
    """Record that the worker is alive."""
    Worker.objects.filter(worker_id=worker_id).update(last_heartbeat_at=now)


def mark_stopped(worker_id: str, now: datetime) -> None:
    Worker.objects.filter(worker_id=worker_id).update(stopped_at=now, last_heartbeat_at=now)


def live_workers(now: datetime, heartbeat_interval: float) -> list[Worker]:
    """Workers that beat within the last three intervals and did not stop."""
    return list(
        Worker.objects.filter(
            stopped_at__isnull=True,
            last_heartbeat_at__gte=now - timedelta(seconds=3 * heartbeat_interval),
        )
    )


def worker_state(worker: Worker, now: datetime, heartbeat_interval: float) -> str:
    """``"live"``, ``"stopped"`` or ``"silent"`` (no beat for three intervals)."""
    if worker.stopped_at is not None:
        return "stopped"
    silent_before = now - timedelta(seconds=3 * heartbeat_interval)
    return "live" if worker.last_heartbeat_at >= silent_before else "silent"


def workers_by_id(worker_ids: Sequence[str]) -> dict[str, Worker]:
    """The registry rows of these worker (executor) ids that exist."""
    return {w.worker_id: w for w in Worker.objects.filter(worker_id__in=set(worker_ids))}


def recover_silent_workers(now: datetime, heartbeat_interval: float, limit: int = 1000) -> int:
    """Hand the running executions of workers silent for three intervals back to ``ready``.

    Their executions would otherwise wait for their timeout plus the expiry leeway. The
    retry count is unchanged, as for expiry; the error says what happened.
    """
    silent_before = now - timedelta(seconds=3 * heartbeat_interval)
    silent = Worker.objects.filter(last_heartbeat_at__lt=silent_before).values("worker_id")
    with transaction.atomic():
        ids = list(
            TaskExecution.objects.filter(
                status=Status.RUNNING, is_sleeping_task=False, executor_id__in=silent
            )
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return 0
        error = DurableExecutionError("Task execution expired: its worker stopped responding")
        update = derive_update(
            now, {"status": Status.READY, "start_at": now, "error": dict(error.to_dict())}
        )
        return TaskExecution.objects.filter(id__in=ids, status=Status.RUNNING).update(**update)


def forget_stopped_workers(now: datetime, older_than: float = 7 * 86400) -> int:
    """Delete the rows of workers that stopped (or went silent) long ago."""
    deleted, _ = Worker.objects.filter(
        last_heartbeat_at__lt=now - timedelta(seconds=older_than)
    ).delete()
    return deleted


def release_orphans(
    executor_id: str, keep: set[str], *, started_before: datetime, now: datetime
) -> int:
    """Hand back rows claimed for ``executor_id`` that it does not run (``keep`` are the ones it
    runs): a claim whose reply was lost with the connection leaves such rows behind."""
    update = derive_update(now, {"status": Status.READY, "start_at": now})
    return (
        TaskExecution.objects.filter(
            status=Status.RUNNING,
            executor_id=executor_id,
            is_sleeping_task=False,
            started_at__lt=started_before,
        )
        .exclude(execution_id__in=keep)
        .update(**update)
    )
