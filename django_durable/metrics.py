"""Prometheus metrics read from the database, for ``GET metrics/`` (needs ``prometheus_client``).

:func:`render_metrics` builds a fresh ``CollectorRegistry`` with one :class:`DurableCollector`
per call and returns ``generate_latest`` of it: every scrape reads the database once, whichever
process serves it, and nothing is registered in the process-wide default registry.

Metrics:

- ``durable_executions{status}``: executions per status (every status present);
  ``durable_task_executions{task_id, status}``: the same per task (non-zero counts only).
- ``durable_oldest_ready_age_seconds``, ``durable_live_workers``.
- ``durable_claim_latency_seconds{quantile}``: how long executions claimed in the last
  ``RECENT_WINDOW`` seconds waited between becoming due and being claimed;
  ``durable_run_duration_seconds{quantile}``: how long executions that finished in that window
  ran (from their last claim). Both read at most the newest ``RECENT_ROWS`` rows (by primary
  key, an index scan), so a scrape stays cheap on a big table.
- ``durable_storage_operation_duration_seconds{operation, quantile}``: the storage calls of
  the process that serves the scrape (last 30 minutes).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from typing import Any

from django.db.models import Count
from django.utils import timezone

from .health import live_worker_count, oldest_ready_age
from .models import Status, TaskExecution
from .storage import get_storage

__all__ = ["RECENT_ROWS", "RECENT_WINDOW", "DurableCollector", "render_metrics"]

#: Seconds of recent claims and finishes that the latency and duration quantiles cover.
RECENT_WINDOW = 300.0
#: Newest rows read for those quantiles at most.
RECENT_ROWS = 10_000
QUANTILES = (0.5, 0.9, 0.99)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _summary(name: str, documentation: str, values: list[float]) -> Any:
    from prometheus_client.core import Metric

    metric = Metric(name, documentation, "summary")
    values.sort()
    for q in QUANTILES:
        metric.add_sample(
            name, {"quantile": str(q)}, _quantile(values, q) if values else float("nan")
        )
    metric.add_sample(name + "_count", {}, float(len(values)))
    metric.add_sample(name + "_sum", {}, float(sum(values)))
    return metric


class DurableCollector:
    """A ``prometheus_client`` collector over the executions and workers tables."""

    def __init__(self, now: datetime.datetime | None = None) -> None:
        self.now = now

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily, Metric

        now = self.now or timezone.now()
        by_status = GaugeMetricFamily(
            "durable_executions", "Task executions by status.", labels=["status"]
        )
        by_task = GaugeMetricFamily(
            "durable_task_executions",
            "Task executions by task and status (non-zero counts).",
            labels=["task_id", "status"],
        )
        totals = dict.fromkeys(Status.values, 0)
        rows = (
            TaskExecution.objects.order_by()
            .values_list("task_id", "status")
            .annotate(count=Count("id"))
        )
        for task_id, status, count in rows:
            totals[str(status)] = totals.get(str(status), 0) + count
            by_task.add_metric([task_id, str(status)], count)
        for status, count in totals.items():
            by_status.add_metric([status], count)
        yield by_status
        yield by_task

        age = oldest_ready_age(now)
        yield GaugeMetricFamily(
            "durable_oldest_ready_age_seconds",
            "Seconds since the oldest ready execution became due (0 when none is).",
            value=age or 0.0,
        )
        yield GaugeMetricFamily(
            "durable_live_workers",
            "Worker processes with a heartbeat within 3 HEARTBEAT_INTERVALs.",
            value=live_worker_count(now),
        )

        latencies, durations = self._recent(now)
        yield _summary(
            "durable_claim_latency_seconds",
            f"Seconds from due to claimed, executions claimed in the last {RECENT_WINDOW:g} s.",
            latencies,
        )
        yield _summary(
            "durable_run_duration_seconds",
            f"Seconds from claim to finish, executions finished in the last {RECENT_WINDOW:g} s.",
            durations,
        )

        storage = Metric(
            "durable_storage_operation_duration_seconds",
            "Durations of the storage operations of this process over the last 30 minutes.",
            "summary",
        )
        name = "durable_storage_operation_duration_seconds"
        for stats in get_storage().metrics():
            quantiles = dict(stats.quantiles)
            for q in (0.5, 0.9, 0.95):
                value = quantiles.get(q)
                storage.add_sample(
                    name,
                    {"operation": stats.process_name, "quantile": str(q)},
                    float("nan") if value is None else value / 1000,
                )
            storage.add_sample(name + "_count", {"operation": stats.process_name}, stats.count)
        yield storage

    def _recent(self, now: datetime.datetime) -> tuple[list[float], list[float]]:
        since = now - datetime.timedelta(seconds=RECENT_WINDOW)
        rows = (
            TaskExecution.objects.filter(is_sleeping_task=False)
            .order_by("-id")
            .values_list("start_at", "started_at", "finished_at")[:RECENT_ROWS]
        )
        latencies: list[float] = []
        durations: list[float] = []
        for start_at, started_at, finished_at in rows:
            if started_at is None:
                continue
            if started_at >= since:
                latencies.append(max(0.0, (started_at - start_at).total_seconds()))
            if finished_at is not None and finished_at >= since:
                durations.append(max(0.0, (finished_at - started_at).total_seconds()))
        return latencies, durations


def render_metrics(now: datetime.datetime | None = None) -> str:
    """The metrics in the Prometheus text format (a fresh registry per call)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DurableCollector(now))
    return generate_latest(registry).decode("utf-8")
