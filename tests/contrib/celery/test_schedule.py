"""The beat entries of the sweepers and the re-dispatcher."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_durable.contrib.celery import REDISPATCH_TASK, SWEEP_TASK, beat_schedule


def test_default_entries() -> None:
    assert beat_schedule() == {
        "django-durable-sweep": {
            "task": SWEEP_TASK,
            "schedule": 1.0,
            "options": {"expires": 1.0},
        },
        "django-durable-redispatch": {
            "task": REDISPATCH_TASK,
            "schedule": 10.0,
            "options": {"expires": 10.0},
        },
    }


def test_periods_and_prefix() -> None:
    schedule = beat_schedule(
        sweep_every=timedelta(seconds=2), redispatch_every=30, prefix="durable"
    )
    assert schedule["durable-sweep"]["schedule"] == 2.0
    assert schedule["durable-redispatch"]["schedule"] == 30.0


@pytest.mark.parametrize("value", [0, -1, float("nan"), "5", True, None])
def test_invalid_period_is_a_clear_error(value: object) -> None:
    with pytest.raises(ValueError, match=r"sweep_every=.*expected a number of seconds"):
        beat_schedule(sweep_every=value)  # type: ignore[arg-type]


def test_tasks_are_registered_under_these_names() -> None:
    from tests.celery_app import app

    app.loader.import_default_modules()
    assert {SWEEP_TASK, REDISPATCH_TASK, "django_durable.run_execution"} <= set(app.tasks)
