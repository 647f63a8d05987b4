"""Schedules: cron expressions that enqueue a task at each tick, exactly once per tick.

A schedule comes from a task (``@task(schedule="*/5 * * * *")``, named after the task id) or
from ``DURABLE["SCHEDULES"]`` (``{"name": {"task": "app.task_id", "schedule": "0 3 * * *",
"input": ..., "queue": ..., "priority": ...}}``). The sweepers call :func:`enqueue_due` and
enqueue, for each schedule, its latest tick that is due, with the idempotency key
``schedule:<name>:<tick>``: however many workers run it, the unique constraint on
``(task_id, idempotency_key)`` lets one execution in per tick. Ticks missed while no worker ran
are not caught up one by one: only the latest is enqueued.

Expressions have 5 fields (minute hour day month weekday) or 6 (a sixth for seconds, as
croniter reads it) and are evaluated in Django's ``TIME_ZONE``. ``croniter`` must be installed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from .conf import durable_settings
from .errors import DurableExecutionError

logger = logging.getLogger(__name__)

__all__ = [
    "Schedule",
    "ScheduleError",
    "all_schedules",
    "enqueue_due",
    "latest_tick",
    "next_tick",
    "schedules_of_task",
    "validate_cron",
]

#: Options of a ``DURABLE["SCHEDULES"]`` entry.
SCHEDULE_OPTIONS = frozenset({"task", "schedule", "input", "queue", "priority"})
#: Longest schedule name (the idempotency key holds it and the tick in 255 characters).
MAX_NAME_LENGTH = 200


class ScheduleError(DurableExecutionError, ImproperlyConfigured):
    """A schedule is misconfigured: a bad cron expression, an unknown task or option."""


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError as error:  # pragma: no cover - croniter is pinned for the tests
        raise ScheduleError(
            "Schedules need croniter: pip install 'django-durable[schedules]'"
        ) from error
    return croniter


def validate_cron(expression: Any, label: str) -> str:
    """``expression`` if it is a valid 5- or 6-field cron expression, else a
    :class:`ScheduleError`."""
    croniter = _croniter()
    if (
        not isinstance(expression, str)
        or len(expression.split()) not in (5, 6)
        or not croniter.is_valid(expression)
    ):
        raise ScheduleError(
            f"The {label} must be a cron expression of 5 fields (minute hour day month weekday) "
            f"or 6 (with seconds last), got {expression!r}"
        )
    return expression


def _local(moment: datetime) -> datetime:
    return timezone.localtime(moment, timezone.get_default_timezone())


def latest_tick(expression: str, now: datetime) -> datetime:
    """The latest tick of ``expression`` at or before ``now``."""
    # Ticks fall on whole seconds: the latest before the next whole second is the one sought.
    base = _local(now).replace(microsecond=0) + timedelta(seconds=1)
    tick: datetime = _croniter()(expression, base).get_prev(datetime)
    return tick


def next_tick(expression: str, now: datetime) -> datetime:
    """The first tick of ``expression`` after ``now``."""
    tick: datetime = _croniter()(expression, _local(now)).get_next(datetime)
    return tick


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron expression that enqueues ``task_id`` with ``input`` at each tick."""

    name: str
    task_id: str
    expression: str
    input: Any = None
    queue: str | None = None
    priority: int | None = None

    def idempotency_key(self, tick: datetime) -> str:
        """The key of this schedule's execution for ``tick`` (the same in every process)."""
        utc = tick.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"schedule:{self.name}:{utc}"

    def latest_tick(self, now: datetime) -> datetime:
        return latest_tick(self.expression, now)

    def next_run_at(self, now: datetime) -> datetime:
        return next_tick(self.expression, now)


def _from_settings(name: str, options: Mapping[str, Any]) -> Schedule:
    label = f'DURABLE["SCHEDULES"][{name!r}]'
    unknown = set(options) - SCHEDULE_OPTIONS
    if unknown:
        raise ScheduleError(
            f"{label} has unknown option(s) {', '.join(sorted(unknown))}; "
            f"expected {', '.join(sorted(SCHEDULE_OPTIONS))}"
        )
    task_id: Any = options.get("task")
    task_id = getattr(task_id, "id", task_id)  # a Task object, or its id
    if not isinstance(task_id, str) or not task_id:
        raise ScheduleError(f'{label} needs "task": the id of the task to enqueue')
    if len(name) > MAX_NAME_LENGTH:
        raise ScheduleError(f"{label}: a schedule name has at most {MAX_NAME_LENGTH} characters")
    return Schedule(
        name=name,
        task_id=task_id,
        expression=validate_cron(options.get("schedule"), f'"schedule" of {label}'),
        input=options.get("input"),
        queue=options.get("queue"),
        priority=options.get("priority"),
    )


def all_schedules() -> list[Schedule]:
    """Every schedule: those of registered tasks, then those of ``DURABLE["SCHEDULES"]``."""
    from .tasks import registry

    schedules = [
        Schedule(name=task.id, task_id=task.id, expression=task.schedule)
        for task in registry
        if task.schedule is not None
    ]
    schedules += [
        _from_settings(name, options) for name, options in durable_settings.SCHEDULES.items()
    ]
    return schedules


def schedules_of_task(task_id: str, schedules: Iterable[Schedule] | None = None) -> list[Schedule]:
    """The schedules that enqueue ``task_id``."""
    return [
        s for s in (all_schedules() if schedules is None else schedules) if s.task_id == task_id
    ]


@dataclass(frozen=True, slots=True)
class Enqueued:
    """A tick that :func:`enqueue_due` handed to :func:`~django_durable.handles.enqueue`."""

    schedule: Schedule
    tick: datetime
    execution_id: str


def enqueue_due(
    now: datetime,
    *,
    schedules: Iterable[Schedule] | None = None,
    seen: dict[str, datetime] | None = None,
) -> list[Enqueued]:
    """Enqueue the latest due tick of each schedule (once: the tick's idempotency key).

    ``seen`` (schedule name -> last tick handled) spares the database a lookup for a tick
    this process already handled. A schedule that fails (unknown task, invalid input) is
    logged and skipped; the others still run.
    """
    from .handles import enqueue

    done: list[Enqueued] = []
    for schedule in all_schedules() if schedules is None else schedules:
        try:
            tick = schedule.latest_tick(now)
            if seen is not None and seen.get(schedule.name) == tick:
                continue
            handle = enqueue(
                schedule.task_id,
                schedule.input,
                queue=schedule.queue,
                priority=schedule.priority,
                idempotency_key=schedule.idempotency_key(tick),
            )
        except DurableExecutionError as error:
            logger.error("schedule=%s event=enqueue_failed error=%s", schedule.name, error)
            continue
        if seen is not None:
            seen[schedule.name] = tick
        done.append(Enqueued(schedule, tick, handle.execution_id))
    return done


def seconds_until_next_tick(now: datetime, schedules: Iterable[Schedule]) -> float | None:
    """Seconds from ``now`` to the earliest next tick of ``schedules`` (``None``: none)."""
    ticks = [schedule.next_run_at(now) for schedule in schedules]
    if not ticks:
        return None
    return max(0.0, (min(ticks) - now).total_seconds())
