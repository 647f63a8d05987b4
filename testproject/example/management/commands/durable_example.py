"""``manage.py durable_example``: run the example workflows end to end and print them."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_durable import Executor, wakeup_sleeping_task
from example import tasks


class Command(BaseCommand):
    help = "Enqueue the example workflows, run them with an in-process executor, print results."

    def handle(self, *args: Any, **options: Any) -> None:
        with Executor(poll_interval=0.05):
            runs = {
                "parent with children and finalize": tasks.upload_file.enqueue({"path": "a.txt"}),
                "retries with backoff": tasks.flaky.enqueue(),
                "sequential pipeline": tasks.pipeline.enqueue(1),
                "looping task": tasks.poll.enqueue({"done_after": 3}),
            }
            order = f"order-{uuid.uuid4().hex[:8]}"
            payment = tasks.wait_for_payment.enqueue(order)
            woken = wakeup_sleeping_task(
                tasks.wait_for_payment, order, status="completed", output={"paid": True}
            )
            failed = []
            for name, handle in runs.items():
                execution = handle.wait(timeout=30)
                self.stdout.write(
                    f"{name}: {execution.status} -> {json.dumps(execution.output, default=str)}"
                )
                if execution.status != "completed":
                    failed.append(name)
            self.stdout.write(
                f"sleeping task woken by webhook: {woken.status} -> {json.dumps(woken.output)}"
                f" ({payment.execution_id})"
            )
        if failed:
            raise CommandError(f"Example workflows did not complete: {', '.join(failed)}")
        self.stdout.write(self.style.SUCCESS("All example workflows completed."))
