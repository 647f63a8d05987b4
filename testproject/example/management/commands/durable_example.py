"""``manage.py durable_example``: run the example workflows on a real worker and print them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from example.demo import Demo, DemoError


class Command(BaseCommand):
    help = (
        "Start a durable_worker, enqueue the example workflows, show their progress, print "
        "each finished execution tree and stop the worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--worker-log",
            type=Path,
            default=Path(settings.BASE_DIR) / "durable-worker.log",
            help="File that receives the worker's output (default: %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        demo = Demo(self.stdout.write, options["worker_log"])
        try:
            roots = demo.run()
        except DemoError as error:
            raise CommandError(str(error)) from None
        demo.print_trees(roots)
        failed = [f"{root.task_id} [{root.status}]" for root in roots if root.status != "completed"]
        if failed:
            raise CommandError(f"Example workflows did not complete: {', '.join(failed)}")
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"All {len(roots)} example workflows completed."))
        demo.print_next_steps(roots)
