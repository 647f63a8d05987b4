"""An enqueueing process for the idempotency race tests: ``python -m tests.enqueue_process``.

Environment: ``ENQUEUE_DATABASE_NAME`` (the test database), ``ENQUEUE_KEY`` (the idempotency
key) and ``ENQUEUE_ATOMIC`` (``1``: enqueue inside ``transaction.atomic()`` and hold the
transaction open a moment before committing, as a view would). The process sets Django up,
prints ``ready``, waits for a line on stdin, enqueues ``testapp.record`` with the key and prints
the execution id of the handle it got.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = os.environ["ENQUEUE_DATABASE_NAME"]

    import django

    django.setup()

    from django.db import connections, transaction

    from tests.testapp.tasks import record

    key = os.environ["ENQUEUE_KEY"]
    connections["default"].ensure_connection()
    print("ready", flush=True)
    sys.stdin.readline()
    if os.environ.get("ENQUEUE_ATOMIC") == "1":
        with transaction.atomic():
            handle = record.enqueue("same", idempotency_key=key)
            time.sleep(0.2)  # the other processes enqueue while this row is uncommitted
    else:
        handle = record.enqueue("same", idempotency_key=key)
    connections.close_all()
    print(handle.execution_id, flush=True)


if __name__ == "__main__":
    main()
