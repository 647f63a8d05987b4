"""Fixtures of the API tests: clients for staff, plain users and anonymous callers, and rows in
any state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from django_durable.models import FINISHED_STATUSES, TaskExecution


@pytest.fixture
def staff_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("staff", is_staff=True)


@pytest.fixture
def plain_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("plain")


@pytest.fixture
def staff_client(staff_user: Any) -> Client:
    client = Client()
    client.force_login(staff_user)
    return client


@pytest.fixture
def user_client(plain_user: Any) -> Client:
    client = Client()
    client.force_login(plain_user)
    return client


@pytest.fixture
def anon_client() -> Client:
    return Client()


@pytest.fixture
def set_state() -> Callable[..., TaskExecution]:
    """Put an execution in any state by writing its row (for states hard to reach for real)."""

    def set_state(execution_id: str, status: str, **fields: Any) -> TaskExecution:
        now = timezone.now()
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if status in FINISHED_STATUSES:
            values.setdefault("is_finished", True)
            values.setdefault("finished_at", now)
            if status != "completed":
                values.setdefault(
                    "error",
                    {
                        "error_type": "generic",
                        "message": f"made {status}",
                        "is_retryable": False,
                        "is_internal": False,
                    },
                )
        values.update(fields)
        TaskExecution.objects.filter(execution_id=execution_id).update(**values)
        return TaskExecution.objects.get(execution_id=execution_id)

    return set_state
