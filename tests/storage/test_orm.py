"""The conformance suite against the ORM storage (and its PostgreSQL subclass on PostgreSQL)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from django_durable.models import TaskExecution
from django_durable.storage.base import GetByIdRequest, UpdateByIdRequest
from django_durable.storage.orm import OrmStorage
from django_durable.storage.postgres import PostgresStorage

from .conformance import SECOND, StorageConformance, make_row


class TestOrmStorage(StorageConformance):
    @pytest.fixture
    def storage(self, db: None) -> OrmStorage:
        return OrmStorage()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")
class TestPostgresStorage(StorageConformance):
    @pytest.fixture
    def storage(self, db: None) -> PostgresStorage:
        return PostgresStorage()


@pytest.mark.django_db
def test_cleared_json_fields_are_sql_null_not_json_null() -> None:
    """``None`` in an update clears a JSON column (SQL ``NULL``), whichever write path sets it."""
    now = timezone.now()
    storage = OrmStorage()
    error = {"error_type": "generic", "message": "x", "is_retryable": True, "is_internal": False}
    rows = [make_row(now - SECOND, error=error, children=[], finalize={}) for _ in range(3)]
    storage.insert_many(rows)
    cleared = {"error": None, "children": None, "finalize": None, "updated_at": now}
    storage.update_many_by_id([UpdateByIdRequest(rows[0].execution_id, cleared)])
    storage.update_by_status_and_start_at_less_than_and_return(
        status="ready",
        start_at_less_than=now,
        update=cleared,
        update_expires_at_with_started_at=now,
        limit=2,
    )
    storage.update_by_close_status_and_return(close_status="idle", update=cleared, limit=3)
    for row in rows:
        stored = TaskExecution.objects.filter(
            execution_id=row.execution_id,
            error__isnull=True,
            children__isnull=True,
            finalize__isnull=True,
        )
        assert stored.exists(), row.execution_id


@pytest.mark.django_db
def test_delete_by_id_and_delete_all() -> None:
    storage = OrmStorage()
    rows = [make_row(), make_row(), make_row()]
    storage.insert_many(rows)
    storage.delete_by_id(rows[0].execution_id)
    assert storage.get_many_by_id([GetByIdRequest(r.execution_id) for r in rows])[0] is None
    assert TaskExecution.objects.count() == 2
    storage.delete_all()
    assert TaskExecution.objects.count() == 0
