"""The names of the Celery tasks and the beat entries that run the sweepers."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

__all__ = ["REDISPATCH_TASK", "RUN_TASK", "SWEEP_TASK", "beat_schedule"]

#: Runs one execution by id (published by the dispatcher).
RUN_TASK = "django_durable.run_execution"
#: Runs every sweeper once (children finished, close, expiry of crashed work, retention).
SWEEP_TASK = "django_durable.sweep"
#: Publishes again ready executions that waited longer than ``CELERY_REDISPATCH_AFTER``.
REDISPATCH_TASK = "django_durable.redispatch"


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"beat_schedule({name}={value!r}): expected a number of seconds "
            "(int, float or datetime.timedelta) > 0"
        )
    return float(value)


def beat_schedule(
    *,
    sweep_every: float | timedelta = 1.0,
    redispatch_every: float | timedelta = 10.0,
    prefix: str = "django-durable",
) -> dict[str, dict[str, Any]]:
    """Celery beat entries for the sweepers and the re-dispatcher, to merge into
    ``app.conf.beat_schedule``::

        app.conf.beat_schedule = {**app.conf.beat_schedule, **beat_schedule()}

    Each message expires after its own period, so a backlog never piles up sweeps.
    """
    entries = {
        "sweep": (SWEEP_TASK, sweep_every),
        "redispatch": (REDISPATCH_TASK, redispatch_every),
    }
    schedule: dict[str, dict[str, Any]] = {}
    for name, (task, every) in entries.items():
        seconds = _seconds(f"{name}_every", every)
        schedule[f"{prefix}-{name}"] = {
            "task": task,
            "schedule": seconds,
            "options": {"expires": seconds},
        }
    return schedule
