"""The demo of ``manage.py durable_example``: run the example workflows on a real worker.

:class:`Demo` starts a ``manage.py durable_worker`` subprocess, enqueues the workflows of
:mod:`example.tasks`, prints every status change while they run (and wakes the sleeping payment
up, as a payment provider's webhook would), prints each finished execution tree with statuses
and outputs, stops the worker gracefully and tells how to browse the executions in the admin.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from django_durable import TaskHandle, wakeup_sleeping_task
from django_durable.models import TaskExecution, Worker
from django_durable.serialization import deserialize

from . import tasks

#: How long the demo waits for its workflows before it gives up.
DEMO_TIMEOUT = 90.0
#: How often the demo reads the executions to show their progress.
PROGRESS_INTERVAL = 0.1
#: How long the payment sleeps before the demo's "webhook" wakes it up.
PAYMENT_DELAY = 1.0
#: Longest value printed in a tree line.
MAX_VALUE_CHARS = 100


class DemoError(Exception):
    """The demo could not finish: the message says why (the worker's log tail included)."""


@dataclass
class Workflow:
    """One top-level execution of the demo."""

    label: str
    handle: TaskHandle


@dataclass
class Seen:
    """The last state of an execution shown in the progress lines."""

    status: str
    retry_attempts: int


def short(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """``value`` as compact JSON, cut at ``limit`` characters."""
    text = json.dumps(value, default=str, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def stored_value(data: str | None) -> Any:
    """A stored input or output, deserialized (``None`` when there is none)."""
    return None if data is None else deserialize(data)


def command_prefix() -> str:
    """How the user runs this project's ``manage.py`` from the current directory."""

    def relative(path: str | Path) -> str:
        text = os.path.relpath(path)
        return str(path) if text.startswith("..") else text

    return f"{relative(sys.executable)} {relative(Path(settings.BASE_DIR) / 'manage.py')}"


class WorkerProcess:
    """A ``manage.py durable_worker`` subprocess, its output written to ``log_path``."""

    def __init__(self, log_path: Path, concurrency: int = 20) -> None:
        self.log_path = log_path
        self.concurrency = concurrency
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        manage = Path(settings.BASE_DIR) / "manage.py"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(manage), "durable_worker", "--concurrency", str(self.concurrency)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the worker registered itself (its first heartbeat) in the database."""
        deadline = time.monotonic() + timeout
        while not Worker.objects.filter(pid=self.pid, stopped_at__isnull=True).exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"The worker did not start within {timeout:.0f} s.\n{self.tail()}")
            time.sleep(PROGRESS_INTERVAL)

    def check_alive(self) -> None:
        """Raise :class:`DemoError` if the worker exited on its own."""
        if self.process is not None and self.process.poll() is not None:
            raise DemoError(
                f"The worker exited with code {self.process.returncode}.\n{self.tail()}"
            )

    def stop(self, timeout: float = 30.0) -> int:
        """Stop the worker as an operator would (SIGTERM); kill it if it does not exit in time."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
        return self.process.returncode

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        last = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of the worker's log ({self.log_path}) ---\n{last}"


class Demo:
    """Enqueue the example workflows, show their progress and print their trees."""

    def __init__(self, out: Callable[[str], None], worker_log: Path) -> None:
        self.out = out
        self.worker = WorkerProcess(worker_log)
        self.started = time.monotonic()
        self.seen: dict[str, Seen] = {}
        self.depth: dict[str, int] = {}
        self.labels: dict[str, str] = {}
        self.order = f"order-{uuid.uuid4().hex[:8]}"
        self.woken = False
        self.sleeping_since: float | None = None

    # -- the whole run -------------------------------------------------------------------------

    def run(self) -> list[TaskExecution]:
        """Run the demo; return the finished top-level executions."""
        self.out("Starting a worker: manage.py durable_worker")
        self.worker.start()
        try:
            self.worker.wait_ready()
            self.out(f"  pid {self.worker.pid}, its log in {self.worker.log_path}")
            self.started = time.monotonic()
            workflows = self.enqueue()
            self.out("")
            self.out("Progress (every status change, as seen in the database):")
            roots = self.watch(workflows)
        finally:
            self.out("")
            self.out("Stopping the worker (SIGTERM: it finishes what runs, then exits)")
            code = self.worker.stop()
        if code != 0:
            raise DemoError(f"The worker exited with code {code}.\n{self.worker.tail()}")
        self.out(f"  the worker exited with code {code}")
        return roots

    def enqueue(self) -> list[Workflow]:
        ready_in = timedelta(seconds=1)
        self.out("")
        self.out("Enqueuing the example workflows (example/tasks.py):")
        workflows = [
            Workflow("upload", tasks.upload_file.enqueue({"path": "report.pdf"})),
            Workflow("pipeline", tasks.pipeline.enqueue(1)),
            Workflow("retries", tasks.flaky.enqueue()),
            Workflow(
                "poll",
                tasks.poll_report.enqueue({"report": "q3", "ready_at": timezone.now() + ready_in}),
            ),
            Workflow("order", tasks.place_order.enqueue({"order": self.order})),
        ]
        descriptions = {
            "upload": "a parent with 2 children in parallel and a finalize",
            "pipeline": "a sequence of 3 steps, each output the next input",
            "retries": "a task that fails twice, then succeeds (retries with backoff)",
            "poll": "a loop that polls until a report is ready",
            "order": "an order that sleeps until its payment webhook wakes it up",
        }
        for workflow in workflows:
            self.labels[workflow.handle.execution_id] = workflow.label
            self.depth[workflow.handle.execution_id] = 0
            self.out(
                f"  {workflow.label:<9} {workflow.handle.task_id:<22} "
                f"{workflow.handle.execution_id}  {descriptions[workflow.label]}"
            )
        return workflows

    # -- progress ------------------------------------------------------------------------------

    def watch(self, workflows: list[Workflow]) -> list[TaskExecution]:
        """Print status changes until every workflow finished; return their final rows."""
        ids = [workflow.handle.execution_id for workflow in workflows]
        deadline = time.monotonic() + DEMO_TIMEOUT
        while True:
            rows = list(
                TaskExecution.objects.filter(
                    Q(execution_id__in=ids) | Q(root_execution_id__in=ids)
                ).order_by("id")
            )
            for row in rows:
                self.show_change(row)
            self.wake_payment(rows)
            roots = [row for row in rows if row.execution_id in ids]
            if len(roots) == len(ids) and all(row.is_finished for row in roots):
                return sorted(roots, key=lambda row: ids.index(row.execution_id))
            self.worker.check_alive()
            if time.monotonic() > deadline:
                unfinished = [f"{r.task_id} [{r.status}]" for r in roots if not r.is_finished]
                raise DemoError(
                    f"Not finished after {DEMO_TIMEOUT:.0f} s: {', '.join(unfinished)}.\n"
                    f"{self.worker.tail()}"
                )
            time.sleep(PROGRESS_INTERVAL)

    def show_change(self, row: TaskExecution) -> None:
        before = self.seen.get(row.execution_id)
        now = Seen(row.status, row.retry_attempts)
        if before == now:
            return
        self.seen[row.execution_id] = now
        if row.execution_id not in self.depth:
            self.depth[row.execution_id] = self.depth.get(row.parent_execution_id or "", 0) + 1
            self.labels[row.execution_id] = self.labels.get(row.parent_execution_id or "", "")
        detail = ""
        if row.status == "ready" and row.retry_attempts and row.error:
            detail = f"  (retry {row.retry_attempts} after: {row.error.get('message')})"
        elif row.is_sleeping_task and not row.is_finished:
            detail = f"  (sleeping until woken by its unique id {row.sleeping_task_unique_id!r})"
        elif row.is_finished and row.output is not None:
            detail = f"  -> {short(stored_value(row.output), 60)}"
        indent = "  " * self.depth[row.execution_id]
        elapsed = time.monotonic() - self.started
        self.out(
            f"  {elapsed:5.1f}s  {self.labels[row.execution_id]:<9} {indent}{row.task_id} "
            f"{row.status}{detail}"
        )

    def wake_payment(self, rows: list[TaskExecution]) -> None:
        """Wake the sleeping payment a little after it started sleeping, as a webhook would."""
        if self.woken:
            return
        for row in rows:
            if row.is_sleeping_task and not row.is_finished:
                if self.sleeping_since is None:
                    self.sleeping_since = time.monotonic()
                if time.monotonic() - self.sleeping_since < PAYMENT_DELAY:
                    return
                self.out(
                    f"  → the payment provider calls your webhook for {self.order}: "
                    f"wakeup_sleeping_task(wait_for_payment, {self.order!r}, output=...)"
                )
                wakeup_sleeping_task(
                    tasks.wait_for_payment,
                    self.order,
                    status="completed",
                    output={"paid": True, "amount": "19.90"},
                )
                self.woken = True
                return

    # -- the finished trees ----------------------------------------------------------------------

    def print_trees(self, roots: list[TaskExecution]) -> None:
        self.out("")
        self.out("The finished executions, as trees (children in order, then the finalize):")
        rows = TaskExecution.objects.filter(
            root_execution_id__in=[root.execution_id for root in roots]
        ).order_by("is_finalize_of_parent", "index_in_parent_children", "id")
        children: dict[str, list[TaskExecution]] = {}
        for row in rows:
            children.setdefault(row.parent_execution_id or "", []).append(row)
        for root in roots:
            self.out("")
            self.print_node(root, children, prefix="", branch="", top=True)

    def print_node(
        self,
        row: TaskExecution,
        children: dict[str, list[TaskExecution]],
        *,
        prefix: str,
        branch: str,
        top: bool,
    ) -> None:
        self.out(f"  {prefix}{branch}{tree_line(row)}")
        if top:
            self.out(f"  {prefix}│ input:  {short(stored_value(row.input))}")
        kids = children.get(row.execution_id, [])
        extension = "" if top else ("   " if branch.startswith("└") else "│  ")
        for index, kid in enumerate(kids):
            last = index == len(kids) - 1
            self.print_node(
                kid, children, prefix=prefix + extension, branch="└─ " if last else "├─ ", top=False
            )

    # -- where to look next --------------------------------------------------------------------

    def print_next_steps(self, roots: list[TaskExecution]) -> None:
        manage = command_prefix()
        database = connection.settings_dict["NAME"]
        self.out("")
        self.out(f"They are stored in the database ({database}). Browse them in the admin:")
        if not get_user_model().objects.filter(is_superuser=True).exists():
            self.out(f"  {manage} createsuperuser      # once: a login for the admin")
        self.out(f"  {manage} runserver")
        self.out("  then open http://127.0.0.1:8000/admin/django_durable/taskexecution/")
        self.out(
            "The HTTP API is under http://127.0.0.1:8000/durable/ "
            "(executions/, tasks/, stats/; OpenAPI schema: schema/)."
        )
        self.out(f"Or in the shell: {manage} durable_inspect {roots[0].execution_id}")


def tree_line(row: TaskExecution) -> str:
    """One execution in a tree: task id, status, duration, retries, output or error."""
    parts = [row.task_id, f"[{row.status}]"]
    if row.is_finalize_of_parent:
        parts.append("(finalize)")
    if row.started_at and row.finished_at:
        parts.append(f"{(row.finished_at - row.started_at).total_seconds():.2f}s")
    if row.retry_attempts:
        parts.append(f"retries={row.retry_attempts}")
    if row.status == "completed":
        parts.append(f"-> {short(stored_value(row.output))}")
    elif row.error:
        parts.append(f"error: {row.error.get('message')}")
    return " ".join(parts)
