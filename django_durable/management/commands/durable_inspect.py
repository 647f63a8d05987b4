"""``manage.py durable_inspect <execution_id>``: an execution and its tree, as text."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_durable.models import TaskExecution


def _duration(row: TaskExecution) -> str:
    if row.started_at and row.finished_at:
        return f" {(row.finished_at - row.started_at).total_seconds():.3f}s"
    return ""


def _line(row: TaskExecution) -> str:
    text = f"{row.task_id} {row.execution_id} [{row.status}]{_duration(row)}"
    if row.retry_attempts:
        text += f" retries={row.retry_attempts}"
    if row.is_finalize_of_parent:
        text += " (finalize)"
    if row.error:
        text += f" error={row.error.get('message')!r}"
    return text


class Command(BaseCommand):
    help = "Show one execution as a tree of its children and finalize, with statuses and errors."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("execution_id")
        parser.add_argument("--json", action="store_true", help="Print the tree as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        execution_id = options["execution_id"]
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

        def node(row: TaskExecution) -> dict[str, Any]:
            return {
                "task_id": row.task_id,
                "execution_id": row.execution_id,
                "status": row.status,
                "created_at": row.created_at.isoformat(),
                "started_at": row.started_at.isoformat() if row.started_at else None,
                "finished_at": row.finished_at.isoformat() if row.finished_at else None,
                "retry_attempts": row.retry_attempts,
                "error": row.error,
                "children": [node(c) for c in children.get(row.execution_id, [])],
            }

        if options["json"]:
            self.stdout.write(json.dumps(node(root), indent=2))
            return

        def show(row: TaskExecution, prefix: str, last: bool, top: bool) -> None:
            branch = "" if top else ("└─ " if last else "├─ ")
            self.stdout.write(prefix + branch + _line(row))
            kids = children.get(row.execution_id, [])
            extension = "" if top else ("   " if last else "│  ")
            for index, kid in enumerate(kids):
                show(kid, prefix + extension, index == len(kids) - 1, False)

        show(root, "", True, True)
