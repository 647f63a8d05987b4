"""Publishing to Celery: on commit of an enqueue, and again by the re-dispatcher when the
messages were lost (a real Redis; the re-dispatch test also runs a real worker with beat)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from django.db import connection, transaction
from django.utils import timezone

from django_durable.contrib.celery.dispatch import MAX_COUNTDOWN, countdown
from django_durable.models import Status, TaskExecution
from tests.commands.workers import wait_for
from tests.testapp.models import RunRecord
from tests.testapp.tasks import record

from .conftest import CeleryWorkers

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="Celery workers run on PostgreSQL only here"
)


def test_countdown_is_the_time_left_capped() -> None:
    now = timezone.now()
    assert countdown(now - timedelta(seconds=5), now) == 0.0
    assert countdown(now + timedelta(seconds=2.5), now) == 2.5
    assert countdown(now + timedelta(days=1), now) == MAX_COUNTDOWN


def _queued_ids(redis_url: str) -> list[str]:
    """The execution ids of the run messages waiting in Celery's default queue."""
    client = redis.Redis.from_url(redis_url)
    ids = []
    for raw in client.lrange("celery", 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "django_durable.run_execution"
        ids.append(message["headers"]["argsrepr"].strip("(),'"))
    return ids


@pytest.mark.django_db(transaction=True)
def test_enqueue_publishes_on_commit_only(celery_dispatch, redis_url: str) -> None:
    with transaction.atomic():
        handle = record.enqueue(1)
        assert _queued_ids(redis_url) == []
    assert _queued_ids(redis_url) == [handle.execution_id]

    with pytest.raises(RuntimeError), transaction.atomic():
        record.enqueue(2)
        raise RuntimeError("rolled back")
    assert _queued_ids(redis_url) == [handle.execution_id]


@postgres_only
@pytest.mark.slow
def test_lost_messages_are_redispatched(celery_workers: CeleryWorkers, redis_url: str) -> None:
    """Messages purged from the broker: the rows stay ready in the database, and the
    re-dispatcher (beat) publishes them again once they waited CELERY_REDISPATCH_AFTER."""
    handles = record.enqueue_many(list(range(5)))
    ids = [handle.execution_id for handle in handles]
    assert sorted(_queued_ids(redis_url)) == sorted(ids)
    assert celery_workers.workers == []
    assert celery_dispatch_purge(redis_url) == len(ids)

    celery_workers.start("a", beat=True, settings={"CELERY_REDISPATCH_AFTER": 1})
    wait_for(
        lambda: (
            TaskExecution.objects.filter(execution_id__in=ids, status=Status.COMPLETED).count()
            == len(ids)
        ),
        30,
        lambda: "the lost executions never ran\n" + celery_workers.tails(),
    )
    assert RunRecord.objects.filter(execution_id__in=ids).count() == len(ids)
    assert "event=redispatched" in celery_workers.workers[0].output()


def celery_dispatch_purge(redis_url: str) -> int:
    """Purge Celery's default queue (what a lost broker or a ``celery purge`` does)."""
    from tests.celery_app import app

    with app.connection_for_write() as conn:
        return int(app.control.purge(connection=conn))
