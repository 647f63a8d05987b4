"""Idempotency keys: one execution per task and key, also when processes enqueue at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection, transaction

from django_durable import DurableExecutionError, task
from django_durable.models import TaskExecution
from tests.testapp.tasks import record

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 4


def _enqueue_in_processes(key: str, *, atomic: bool) -> list[str]:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "ENQUEUE_DATABASE_NAME": str(connection.settings_dict["NAME"]),
        "ENQUEUE_KEY": key,
        "ENQUEUE_ATOMIC": "1" if atomic else "0",
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.enqueue_process"],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            if line != "ready":
                process.kill()
                pytest.fail(f"an enqueuing process did not start: {process.communicate()[1]}")
        for process in processes:  # all at once
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        ids = []
        for process in processes:
            stdout, stderr = process.communicate(timeout=60)
            assert process.returncode == 0, stderr
            ids.append(stdout.strip().splitlines()[-1])
        return ids
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", [False, True], ids=["autocommit", "in-transaction"])
def test_four_processes_enqueueing_one_key_at_once_create_one_execution(atomic: bool) -> None:
    ids = _enqueue_in_processes("order-42", atomic=atomic)
    rows = list(TaskExecution.objects.filter(task_id=record.id))
    assert len(rows) == 1
    assert set(ids) == {rows[0].execution_id}
    assert rows[0].idempotency_key == "order-42"


@pytest.mark.django_db
def test_a_used_key_returns_the_existing_handle_and_other_tasks_keep_their_own():
    @task(id="idem.other")
    def other(ctx, input):
        return input

    first = record.enqueue(1, idempotency_key="k")
    assert record.enqueue(2, idempotency_key="k") == first
    assert other.enqueue(1, idempotency_key="k") != first
    assert record.enqueue(1, idempotency_key="k2") != first
    assert TaskExecution.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_key_used_in_a_rolled_back_transaction_is_free_again():
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        record.enqueue(1, idempotency_key="k")
        assert record.enqueue(2, idempotency_key="k").execution_id  # same transaction: found
        raise Rollback
    assert not TaskExecution.objects.exists()
    handle = record.enqueue(3, idempotency_key="k")
    assert TaskExecution.objects.get().execution_id == handle.execution_id


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "k" * 256, 42])
def test_a_bad_key_is_a_clear_error(key):
    with pytest.raises(DurableExecutionError, match="idempotency_key must be"):
        record.enqueue(1, idempotency_key=key)
