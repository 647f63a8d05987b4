"""Concurrency limits under racing claimers: threads claim keyed rows at once (on PostgreSQL
each with its own connection, serialised per key by advisory locks) and finish them; at no
moment do more executions of a key run than its limit, and every row is claimed once."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from django_durable.models import Status, TaskExecution
from django_durable.state import derive_update
from django_durable.storage.base import UpdateByIdRequest

from .conformance import make_row
from .test_claim_race import STORAGES, in_threads, make_storage

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["django_durable"])

KEYS = {"k0": 1, "k1": 2, "k2": 3}
ROWS_PER_KEY = 20
THREADS = 6


def running_per_key() -> dict[str, int]:
    return dict(
        TaskExecution.objects.filter(status=Status.RUNNING)
        .order_by()
        .values_list("concurrency_key")
        .annotate(count=Count("id"))
    )


@pytest.mark.parametrize("kind", STORAGES)
def test_racing_keyed_claims_never_exceed_a_keys_limit(kind: str) -> None:
    past = timezone.now() - timedelta(seconds=10)
    rows = [
        make_row(past, timeout=60.0, concurrency_key=key, max_concurrency=limit)
        for key, limit in KEYS.items()
        for _ in range(ROWS_PER_KEY)
    ]
    TaskExecution.objects.bulk_create(rows)
    storage = make_storage(kind)
    over_limit: list[dict[str, int]] = []

    def claim_and_finish(index: int) -> list[str]:
        claimed: list[str] = []
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 0.5:
            now = timezone.now()
            batch = storage.update_by_status_and_start_at_less_than_within_concurrency_limits_and_return(  # noqa: E501
                status=Status.READY,
                start_at_less_than=now,
                update=derive_update(now, {"status": Status.RUNNING, "executor_id": f"de_{index}"}),
                update_expires_at_with_started_at=now,
                limit=4,
            )
            counts = running_per_key()
            if any(counts.get(key, 0) > limit for key, limit in KEYS.items()):
                over_limit.append(counts)
            if not batch:
                time.sleep(0.005)
                continue
            idle_since = time.monotonic()
            claimed += [row.execution_id for row in batch]
            time.sleep(0.002)  # "run" them
            done = derive_update(timezone.now(), {"status": Status.COMPLETED})
            storage.update_many_by_id([UpdateByIdRequest(row.execution_id, done) for row in batch])
        return claimed

    results = in_threads(THREADS, claim_and_finish)
    assert not over_limit, over_limit[:3]
    counts = Counter(execution_id for ids in results for execution_id in ids)
    assert set(counts) == {row.execution_id for row in rows}
    assert set(counts.values()) == {1}
