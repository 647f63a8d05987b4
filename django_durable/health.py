"""Health of the engine: the database answers, workers beat, ready work does not wait long.

Shared by ``manage.py durable_health`` and ``GET health/``; each figure is one bounded query.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from typing import Any

from django.db import DatabaseError, connections
from django.db.models import Min
from django.utils import timezone

from .conf import durable_settings
from .models import Status, TaskExecution, Worker

__all__ = ["HealthReport", "check_health", "database_ping", "live_worker_count", "oldest_ready_age"]


def database_ping(using: str = "default") -> None:
    """Run ``SELECT 1``; raises the database's error when it cannot be reached."""
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def live_worker_count(now: datetime.datetime) -> int:
    """Worker processes that beat within the last three heartbeat intervals and did not stop."""
    silent_before = now - datetime.timedelta(seconds=3 * durable_settings.HEARTBEAT_INTERVAL)
    return Worker.objects.filter(
        stopped_at__isnull=True, last_heartbeat_at__gte=silent_before
    ).count()


def oldest_ready_age(now: datetime.datetime) -> float | None:
    """Seconds since the oldest ready execution became due; ``None`` when none is due."""
    oldest = (
        TaskExecution.objects.filter(status=Status.READY, start_at__lte=now)
        .order_by()
        .aggregate(oldest=Min("start_at"))["oldest"]
    )
    return None if oldest is None else max(0.0, (now - oldest).total_seconds())


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What a health check found. ``healthy``: the database answers and a worker is alive."""

    database: str  # "ok" or "unavailable"
    live_workers: int | None
    oldest_ready_age_seconds: float | None
    error: str | None = None

    @property
    def database_ok(self) -> bool:
        return self.database == "ok"

    @property
    def healthy(self) -> bool:
        return self.database_ok and bool(self.live_workers)

    def problems(self) -> list[str]:
        """What is wrong, in words (empty when healthy)."""
        if not self.database_ok:
            return [f"the database is unreachable: {self.error}"]
        if not self.live_workers:
            return ["no worker is alive (none beat within 3 heartbeat intervals)"]
        return []

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy, "problems": self.problems()}


def check_health(now: datetime.datetime | None = None, using: str = "default") -> HealthReport:
    """Ping the database, count live workers and measure the oldest ready execution's wait."""
    now = now or timezone.now()
    try:
        database_ping(using)
        return HealthReport("ok", live_worker_count(now), oldest_ready_age(now))
    except DatabaseError as error:
        return HealthReport(
            "unavailable", None, None, error=str(error).strip() or type(error).__name__
        )
