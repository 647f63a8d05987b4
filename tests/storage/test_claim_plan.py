"""The claim of ready work is one indexed statement on PostgreSQL (its ``EXPLAIN`` plan)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_durable.models import Status, TaskExecution
from django_durable.state import derive_update
from django_durable.storage.postgres import PostgresStorage

from .conformance import make_row

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")


def _captured_claim_sql(queues: list[str] | None) -> tuple[str, Any]:
    statements: list[tuple[str, Any]] = []

    def capture(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append((sql, params))
        return execute(sql, params, many, context)

    now = timezone.now()
    with connection.execute_wrapper(capture):
        PostgresStorage().update_by_status_and_start_at_less_than_and_return(
            status=Status.READY,
            start_at_less_than=now - timedelta(days=365),  # claims nothing: only the plan matters
            update=derive_update(now, {"status": Status.RUNNING, "executor_id": "de_plan"}),
            update_expires_at_with_started_at=now,
            limit=100,
            queues=queues,
        )
    [(sql, params)] = [s for s in statements if "FOR UPDATE SKIP LOCKED" in s[0]]
    return sql, params


@pytest.mark.django_db
def test_the_claim_reads_ready_rows_through_the_partial_ready_index():
    now = timezone.now()
    # A table like production's: mostly finished rows, few ready ones.
    finished = [make_row(now, status=Status.COMPLETED, is_finished=True) for _ in range(3000)]
    ready = [make_row(now, queue=("default", "emails", "other")[i % 3]) for i in range(30)]
    TaskExecution.objects.bulk_create(finished + ready)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TaskExecution._meta.db_table}")
        for queues in (["default", "emails"], None):
            sql, params = _captured_claim_sql(queues)
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            print(f"\nEXPLAIN of the claim (queues={queues}):\n{plan}")
            assert "durable_ready_idx" in plan, plan
            assert "Seq Scan" not in plan, plan
            assert "LockRows" in plan, plan
