"""Wake-ups across processes on PostgreSQL: what an enqueue sends other workers."""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from django_durable import task
from django_durable.models import TaskExecution
from django_durable.notify import CHANNEL, announce_channel, parse_payload, wakeup_payload

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only"),
    pytest.mark.django_db(transaction=True, available_apps=["django_durable"]),
]


@pytest.fixture
def listener() -> Any:
    """Another connection that ``LISTEN``s like a worker process."""
    params = dict(connection.get_connection_params())
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    with psycopg.connect(autocommit=True, **params) as other:
        other.execute(f"LISTEN {CHANNEL}")
        yield other


def _received(listener: Any, seconds: float) -> list[str]:
    payloads: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for notification in listener.notifies(timeout=left, stop_after=1):
            payloads.append(notification.payload)
    return payloads


@task
def wake_me(value: int) -> int:
    return value


def test_an_enqueue_carries_its_own_wake_up_for_other_processes(listener):
    assert announce_channel() == CHANNEL
    statements: list[str] = []

    def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        handle = wake_me.enqueue(1)
    # One round trip: the insert itself sends the NOTIFY, delivered with the committed row.
    assert len(statements) == 1 and "pg_notify" in statements[0]
    # It names the queue: workers of other queues are not woken.
    assert _received(listener, 0.5) == [f"ready:{os.getpid()}:default"]
    assert TaskExecution.objects.filter(execution_id=handle.execution_id).exists()


def test_a_rolled_back_enqueue_wakes_nobody(listener):
    with pytest.raises(RuntimeError), transaction.atomic():
        wake_me.enqueue(1)
        raise RuntimeError("rolled back")
    assert _received(listener, 0.3) == []
    assert not TaskExecution.objects.exists()


def test_an_enqueue_inside_a_transaction_wakes_other_processes_on_commit(listener):
    with transaction.atomic():
        wake_me.enqueue(1)
        assert _received(listener, 0.2) == []
    # The insert's own NOTIFY, delivered by the commit (no second transaction).
    assert _received(listener, 1.0) == [wakeup_payload("ready", "default")]


def test_payloads_name_the_sender_and_the_queue_when_there_is_one():
    assert parse_payload(wakeup_payload("ready")) == ("ready", str(os.getpid()), None)
    assert parse_payload(wakeup_payload("ready", "a:b")) == ("ready", str(os.getpid()), "a:b")


def test_wake_ups_raised_by_workers_name_their_queue(listener):
    from django_durable import wakeups

    wakeups.notify(wakeups.READY, "emails")  # e.g. a retry's backoff, a child spawned
    assert _received(listener, 1.0) == [wakeup_payload("ready", "emails")]


def test_a_burst_of_wake_ups_is_one_per_queue_or_one_for_all():
    from django_durable.notify import _coalesce

    assert _coalesce({("ready", "a"), ("ready", "b"), ("close", None)}) == [
        ("close", None),
        ("ready", "a"),
        ("ready", "b"),
    ]
    assert _coalesce({("ready", "a"), ("ready", None)}) == [("ready", None)]
