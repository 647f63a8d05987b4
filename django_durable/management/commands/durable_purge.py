"""``manage.py durable_purge --older-than 30d``: delete old closed executions."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from django_durable.storage.retention import purge_closed

from ._options import duration


class Command(BaseCommand):
    help = (
        "Delete executions closed longer ago than --older-than (whole trees: a root with all "
        "its descendants). Running or waiting executions are never touched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=duration,
            required=True,
            help="Age of the closed executions to delete: 90s, 15m, 12h, 30d.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        while True:
            deleted = purge_closed(timezone.now(), options["older_than"])
            total += deleted
            if not deleted:
                break
        self.stdout.write(f"Deleted {total} executions.")
