"""Models of the test app."""

from __future__ import annotations

from django.db import models


class RunRecord(models.Model):
    """One run of a task from ``tests/testapp/tasks.py``: how tests count runs across processes."""

    execution_id = models.CharField(max_length=64, db_index=True)
    task_id = models.CharField(max_length=255, default="")
    attempt = models.IntegerField(default=0)
    pid = models.IntegerField()
    prev_error = models.TextField(default="", blank=True)
    started_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.task_id} {self.execution_id} attempt={self.attempt} pid={self.pid}"
