"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_durable import Executor
from django_durable.notify import close_notifier
from django_durable.storage.default import reset_storage
from django_durable.testing import isolated_registry

pytest_plugins: list[str] = []


@pytest.fixture(autouse=True)
def _isolated_task_registry() -> Iterator[None]:
    with isolated_registry():
        yield


@pytest.fixture(scope="session", autouse=True)
def _release_durable_connections(django_db_setup: None) -> Iterator[None]:
    """Before the test database is dropped, no thread of ours may still hold a connection."""
    yield
    reset_storage()
    close_notifier()


@pytest.fixture(autouse=True)
def _fresh_storage_layer() -> Iterator[None]:
    """Each test starts and ends without the process-wide storage threads (and connections)."""
    yield
    reset_storage()
    close_notifier()


@pytest.fixture
def make_executor(transactional_db: None) -> Iterator:
    """Start executors (fast polling); all are shut down after the test."""
    executors: list[Executor] = []

    def make(**overrides: object) -> Executor:
        overrides.setdefault("poll_interval", 0.05)
        executor = Executor(**overrides)  # type: ignore[arg-type]
        executors.append(executor)
        executor.start()
        return executor

    yield make
    for executor in executors:
        executor.shutdown()


@pytest.fixture
def executor(make_executor) -> Executor:
    return make_executor()
