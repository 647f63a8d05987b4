"""``manage.py durable_health``: exit 0 when the database answers and a worker is alive."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_durable.health import check_health

from ._options import non_negative_float


class Command(BaseCommand):
    help = (
        "Check that the database answers and that a worker is alive (a heartbeat within 3 "
        "HEARTBEAT_INTERVALs); exit 1 otherwise. For liveness probes and monitoring."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--allow-no-workers",
            action="store_true",
            help="Only the database must answer (e.g. on a web host that runs no worker).",
        )
        parser.add_argument(
            "--max-ready-age",
            type=non_negative_float,
            default=None,
            help="Also fail when the oldest ready execution waited longer than this (seconds).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = check_health()
        problems = report.problems()
        if options["allow_no_workers"] and report.database_ok:
            problems = []
        age = report.oldest_ready_age_seconds
        limit = options["max_ready_age"]
        if limit is not None and age is not None and age > limit:
            problems.append(f"the oldest ready execution waited {age:.1f}s (limit {limit:g}s)")
        if options["json"]:
            self.stdout.write(
                json.dumps({**report.to_dict(), "healthy": not problems, "problems": problems})
            )
        else:
            self.stdout.write(f"database: {report.database}")
            self.stdout.write(f"live workers: {_or_unknown(report.live_workers)}")
            waited = "none ready" if age is None else f"{age:.1f}s"
            self.stdout.write(
                f"oldest ready execution waited: {waited if report.database_ok else 'unknown'}"
            )
            for problem in problems:
                self.stderr.write(f"UNHEALTHY: {problem}")
            if not problems:
                self.stdout.write("healthy")
        if problems:
            sys.exit(1)


def _or_unknown(value: int | None) -> str:
    return "unknown" if value is None else str(value)
