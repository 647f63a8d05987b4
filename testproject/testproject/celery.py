"""The Celery app of the test project, configured from the Django settings (``CELERY_*``).

Run a worker and beat next to the web process (with ``DURABLE_DISPATCH=celery``)::

    celery -A testproject worker --pool=threads --concurrency=8 --loglevel=INFO
    celery -A testproject beat --loglevel=INFO
"""

from __future__ import annotations

import os

from celery import Celery

from django_durable.contrib.celery import beat_schedule

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")

app = Celery("testproject")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The project's own Celery tasks (``tasks.py`` of installed apps) and django-durable's.
app.autodiscover_tasks()
app.autodiscover_tasks(["django_durable.contrib.celery"])
app.conf.beat_schedule = {**(app.conf.beat_schedule or {}), **beat_schedule()}
