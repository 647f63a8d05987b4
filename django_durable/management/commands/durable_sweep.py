"""``manage.py durable_sweep``: run the sweepers alone, continuously or once (for cron)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_durable.executor.executor import Executor
from django_durable.executor.worker import Worker

from ._options import non_negative_float
from .durable_worker import LOG_LEVELS, configure_logging


class Command(BaseCommand):
    help = (
        "Run the sweepers (children finished, close, expiry of crashed work, retention) without "
        "running task code. Safe to run from many machines at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="Sweep until nothing is left, then exit."
        )
        parser.add_argument(
            "--poll-interval",
            type=non_negative_float,
            default=None,
            help=(
                "Seconds between sweeps when nothing wakes them "
                "(default: DURABLE['POLL_INTERVAL'])."
            ),
        )
        parser.add_argument("--log-level", choices=LOG_LEVELS, default="INFO", type=str.upper)

    def handle(self, *args: Any, **options: Any) -> None:
        configure_logging(options["log_level"])
        overrides: dict[str, Any] = {}
        if options["poll_interval"]:
            overrides["poll_interval"] = options["poll_interval"]
        if options["once"]:
            counts = Executor(claim=False, **overrides).sweep_once()
            self.stdout.write(json.dumps(counts))
            return
        worker = Worker(sweepers=True, **overrides)
        worker.executor = Executor(claim=False, executor_id=worker.id, **overrides)
        worker.run()
