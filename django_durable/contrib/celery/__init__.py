"""Celery as the distributed runner of durable executions (``DURABLE["DISPATCH"] = "celery"``).

The database stays the source of truth: every execution that becomes ``ready`` is published to
Celery (its id, on commit, with a countdown until its start time), and the Celery task
:data:`~django_durable.contrib.celery.tasks.run_execution` claims exactly that row (``ready``,
due, not locked) before running it with the engine of ``durable_worker``. A message for a row
that is not ready any more is dropped; one that came early is published again. The sweepers and
a re-dispatcher of ready rows whose message was lost run as Celery beat entries
(:func:`beat_schedule`). See ``docs/celery.md``.
"""

from .schedule import REDISPATCH_TASK, RUN_TASK, SWEEP_TASK, beat_schedule

__all__ = ["REDISPATCH_TASK", "RUN_TASK", "SWEEP_TASK", "beat_schedule"]
