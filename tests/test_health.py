"""Health: ``check_health`` and ``manage.py durable_health`` (healthy and unhealthy)."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from django_durable.health import check_health
from django_durable.models import Worker


def run_health(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("durable_health", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    return code, out.getvalue(), err.getvalue()


def add_worker(seconds_ago: float) -> None:
    now = timezone.now()
    Worker.objects.create(
        worker_id=f"de_{int(seconds_ago)}",
        hostname="h",
        pid=1,
        started_at=now - timedelta(seconds=seconds_ago),
        last_heartbeat_at=now - timedelta(seconds=seconds_ago),
    )


@pytest.mark.django_db
def test_healthy_with_a_live_worker():
    add_worker(1)
    add_worker(3600)  # silent: not counted
    code, out, _ = run_health()
    assert code == 0
    assert out.splitlines() == [
        "database: ok",
        "live workers: 1",
        "oldest ready execution waited: none ready",
        "healthy",
    ]
    code, out, _ = run_health("--json")
    report = json.loads(out)
    assert (code, report["healthy"], report["live_workers"]) == (0, True, 1)


@pytest.mark.django_db
def test_unhealthy_without_a_live_worker_unless_allowed():
    add_worker(3600)
    code, out, err = run_health()
    assert code == 1
    assert "live workers: 0" in out
    assert "UNHEALTHY: no worker is alive" in err
    assert run_health("--allow-no-workers")[0] == 0
    report = json.loads(run_health("--json")[1])
    assert report["healthy"] is False
    assert report["problems"] == ["no worker is alive (none beat within 3 heartbeat intervals)"]


@pytest.mark.django_db(transaction=True)
def test_unhealthy_when_the_database_is_unreachable(tmp_path: Any):
    settings_dict = connection.settings_dict
    saved = dict(settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        settings_dict["NAME"] = str(tmp_path / "missing-dir" / "db.sqlite3")
    else:
        settings_dict["PORT"] = "1"  # nothing listens there
    try:
        report = check_health()
        code, out, err = run_health("--allow-no-workers")
        json_code, json_out, _ = run_health("--json")
    finally:
        connection.close()
        settings_dict.clear()
        settings_dict.update(saved)
    assert (report.database, report.live_workers, report.healthy) == ("unavailable", None, False)
    assert code == 1
    assert "database: unavailable" in out
    assert "UNHEALTHY: the database is unreachable" in err
    assert json_code == 1
    assert json.loads(json_out)["database"] == "unavailable"


@pytest.mark.django_db
def test_max_ready_age_fails_when_ready_work_waits_too_long():
    from tests.storage.conformance import make_row

    add_worker(1)
    make_row(timezone.now() - timedelta(seconds=100)).save()
    assert run_health("--max-ready-age", "600")[0] == 0
    code, out, err = run_health("--max-ready-age", "10")
    assert code == 1
    assert "oldest ready execution waited: 10" in out
    assert "UNHEALTHY: the oldest ready execution waited 10" in err
