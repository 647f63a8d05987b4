"""A claiming process for the claim-race tests: ``python -m tests.storage.claim_worker``.

Environment: ``CLAIM_DATABASE_NAME`` (the test database: a file path on SQLite, a database name
on PostgreSQL, where ``DATABASE_URL`` names the server), ``CLAIM_STORAGE`` (``orm`` or
``postgres``), ``CLAIM_EXECUTOR_ID``, ``CLAIM_LIMIT`` and ``CLAIM_PAUSE`` (seconds between claims,
as an executor runs what it claimed before claiming more). The process sets Django up, prints
``ready``, waits for a line on stdin, then claims ready rows until a claim comes back empty,
and prints the claimed execution ids as one JSON list.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = os.environ["CLAIM_DATABASE_NAME"]

    import django

    django.setup()

    from django.db import connections
    from django.utils import timezone

    from django_durable.state import derive_update
    from django_durable.storage.orm import OrmStorage
    from django_durable.storage.postgres import PostgresStorage

    storage = PostgresStorage() if os.environ.get("CLAIM_STORAGE") == "postgres" else OrmStorage()
    executor_id = os.environ["CLAIM_EXECUTOR_ID"]
    limit = int(os.environ.get("CLAIM_LIMIT", "100"))
    pause = float(os.environ.get("CLAIM_PAUSE", "0"))
    connections["default"].ensure_connection()

    print("ready", flush=True)
    sys.stdin.readline()

    claimed: list[str] = []
    while True:
        now = timezone.now()
        rows = storage.update_by_status_and_start_at_less_than_and_return(
            status="ready",
            start_at_less_than=now,
            update=derive_update(now, {"status": "running", "executor_id": executor_id}),
            update_expires_at_with_started_at=now,
            limit=limit,
        )
        if not rows:
            break
        claimed.extend(row.execution_id for row in rows)
        time.sleep(pause)
    connections.close_all()
    print(json.dumps(claimed), flush=True)


if __name__ == "__main__":
    main()
