"""Schedules: ticks, the idempotency key per tick, missed ticks, and misconfiguration.

The scheduling function takes ``now``: these tests move time by passing it, nothing is mocked.
The sweeper in real worker processes is tested in ``tests/commands/test_schedule_workers.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from django_durable import task
from django_durable.models import TaskExecution
from django_durable.schedules import (
    Schedule,
    ScheduleError,
    all_schedules,
    enqueue_due,
    latest_tick,
    next_tick,
    schedules_of_task,
)

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def test_latest_and_next_tick():
    assert latest_tick("*/5 * * * *", at(7, 30)) == at(5)
    assert latest_tick("*/5 * * * *", at(5)) == at(5)  # a tick is due at its own instant
    assert next_tick("*/5 * * * *", at(5)) == at(10)
    # Six fields: the sixth is seconds.
    assert latest_tick("* * * * * */2", at(0, 5.5)) == at(0, 4)
    assert next_tick("* * * * * */2", at(0, 4)) == at(0, 6)


@pytest.mark.django_db
def test_each_tick_is_enqueued_once_however_many_sweepers_try():
    @task(id="sched.job", schedule="*/5 * * * *")
    def job(ctx, input):
        return input

    first = enqueue_due(at(5, 1))
    # Another worker (its own memory of ticks) at the same moment, and later in the tick.
    second = enqueue_due(at(5, 1), seen={})
    third = enqueue_due(at(9, 59), seen={})
    assert [e.tick for e in first] == [at(5)]
    assert {e.execution_id for e in first + second + third} == {first[0].execution_id}
    row = TaskExecution.objects.get()
    assert (row.task_id, row.idempotency_key) == (
        "sched.job",
        "schedule:sched.job:2026-03-02T10:05:00Z",
    )


@pytest.mark.django_db
def test_a_process_skips_the_database_for_a_tick_it_handled():
    @task(id="sched.job", schedule="* * * * *")
    def job(ctx, input):
        return input

    seen: dict[str, datetime] = {}
    assert len(enqueue_due(at(1, 1), seen=seen)) == 1
    assert enqueue_due(at(1, 30), seen=seen) == []
    assert [e.tick for e in enqueue_due(at(2, 0), seen=seen)] == [at(2)]
    assert TaskExecution.objects.count() == 2


@pytest.mark.django_db
def test_ticks_missed_while_no_worker_ran_are_enqueued_once_not_once_per_minute():
    @task(id="sched.minutely", schedule="* * * * *")
    def minutely(ctx, input):
        return input

    enqueue_due(at(0, 10))
    # No worker from 10:00:10 to 10:07:30: seven ticks missed, the latest is enqueued once.
    enqueue_due(at(7, 30))
    enqueue_due(at(7, 45), seen={})
    keys = sorted(TaskExecution.objects.values_list("idempotency_key", flat=True))
    assert keys == [
        "schedule:sched.minutely:2026-03-02T10:00:00Z",
        "schedule:sched.minutely:2026-03-02T10:07:00Z",
    ]


@pytest.mark.django_db
def test_settings_schedules_enqueue_with_their_input_queue_and_priority():
    @task(id="sched.report")
    def report(ctx, input):
        return input

    schedules = {
        "nightly": {
            "task": "sched.report",
            "schedule": "0 3 * * *",
            "input": {"kind": "nightly"},
            "queue": "reports",
            "priority": 5,
        }
    }
    with override_settings(DURABLE={"SCHEDULES": schedules}):
        [schedule] = all_schedules()
        assert schedule == Schedule(
            "nightly", "sched.report", "0 3 * * *", {"kind": "nightly"}, "reports", 5
        )
        assert schedules_of_task("sched.report") == [schedule]
        assert schedule.next_run_at(at()) == datetime(2026, 3, 3, 3, 0, tzinfo=UTC)
        [enqueued] = enqueue_due(at())
    row = TaskExecution.objects.get(execution_id=enqueued.execution_id)
    assert (row.queue, row.priority, row.input) == ("reports", 5, '{"kind":"nightly"}')
    assert row.idempotency_key == "schedule:nightly:2026-03-02T03:00:00Z"


@pytest.mark.django_db
def test_a_schedule_of_an_unknown_task_is_skipped_and_the_others_run(caplog):
    @task(id="sched.ok", schedule="* * * * *")
    def ok(ctx, input):
        return input

    with override_settings(
        DURABLE={"SCHEDULES": {"ghost": {"task": "nope", "schedule": "* * * * *"}}}
    ):
        enqueued = enqueue_due(at(1))
    assert [e.schedule.name for e in enqueued] == ["sched.ok"]
    assert "schedule=ghost event=enqueue_failed" in caplog.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task": "a", "schedule": "every minute"}, "cron expression"),
        ({"task": "a", "schedule": "* * * *"}, "cron expression"),
        ({"schedule": "* * * * *"}, 'needs "task"'),
        ({"task": "a", "schedule": "* * * * *", "cron": "x"}, "unknown option"),
    ],
)
def test_bad_settings_schedules_are_clear_errors(options, message):
    with (
        override_settings(DURABLE={"SCHEDULES": {"s": options}}),
        pytest.raises(ScheduleError, match=message),
    ):
        all_schedules()


def test_a_bad_cron_expression_on_a_task_fails_at_definition():
    with pytest.raises(ScheduleError, match=r"schedule of task sched\.bad"):
        task(id="sched.bad", schedule="61 * * * *")(lambda ctx, input: None)
