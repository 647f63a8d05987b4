"""Fixtures of the ``durable_worker`` process tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .workers import WorkerProcesses


@pytest.fixture
def worker_processes(transactional_db: None, tmp_path: Path) -> Iterator[WorkerProcesses]:
    """Start ``durable_worker`` subprocesses on the test database; all are killed at teardown.

    Depends on ``transactional_db`` (the workers only see committed rows), so the workers are
    gone before the database is flushed.
    """
    workers = WorkerProcesses(tmp_path)
    try:
        yield workers
    finally:
        workers.kill_all()
