"""``manage.py durable_worker``: run durable executions (an executor plus the sweepers)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_durable.executor.worker import Worker

from ._options import non_negative_float, positive_int, queue_name

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


def configure_logging(level: str) -> None:
    logger = logging.getLogger("django_durable")
    logger.setLevel(level)
    if not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
        )
        logger.addHandler(handler)


class Command(BaseCommand):
    help = (
        "Run durable task executions until SIGTERM/SIGINT: claims ready executions, runs "
        "them, records their results, and runs the sweepers (children finished, close, "
        "expiry). Stops gracefully: running work finishes or is handed back, never lost."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency",
            type=positive_int,
            default=None,
            help="Executions run at once (default: DURABLE['MAX_CONCURRENT_EXECUTIONS']).",
        )
        parser.add_argument(
            "--queue",
            dest="queues",
            action="append",
            type=queue_name,
            default=None,
            help="Only claim executions of this queue (repeatable; default: every queue).",
        )
        parser.add_argument(
            "--no-sweepers",
            action="store_true",
            help="Do not run the sweepers here (run durable_sweep elsewhere).",
        )
        parser.add_argument(
            "--executor-id", default=None, help="Id of this worker (default: random de_…)."
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=non_negative_float,
            default=None,
            help=(
                "Grace period in seconds for running work at stop "
                "(default: DURABLE['SHUTDOWN_TIMEOUT'])."
            ),
        )
        parser.add_argument(
            "--poll-interval",
            type=non_negative_float,
            default=None,
            help=(
                "Seconds between polls when no wake-up arrives (default: DURABLE['POLL_INTERVAL'])."
            ),
        )
        parser.add_argument(
            "--log-level",
            choices=LOG_LEVELS,
            default="INFO",
            type=str.upper,
            help="Log level of the django_durable loggers (default: INFO).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        configure_logging(options["log_level"])
        overrides: dict[str, Any] = {}
        if options["poll_interval"]:
            overrides["poll_interval"] = options["poll_interval"]
        worker = Worker(
            concurrency=options["concurrency"],
            queues=options["queues"],
            sweepers=not options["no_sweepers"],
            executor_id=options["executor_id"],
            shutdown_timeout=options["shutdown_timeout"],
            **overrides,
        )
        code = worker.run()
        exit_now_if_task_threads_linger(code)


def exit_now_if_task_threads_linger(code: int) -> None:
    """End the process now if task code still runs on a pool thread after a hand-back.

    Python would otherwise wait at exit for those threads (``concurrent.futures`` joins them)
    although their executions were handed back to other workers.
    """
    lingering = [
        thread
        for thread in threading.enumerate()
        if thread.name.startswith("durable-task-") and thread.is_alive()
    ]
    if lingering:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
