"""Prometheus metrics from the database: counts by status and task, claim latency, run time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from django_durable.metrics import render_metrics
from django_durable.models import Status, TaskExecution
from tests.storage.conformance import make_row


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.django_db
def test_metrics_count_by_status_and_task_and_summarise_recent_claims_and_runs():
    now = timezone.now()

    def ran(task_id: str, waited: float, took: float) -> TaskExecution:
        started = now - timedelta(seconds=60)
        return make_row(
            now,
            task_id=task_id,
            status=Status.COMPLETED,
            is_finished=True,
            start_at=started - timedelta(seconds=waited),
            started_at=started,
            finished_at=started + timedelta(seconds=took),
        )

    rows = [ran("m.a", 0.5, 1.0), ran("m.a", 1.5, 3.0), ran("m.b", 2.5, 5.0)]
    rows += [make_row(now, task_id="m.b"), make_row(now, task_id="m.b")]  # ready
    old = ran("m.a", 100, 100)  # claimed and finished long ago: outside the window
    old.started_at -= timedelta(hours=1)
    old.finished_at -= timedelta(hours=1)
    TaskExecution.objects.bulk_create([old, *rows])

    found = samples(render_metrics(now))
    assert found[("durable_executions", (("status", "completed"),))] == 4
    assert found[("durable_executions", (("status", "ready"),))] == 2
    assert found[("durable_executions", (("status", "failed"),))] == 0
    assert found[("durable_task_executions", (("status", "completed"), ("task_id", "m.a")))] == 3
    assert found[("durable_task_executions", (("status", "ready"), ("task_id", "m.b")))] == 2
    assert found[("durable_claim_latency_seconds_count", ())] == 3
    assert found[("durable_claim_latency_seconds", (("quantile", "0.5"),))] == 1.5
    assert found[("durable_claim_latency_seconds_sum", ())] == pytest.approx(4.5)
    assert found[("durable_run_duration_seconds", (("quantile", "0.99"),))] == 5.0
    assert found[("durable_run_duration_seconds_count", ())] == 3
    assert found[("durable_live_workers", ())] == 0
    assert found[("durable_oldest_ready_age_seconds", ())] >= 0
