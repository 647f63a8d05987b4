"""``testproject/manage.py durable_example``, run as ``scripts/example.sh`` runs it: a real
process (which starts a real worker process) on the test database (twice in a row on SQLite)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from django_durable.models import TaskExecution, Worker

REPO_ROOT = Path(__file__).resolve().parents[2]
MANAGE = REPO_ROOT / "testproject" / "manage.py"

pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    """The test database as a ``DATABASE_URL`` for the test project's settings."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        credentials = quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            credentials += ":" + quote(db["PASSWORD"], safe="")
        return f"postgres://{credentials}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    pytest.skip(f"no DATABASE_URL for {connection.vendor}")


def run_example(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url()}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, str(MANAGE), "durable_example", "--worker-log", str(tmp_path / "w.log")],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_durable_example_runs_the_workflows_on_a_worker_and_prints_their_trees(
    tmp_path: Path,
) -> None:
    # scripts/example.sh keeps its SQLite database: a second run on the first one's rows works too.
    runs = (1, 2) if connection.vendor == "sqlite" else (1,)
    for run in runs:
        result = run_example(tmp_path)
        output = result.stdout
        assert result.returncode == 0, f"run {run}:\n{output}\n{result.stderr}"
        assert "All 5 example workflows completed." in output
        assert "the worker exited with code 0" in output
        # Progress lines: every workflow's last status change is always seen, and the demo
        # wakes the sleeping payment up as a webhook would.
        for label, task_id in [
            ("upload", "example.upload_file"),
            ("pipeline", "example.pipeline"),
            ("retries", "example.flaky"),
            ("poll", "example.poll_report"),
            ("order", "example.place_order"),
        ]:
            assert re.search(rf"\ds  {label} +{task_id} completed  -> ", output), label
        assert "→ the payment provider calls your webhook" in output
        # The trees, with statuses and outputs.
        assert (
            "example.upload_file [completed] " in output
            and '-> {"path": "report.pdf", "title": "Title of report.pdf", "words": 1000}' in output
        )
        assert "├─ example.extract_title [completed]" in output
        assert "└─ example.count_words [completed]" in output
        assert (
            "example.pipeline [completed]" in output and "└─ example.add_one [completed]" in output
        )
        assert 'retries=2 -> "succeeded on attempt 2"' in output
        assert '"output": {"report": "q3", "pages": 12}' in output
        assert '"payment": {"paid": true, "amount": "19.90"}, "shipped": true' in output
        # How to look at them next.
        assert "createsuperuser" in output
        assert "runserver" in output and "/admin/django_durable/taskexecution/" in output

    roots = TaskExecution.objects.filter(parent_execution_id__isnull=True)
    assert roots.count() == 5 * len(runs)
    assert set(roots.values_list("status", flat=True)) == {"completed"}
    assert Worker.objects.count() == len(runs)
    assert not Worker.objects.filter(stopped_at__isnull=True).exists()
