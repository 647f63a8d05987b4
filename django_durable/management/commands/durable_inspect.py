"""``manage.py durable_inspect <execution_id>``: an execution and its tree, as text; with
``--workers``, the worker processes and what each runs."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from django_durable.conf import durable_settings
from django_durable.models import Status, TaskExecution, Worker
from django_durable.storage.workers import worker_state, workers_by_id

#: Running executions listed per worker by ``--workers``.
MAX_LISTED = 20


def _duration(row: TaskExecution) -> str:
    if row.started_at and row.finished_at:
        return f" {(row.finished_at - row.started_at).total_seconds():.3f}s"
    return ""


def _worker_label(worker_id: str, workers: dict[str, Worker]) -> str:
    worker = workers.get(worker_id)
    return f"{worker_id} ({worker.hostname}:{worker.pid})" if worker else worker_id


def _line(row: TaskExecution, workers: dict[str, Worker]) -> str:
    text = f"{row.task_id} {row.execution_id} [{row.status}]{_duration(row)}"
    if row.status == Status.RUNNING and row.executor_id:
        text += f" worker={_worker_label(row.executor_id, workers)}"
    if row.retry_attempts:
        text += f" retries={row.retry_attempts}"
    if row.is_finalize_of_parent:
        text += " (finalize)"
    if row.error:
        text += f" error={row.error.get('message')!r}"
    return text


class Command(BaseCommand):
    help = (
        "Show one execution as a tree of its children and finalize, with statuses, errors and "
        "the worker running each; or, with --workers, every worker and what it runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("execution_id", nargs="?")
        parser.add_argument("--json", action="store_true", help="Print JSON.")
        parser.add_argument(
            "--workers",
            action="store_true",
            help="List the worker processes (live, silent, stopped) and their running executions.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["workers"]:
            self.show_workers(as_json=options["json"])
            return
        execution_id = options["execution_id"]
        if not execution_id:
            raise CommandError("Give an execution id, or --workers")
        root = TaskExecution.objects.filter(execution_id=execution_id).first()
        if root is None:
            raise CommandError(f"Task execution not found [executionId={execution_id}]")
        tree_root = root.root_execution_id or root.execution_id
        rows = list(
            TaskExecution.objects.filter(root_execution_id=tree_root).order_by(
                "index_in_parent_children", "id"
            )
        )
        children: dict[str, list[TaskExecution]] = {}
        for row in rows:
            children.setdefault(row.parent_execution_id or "", []).append(row)
        workers = workers_by_id(
            [r.executor_id for r in [root, *rows] if r.executor_id and r.status == Status.RUNNING]
        )

        def node(row: TaskExecution) -> dict[str, Any]:
            worker = workers.get(row.executor_id or "") if row.status == Status.RUNNING else None
            return {
                "task_id": row.task_id,
                "execution_id": row.execution_id,
                "status": row.status,
                "created_at": row.created_at.isoformat(),
                "started_at": row.started_at.isoformat() if row.started_at else None,
                "finished_at": row.finished_at.isoformat() if row.finished_at else None,
                "retry_attempts": row.retry_attempts,
                "error": row.error,
                "worker": (
                    {"worker_id": worker.worker_id, "hostname": worker.hostname, "pid": worker.pid}
                    if worker
                    else None
                ),
                "children": [node(c) for c in children.get(row.execution_id, [])],
            }

        if options["json"]:
            self.stdout.write(json.dumps(node(root), indent=2))
            return

        def show(row: TaskExecution, prefix: str, last: bool, top: bool) -> None:
            branch = "" if top else ("└─ " if last else "├─ ")
            self.stdout.write(prefix + branch + _line(row, workers))
            kids = children.get(row.execution_id, [])
            extension = "" if top else ("   " if last else "│  ")
            for index, kid in enumerate(kids):
                show(kid, prefix + extension, index == len(kids) - 1, False)

        show(root, "", True, True)

    def show_workers(self, *, as_json: bool) -> None:
        now = timezone.now()
        interval = durable_settings.HEARTBEAT_INTERVAL
        items = []
        beat_ages = []
        for worker in Worker.objects.order_by("-last_heartbeat_at")[:200]:
            beat_ages.append((now - worker.last_heartbeat_at).total_seconds())
            running = TaskExecution.objects.filter(
                status=Status.RUNNING, executor_id=worker.worker_id
            )
            listed = list(
                running.order_by("id").values_list("task_id", "execution_id")[:MAX_LISTED]
            )
            items.append(
                {
                    "worker_id": worker.worker_id,
                    "hostname": worker.hostname,
                    "pid": worker.pid,
                    "queues": worker.queues,
                    "state": worker_state(worker, now, interval),
                    "started_at": worker.started_at.isoformat(),
                    "last_heartbeat_at": worker.last_heartbeat_at.isoformat(),
                    "running": running.count() if len(listed) == MAX_LISTED else len(listed),
                    "executions": [
                        {"task_id": task_id, "execution_id": execution_id}
                        for task_id, execution_id in listed
                    ],
                }
            )
        if as_json:
            self.stdout.write(json.dumps(items, indent=2))
            return
        if not items:
            self.stdout.write("No workers have registered.")
        for item, age in zip(items, beat_ages, strict=True):
            self.stdout.write(
                f"{item['worker_id']} {item['hostname']}:{item['pid']} [{item['state']}] "
                f"queues={','.join(item['queues']) or '*'} last_beat={age:.1f}s ago "
                f"running={item['running']}"
            )
            for execution in item["executions"]:
                self.stdout.write(f"  {execution['task_id']} {execution['execution_id']}")
