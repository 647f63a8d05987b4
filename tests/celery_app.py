"""The Celery app of the test suite (``celery -A tests.celery_app worker``, and the publisher
of the pytest process): broker from ``CELERY_BROKER_URL``, beat entries with short periods."""

from __future__ import annotations

import os

from celery import Celery

from django_durable.contrib.celery import beat_schedule

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

app = Celery("django_durable_tests")
app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    # The workflows of tests/contrib/celery are imported by the workers (the pytest process
    # imports them with the test modules).
    imports=["django_durable.contrib.celery.tasks", "tests.contrib.celery.workflows"],
    beat_schedule=beat_schedule(sweep_every=0.5, redispatch_every=0.5),
)
