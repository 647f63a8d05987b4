"""``manage.py durable_enqueue <task_id> --input JSON [--wait]``: enqueue from the shell."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_durable.errors import DurableExecutionError
from django_durable.handles import enqueue
from django_durable.serialization import get_serializer

from ._options import json_value, non_negative_float


class Command(BaseCommand):
    help = "Enqueue an execution of a task by id, optionally waiting for it to finish."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task_id")
        parser.add_argument("--input", type=json_value, default=None, help="The input, as JSON.")
        parser.add_argument("--wait", action="store_true", help="Wait until it finished.")
        parser.add_argument(
            "--timeout",
            type=non_negative_float,
            default=None,
            help="Give up waiting after this many seconds.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            handle = enqueue(options["task_id"], options["input"])
        except DurableExecutionError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(handle.execution_id)
        if not options["wait"]:
            return
        deadline = None if options["timeout"] is None else time.monotonic() + options["timeout"]
        last_status = None
        while True:
            snapshot = handle.get_execution()
            if snapshot.status != last_status:
                self.stderr.write(f"{snapshot.status}")
                last_status = snapshot.status
            if snapshot.is_finished:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise CommandError(f"Still {snapshot.status} after {options['timeout']}s")
            time.sleep(0.1)
        if snapshot.status == "completed":
            self.stdout.write(get_serializer().serialize(snapshot.output))
        else:
            raise CommandError(f"{snapshot.status}: {snapshot.error and snapshot.error.message}")
