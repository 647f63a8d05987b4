"""The task execution table, its status choices and the worker registry."""

from __future__ import annotations

import secrets

from django.db import models
from django.db.models import Q

#: Alphabet of generated ids: no ``I L O i l o`` (as in the seed).
ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz"


def generate_id(prefix: str, length: int) -> str:
    """Return ``prefix`` followed by ``length`` random characters of :data:`ID_ALPHABET`.

    One uniformly random number below ``len(ID_ALPHABET) ** length`` is drawn from the OS's
    CSPRNG and written in that base: one system call per id, not one per character.
    """
    base = len(ID_ALPHABET)
    number = secrets.randbelow(base**length)
    digits = []
    for _ in range(length):
        number, digit = divmod(number, base)
        digits.append(ID_ALPHABET[digit])
    return prefix + "".join(digits)


def generate_execution_id() -> str:
    """A new execution id: ``te_`` + 24 random characters."""
    return generate_id("te_", 24)


def generate_executor_id() -> str:
    """A new executor id: ``de_`` + 8 random characters."""
    return generate_id("de_", 8)


class Status(models.TextChoices):
    """The status of a task execution (seed-spec §8)."""

    READY = "ready", "Ready"
    RUNNING = "running", "Running"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"
    WAITING_FOR_CHILDREN = "waiting_for_children", "Waiting for children"
    WAITING_FOR_FINALIZE = "waiting_for_finalize", "Waiting for finalize"
    FINALIZE_FAILED = "finalize_failed", "Finalize failed"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"


class CloseStatus(models.TextChoices):
    """Where a finished execution is in its clean-up phase (seed-spec §9.1)."""

    IDLE = "idle", "Idle"
    READY = "ready", "Ready"
    CLOSING = "closing", "Closing"
    CLOSED = "closed", "Closed"


class ChildrenProcessingStatus(models.TextChoices):
    """Whether a parent whose children all finished has been processed (seed-spec §9.2)."""

    IDLE = "idle", "Idle"
    PROCESSING = "processing", "Processing"
    PROCESSED = "processed", "Processed"


FINISHED_STATUSES = frozenset(
    {
        Status.FAILED,
        Status.TIMED_OUT,
        Status.FINALIZE_FAILED,
        Status.COMPLETED,
        Status.CANCELLED,
    }
)
ERRORED_STATUSES = frozenset(
    {Status.FAILED, Status.TIMED_OUT, Status.FINALIZE_FAILED, Status.CANCELLED}
)
ACTIVE_STATUSES = frozenset(
    {Status.READY, Status.RUNNING, Status.WAITING_FOR_CHILDREN, Status.WAITING_FOR_FINALIZE}
)


class TaskExecutionQuerySet(models.QuerySet["TaskExecution"]):
    """Query sets named after the states the engine looks for."""

    def ready(self) -> TaskExecutionQuerySet:
        return self.filter(status=Status.READY)

    def running(self) -> TaskExecutionQuerySet:
        return self.filter(status=Status.RUNNING)

    def finished(self) -> TaskExecutionQuerySet:
        return self.filter(is_finished=True)

    def unfinished(self) -> TaskExecutionQuerySet:
        return self.filter(is_finished=False)

    def top_level(self) -> TaskExecutionQuerySet:
        return self.filter(parent_execution_id__isnull=True)

    def closed(self) -> TaskExecutionQuerySet:
        return self.filter(close_status=CloseStatus.CLOSED)


class TaskExecution(models.Model):
    """One durable execution of a task: the seed's storage value as columns.

    Inputs and outputs are stored as the serializer's text, so that outputs can be copied
    verbatim between executions (a sequential step's output is the next step's input).
    Fields that do not apply to the current status are ``NULL``.
    """

    # -- identity and family --------------------------------------------------------------
    execution_id = models.CharField(max_length=32, default=generate_execution_id)
    task_id = models.CharField(max_length=255)
    root_task_id = models.CharField(max_length=255, null=True, blank=True)
    root_execution_id = models.CharField(max_length=32, null=True, blank=True)
    parent_task_id = models.CharField(max_length=255, null=True, blank=True)
    parent_execution_id = models.CharField(max_length=32, null=True, blank=True)
    index_in_parent_children = models.IntegerField(default=0)
    is_only_child_of_parent = models.BooleanField(default=False)
    is_finalize_of_parent = models.BooleanField(default=False)

    # -- options of this execution ------------------------------------------------------------
    retry_options = models.JSONField(default=dict)
    sleep_before_run = models.FloatField(default=0.0, help_text="seconds")
    timeout = models.FloatField(help_text="seconds per attempt")
    are_children_sequential = models.BooleanField(default=False)
    is_sleeping_task = models.BooleanField(default=False)
    sleeping_task_unique_id = models.CharField(max_length=255, null=True, blank=True)

    # -- values -----------------------------------------------------------------------------
    input = models.TextField(default="", blank=True)
    run_output = models.TextField(null=True, blank=True)
    output = models.TextField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    children = models.JSONField(null=True, blank=True)
    finalize = models.JSONField(null=True, blank=True)

    # -- state ------------------------------------------------------------------------------
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.READY)
    is_finished = models.BooleanField(default=False)
    executor_id = models.CharField(max_length=32, null=True, blank=True)
    retry_attempts = models.IntegerField(default=0)
    start_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    waiting_for_children_started_at = models.DateTimeField(null=True, blank=True)
    waiting_for_finalize_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    active_children_count = models.IntegerField(default=0)
    on_children_finished_processing_status = models.CharField(
        max_length=16,
        choices=ChildrenProcessingStatus.choices,
        default=ChildrenProcessingStatus.IDLE,
    )
    on_children_finished_processing_expires_at = models.DateTimeField(null=True, blank=True)
    on_children_finished_processing_finished_at = models.DateTimeField(null=True, blank=True)
    close_status = models.CharField(
        max_length=16, choices=CloseStatus.choices, default=CloseStatus.IDLE
    )
    close_expires_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    needs_promise_cancellation = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    # -- beyond the seed: queues, priorities, idempotency, concurrency, retries of failures --
    queue = models.CharField(max_length=64, default="default")
    priority = models.IntegerField(default=0)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    concurrency_key = models.CharField(max_length=255, null=True, blank=True)
    max_concurrency = models.IntegerField(null=True, blank=True)
    retried_from_execution_id = models.CharField(max_length=32, null=True, blank=True)

    objects = TaskExecutionQuerySet.as_manager()

    class Meta:
        verbose_name = "task execution"
        verbose_name_plural = "task executions"
        ordering = ["-id"]
        # Every update of a row changes its status, so PostgreSQL can never update it in
        # place ("HOT"): each index costs on every write. Hence few full indexes, and partial
        # ones for the sets the claims and sweeps look for, which hold few rows at a time.
        indexes = [
            # Claim of ready work: WHERE status='ready' AND start_at < now [AND queue IN ...]
            # ORDER BY priority DESC, start_at.
            models.Index(
                "queue",
                models.F("priority").desc(),
                "start_at",
                name="durable_ready_idx",
                condition=Q(status="ready"),
            ),
            # Parents whose children all finished and are waiting to be processed.
            models.Index(
                "active_children_count",
                "updated_at",
                name="durable_children_done_idx",
                condition=Q(
                    status="waiting_for_children", on_children_finished_processing_status="idle"
                ),
            ),
            # Finished rows not yet marked close-ready, and rows ready to close.
            models.Index(
                "updated_at",
                name="durable_mark_close_idx",
                condition=Q(is_finished=True, close_status="idle"),
            ),
            models.Index(
                "updated_at", name="durable_close_ready_idx", condition=Q(close_status="ready")
            ),
            # Expiry of running rows (crashed executors) and of sleeping tasks.
            models.Index(
                "is_sleeping_task",
                "expires_at",
                name="durable_running_expiry_idx",
                condition=Q(status="running"),
            ),
            models.Index(
                "on_children_finished_processing_expires_at",
                name="durable_ocfp_expiry_idx",
                condition=Q(on_children_finished_processing_expires_at__isnull=False),
            ),
            models.Index(
                "close_expires_at",
                name="durable_close_expiry_idx",
                condition=Q(close_expires_at__isnull=False),
            ),
            # Cancellation of running attempts, by the executor that owns them.
            models.Index(
                "executor_id",
                "updated_at",
                name="durable_cancel_idx",
                condition=Q(needs_promise_cancellation=True),
            ),
            # Children (and finalize) of a parent; descendants of a root.
            models.Index(
                "parent_execution_id",
                name="durable_parent_idx",
                condition=Q(parent_execution_id__isnull=False),
            ),
            models.Index(
                "root_execution_id",
                name="durable_root_idx",
                condition=Q(root_execution_id__isnull=False),
            ),
            # Browsing by task in the admin and the API.
            models.Index("task_id", "id", name="durable_task_idx"),
            # Concurrency limits count the running executions of a key.
            models.Index(
                "concurrency_key",
                name="durable_concurrency_idx",
                condition=Q(status="running", concurrency_key__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["execution_id"], name="durable_execution_id_uniq"),
            models.UniqueConstraint(
                fields=["sleeping_task_unique_id"],
                name="durable_sleeping_task_unique_id_uniq",
                condition=Q(sleeping_task_unique_id__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["task_id", "idempotency_key"],
                name="durable_idempotency_key_uniq",
                condition=Q(idempotency_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} {self.execution_id} ({self.status})"


class Worker(models.Model):
    """A live (or recently live) worker process, kept fresh by heartbeats."""

    worker_id = models.CharField(max_length=32, unique=True)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.IntegerField(default=0)
    started_at = models.DateTimeField()
    last_heartbeat_at = models.DateTimeField(db_index=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "worker"
        verbose_name_plural = "workers"
        ordering = ["-last_heartbeat_at"]

    def __str__(self) -> str:
        return f"{self.worker_id} ({self.hostname}:{self.pid})"
