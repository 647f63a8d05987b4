"""What the PostgreSQL storage's own statements write (the conformance suite covers the rest)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from django_durable.models import Status, TaskExecution
from django_durable.storage.postgres import _INSERT_FIELDS, PostgresStorage, _db_value

from .conformance import make_row

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only"),
    pytest.mark.django_db,
]


def _stored(row: TaskExecution) -> dict[str, object]:
    fresh = TaskExecution.objects.get(execution_id=row.execution_id)
    return {field.attname: getattr(fresh, field.attname) for field in _INSERT_FIELDS}


def _given(row: TaskExecution) -> dict[str, object]:
    return {field.attname: getattr(row, field.attname) for field in _INSERT_FIELDS}


def test_rows_that_differ_from_the_new_row_defaults_in_some_columns_are_stored_exactly():
    now = timezone.now()
    parent = make_row(now, status=Status.WAITING_FOR_CHILDREN, active_children_count=2)
    plain = make_row(now)
    unusual = make_row(
        now,
        parent=parent,
        queue="it's quoted",
        priority=-7,
        idempotency_key="key",
        concurrency_key="k",
        max_concurrency=3,
        error={"message": "x"},
        retry_attempts=2,
        sleep_before_run=1.5,
        needs_promise_cancellation=True,
    )
    sleeping = make_row(now, sleeping_task_unique_id="u-1", expires_at=now + timedelta(hours=1))
    storage = PostgresStorage()
    storage.insert_many([parent])
    # One statement for a mixed batch: every column that varies in any row is a parameter.
    storage.insert_many([plain, unusual, sleeping])
    storage.insert_many([make_row(now)])  # a second shape on the same connection
    for row in (parent, plain, unusual, sleeping):
        assert row.id is not None and not row._state.adding
        assert _stored(row) == _given(row)


def test_values_the_engine_does_not_write_itself_still_go_through_the_field():
    field = TaskExecution._meta.get_field("timeout")
    assert _db_value(field, 3, connection) == 3.0
    assert isinstance(_db_value(field, 3, connection), float)
    naive = datetime(2030, 1, 1, 12, 0)
    started = TaskExecution._meta.get_field("started_at")
    with pytest.warns(RuntimeWarning, match="naive datetime"):
        assert _db_value(started, naive, connection).tzinfo is not None
    assert _db_value(started, None, connection) is None
