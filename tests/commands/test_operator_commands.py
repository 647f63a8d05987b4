"""The operator commands: durable_inspect, durable_enqueue, durable_purge, durable_sweep."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from django_durable import ParentResult, child, parent_task, task
from django_durable.models import CloseStatus, Status, TaskExecution

pytestmark = pytest.mark.django_db(transaction=True)


def run_command(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_inspect_shows_the_tree_with_statuses_and_errors(executor) -> None:
    @task(id="ok_child", timeout=5)
    def ok_child(ctx, input):
        return input

    @task(id="bad_child", timeout=5)
    def bad_child(ctx, input):
        raise RuntimeError("boom")

    @parent_task(id="family", timeout=5)
    def family(ctx, input):
        return ParentResult(children=[child(ok_child, 1), child(bad_child, 2)])

    handle = family.enqueue()
    handle.wait(timeout=10)
    text = run_command("durable_inspect", handle.execution_id)
    lines = text.splitlines()
    assert lines[0].startswith(f"family {handle.execution_id} [completed]")
    assert any("ok_child" in line and "[completed]" in line for line in lines[1:])
    assert any("bad_child" in line and "[failed]" in line and "boom" in line for line in lines)
    tree = json.loads(run_command("durable_inspect", handle.execution_id, "--json"))
    assert [c["status"] for c in tree["children"]] == ["completed", "failed"]


def test_inspect_unknown_execution_is_a_clear_error() -> None:
    with pytest.raises(CommandError, match=r"Task execution not found \[executionId=te_nope\]"):
        run_command("durable_inspect", "te_nope")


def test_enqueue_and_wait_prints_the_output(executor) -> None:
    @task(id="double", timeout=5)
    def double(ctx, input):
        return {"value": input["n"] * 2}

    text = run_command("durable_enqueue", "double", "--input", '{"n": 21}', "--wait")
    execution_id, output = text.strip().splitlines()
    assert execution_id.startswith("te_")
    assert json.loads(output) == {"value": 42}


def test_enqueue_unknown_task_and_bad_json_are_clear_errors() -> None:
    with pytest.raises(CommandError, match=r"Task not found \[taskId=missing\]"):
        run_command("durable_enqueue", "missing")
    with pytest.raises(CommandError, match="not valid JSON"):
        run_command("durable_enqueue", "missing", "--input", "{nope")


def test_enqueue_wait_reports_a_failure(executor) -> None:
    @task(id="fails", timeout=5)
    def fails(ctx, input):
        raise RuntimeError("no luck")

    with pytest.raises(CommandError, match="failed: no luck"):
        run_command("durable_enqueue", "fails", "--wait", "--timeout", "10")


def test_purge_deletes_old_closed_trees_only(executor) -> None:
    @task(id="leaf", timeout=5)
    def leaf(ctx, input):
        return input

    @parent_task(id="tree", timeout=5)
    def tree(ctx, input):
        return ParentResult(children=[child(leaf, 1)])

    old = tree.enqueue()
    old.wait(timeout=10)
    recent = tree.enqueue()
    recent.wait(timeout=10)
    waiting = leaf.enqueue(1, sleep_before_run=3600)
    TaskExecution.objects.filter(execution_id=old.execution_id).update(
        close_status=CloseStatus.CLOSED, closed_at=timezone.now() - timedelta(days=40)
    )
    text = run_command("durable_purge", "--older-than", "30d")
    assert text.strip() == "Deleted 2 executions."
    assert not TaskExecution.objects.filter(execution_id=old.execution_id).exists()
    assert not TaskExecution.objects.filter(root_execution_id=old.execution_id).exists()
    assert TaskExecution.objects.filter(execution_id=recent.execution_id).exists()
    assert TaskExecution.objects.get(execution_id=waiting.execution_id).status == Status.READY


def test_purge_needs_a_valid_age() -> None:
    with pytest.raises(CommandError, match="expected a duration"):
        run_command("durable_purge", "--older-than", "soon")


def test_sweep_once_recovers_expired_work() -> None:
    @task(id="stuck", timeout=1)
    def stuck(ctx, input):
        return input

    handle = stuck.enqueue(1)
    TaskExecution.objects.filter(execution_id=handle.execution_id).update(
        status=Status.RUNNING,
        executor_id="de_gone",
        started_at=timezone.now() - timedelta(minutes=10),
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    counts = json.loads(run_command("durable_sweep", "--once"))
    assert set(counts) == {
        "expired",
        "children",
        "closed",
        "silent_workers_recovered",
        "scheduled",
    }
    row = TaskExecution.objects.get(execution_id=handle.execution_id)
    assert row.status == Status.READY
    assert row.error["message"] == "Task execution expired"
    assert row.retry_attempts == 0


def test_inspect_shows_which_worker_runs_what() -> None:
    from django_durable.models import Worker

    @task(id="busy", timeout=5)
    def busy(ctx, input):
        return input

    now = timezone.now()
    handle = busy.enqueue()
    TaskExecution.objects.filter(execution_id=handle.execution_id).update(
        status=Status.RUNNING, executor_id="de_live", started_at=now
    )
    Worker.objects.create(
        worker_id="de_live",
        hostname="host-a",
        pid=11,
        queues=["emails"],
        started_at=now,
        last_heartbeat_at=now,
    )
    Worker.objects.create(
        worker_id="de_gone",
        hostname="host-b",
        pid=22,
        started_at=now - timedelta(hours=1),
        last_heartbeat_at=now - timedelta(hours=1),
    )
    text = run_command("durable_inspect", handle.execution_id)
    assert f"busy {handle.execution_id} [running] worker=de_live (host-a:11)" in text
    tree = json.loads(run_command("durable_inspect", handle.execution_id, "--json"))
    assert tree["worker"] == {"worker_id": "de_live", "hostname": "host-a", "pid": 11}

    lines = run_command("durable_inspect", "--workers").splitlines()
    assert lines[0].startswith("de_live host-a:11 [live] queues=emails last_beat=")
    assert lines[0].endswith("running=1")
    assert lines[1] == f"  busy {handle.execution_id}"
    assert lines[2].startswith("de_gone host-b:22 [silent] queues=*")
    workers = json.loads(run_command("durable_inspect", "--workers", "--json"))
    assert [(w["worker_id"], w["state"], w["running"]) for w in workers] == [
        ("de_live", "live", 1),
        ("de_gone", "silent", 0),
    ]
    with pytest.raises(CommandError, match="Give an execution id, or --workers"):
        run_command("durable_inspect")
