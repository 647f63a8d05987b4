"""The dispatch hooks: nothing at all (not one query) unless ``DISPATCH`` is ``"celery"``."""

from __future__ import annotations

import pytest
from django.utils import timezone

from django_durable import dispatch
from django_durable.models import Status
from tests.storage.conformance import make_row


@pytest.mark.django_db
def test_hooks_are_free_with_the_worker_dispatch(django_assert_num_queries) -> None:
    row = make_row(timezone.now())
    assert row.status == Status.READY
    with django_assert_num_queries(0):
        dispatch.ready([(row.execution_id, row.start_at)])
        dispatch.rows_ready([row])
        dispatch.requeued_at(timezone.now())
