"""What ``GET stats/``, ``GET health/`` and ``GET metrics/`` report, and the Prometheus text.

Each figure is one bounded query: counts by status are one ``GROUP BY``, the oldest ready
execution one ``MIN`` over the (partially indexed) ready rows, live workers one count.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.db.models import Count
from django.utils import timezone

from ..health import database_ping, live_worker_count, oldest_ready_age
from ..models import Status, TaskExecution
from ..storage import get_storage

__all__ = [
    "collect_stats",
    "database_ping",
    "live_worker_count",
    "oldest_ready_age",
    "prometheus_text",
    "status_counts",
    "storage_operations",
]


def status_counts() -> dict[str, int]:
    """Executions per status, every status present (one ``GROUP BY status``)."""
    counts = dict.fromkeys(Status.values, 0)
    rows = TaskExecution.objects.order_by().values_list("status").annotate(count=Count("id"))
    for status, count in rows:
        counts[str(status)] = count
    return counts


def storage_operations() -> list[dict[str, Any]]:
    """Timing summaries of this process's storage operations (last 30 minutes, in ms)."""
    operations = []
    for stats in get_storage().metrics():
        quantiles = dict(stats.quantiles)
        operations.append(
            {
                "operation": stats.process_name,
                "count": stats.count,
                "min_ms": stats.min,
                "max_ms": stats.max,
                "p50_ms": quantiles.get(0.5),
                "p90_ms": quantiles.get(0.9),
                "p95_ms": quantiles.get(0.95),
            }
        )
    return operations


def collect_stats(now: datetime.datetime | None = None) -> dict[str, Any]:
    """Everything ``GET stats/`` returns."""
    now = now or timezone.now()
    counts = status_counts()
    return {
        "executions": counts,
        "total": sum(counts.values()),
        "oldest_ready_age_seconds": oldest_ready_age(now),
        "live_workers": live_worker_count(now),
        "storage": storage_operations(),
    }


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def prometheus_text(stats: dict[str, Any]) -> str:
    """``stats`` (from :func:`collect_stats`) in the Prometheus text exposition format 0.0.4."""
    lines = [
        "# HELP durable_executions Task executions by status.",
        "# TYPE durable_executions gauge",
    ]
    for status, count in stats["executions"].items():
        lines.append(f'durable_executions{{status="{_label(status)}"}} {count}')
    lines += [
        "# HELP durable_oldest_ready_age_seconds Seconds since the oldest ready execution "
        "became due (0 when none is).",
        "# TYPE durable_oldest_ready_age_seconds gauge",
        f"durable_oldest_ready_age_seconds {_number(stats['oldest_ready_age_seconds'] or 0.0)}",
        "# HELP durable_live_workers Worker processes with a recent heartbeat.",
        "# TYPE durable_live_workers gauge",
        f"durable_live_workers {stats['live_workers']}",
        "# HELP durable_storage_operation_duration_seconds Durations of the storage operations "
        "of this process over the last 30 minutes.",
        "# TYPE durable_storage_operation_duration_seconds summary",
    ]
    for operation in stats["storage"]:
        name = _label(operation["operation"])
        for quantile, key in (("0.5", "p50_ms"), ("0.9", "p90_ms"), ("0.95", "p95_ms")):
            value = operation[key]
            text = "NaN" if value is None else _number(value / 1000)
            lines.append(
                f'durable_storage_operation_duration_seconds{{operation="{name}",'
                f'quantile="{quantile}"}} {text}'
            )
        lines.append(
            f'durable_storage_operation_duration_seconds_count{{operation="{name}"}} '
            f"{operation['count']}"
        )
    return "\n".join(lines) + "\n"
