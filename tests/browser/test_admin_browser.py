"""The admin in a real browser: Playwright drives Debian's headless Chromium against the live
test server. A staff user logs in, lists executions, filters them by status, opens a parent
and sees its children's tree, then wakes a sleeping child and sees the parent complete.

Screenshots go to ``test-artifacts/screenshots/`` (``DURABLE_TEST_ARTIFACTS`` overrides the
folder). Skipped when the ``playwright`` package or Chromium (``/usr/bin/chromium``, or
``DURABLE_TEST_CHROMIUM``) is missing, unless ``DURABLE_REQUIRE_BROWSER=1`` makes that a failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import django
import pytest
from django.db import connection
from django.utils import timezone

from django_durable import (
    DurableExecutionError,
    ParentResult,
    child,
    parent_task,
    sleeping_task,
    task,
)
from django_durable.models import Status, TaskExecution, Worker
from django_durable.testing import wait_until

CHROMIUM = os.environ.get("DURABLE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("DURABLE_TEST_ARTIFACTS")
    or Path(__file__).resolve().parents[2] / "test-artifacts"
)
TIMEOUT_MS = 15_000


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install playwright)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    return None


_reason = _missing()
if _reason and os.environ.get("DURABLE_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"DURABLE_REQUIRE_BROWSER=1 but {_reason}")
pytestmark = [
    pytest.mark.skipif(_reason is not None, reason=f"browser test: {_reason}"),
    pytest.mark.slow,
]

USERNAME = "operator"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def screenshots() -> Any:
    """``shot(page, name)`` saves a full-page screenshot named after the database and Django."""
    folder = ARTIFACTS / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    suffix = f"{connection.vendor}-django{django.VERSION[0]}{django.VERSION[1]}"
    saved: list[Path] = []

    def shot(page: Any, name: str) -> Path:
        path = folder / f"admin-{len(saved) + 1:02d}-{name}-{suffix}.png"
        page.screenshot(path=str(path), full_page=True)
        saved.append(path)
        return path

    shot.saved = saved  # type: ignore[attr-defined]
    return shot


@pytest.fixture
def family(executor) -> dict[str, str]:
    """A parent run by a real executor: one child completed, one failed, one sleeping."""

    @task(id="browser.extract_title", timeout=10)
    def extract_title(ctx, input):
        return {"title": f"Title of {input['path']}"}

    @task(id="browser.count_words", timeout=10)
    def count_words(ctx, input):
        raise DurableExecutionError("disk full", is_retryable=False)

    approval = sleeping_task(id="browser.wait_for_approval", timeout=600)

    @parent_task(id="browser.upload_file", timeout=10)
    def upload_file(ctx, input):
        return ParentResult(
            output={"path": input["path"]},
            children=[
                child(extract_title, input),
                child(count_words, input),
                child(approval, f"approval-{ctx.execution_id}"),
            ],
        )

    parent_id = upload_file.enqueue({"path": "report.pdf"}).execution_id

    def settled() -> dict[str, str] | None:
        rows = {
            row.task_id: row
            for row in TaskExecution.objects.filter(root_execution_id=parent_id).only(
                "task_id", "execution_id", "status"
            )
        }
        wanted = {
            "browser.extract_title": Status.COMPLETED,
            "browser.count_words": Status.FAILED,
            "browser.wait_for_approval": Status.RUNNING,
        }
        if all(task_id in rows and rows[task_id].status == s for task_id, s in wanted.items()):
            return {task_id.split(".")[1]: row.execution_id for task_id, row in rows.items()}
        return None

    children = wait_until(settled, timeout=20, message="children did not settle")
    return {"parent": parent_id, **children}


def test_operator_filters_executions_and_follows_a_parent_tree(
    live_server, django_user_model, family, screenshots, settings
) -> None:
    from playwright.sync_api import expect, sync_playwright

    django_user_model.objects.create_superuser(USERNAME, "operator@example.com", PASSWORD)
    # Live means a heartbeat within 3 intervals: long enough for this test to reach the page.
    settings.DURABLE = {**settings.DURABLE, "HEARTBEAT_INTERVAL": 60}
    now = timezone.now()
    Worker.objects.create(
        worker_id="de_live0001",
        hostname="web-1",
        pid=4242,
        queues=["emails", "default"],
        concurrency=50,
        started_at=now - timedelta(hours=2),
        last_heartbeat_at=now,
    )
    Worker.objects.create(
        worker_id="de_silent01",
        hostname="web-2",
        pid=4343,
        queues=[],
        concurrency=50,
        started_at=now - timedelta(hours=3),
        last_heartbeat_at=now - timedelta(minutes=20),
    )
    base = live_server.url
    parent_id = family["parent"]

    # Only the browser from here on: the ORM is not used while Playwright's loop runs.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)

            # Log in, landing on the execution list.
            page.goto(f"{base}/admin/django_durable/taskexecution/")
            expect(page).to_have_url(re.compile(r"/admin/login/"))
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            expect(page).to_have_url(re.compile(r"/admin/django_durable/taskexecution/$"))
            rows = page.locator("#result_list tbody tr")
            expect(rows).to_have_count(4)
            expect(page.locator("#result_list .durable-status-failed")).to_have_count(1)
            expect(page.locator("#result_list .durable-status-completed")).to_have_count(1)
            screenshots(page, "list")

            # Filter by status with the sidebar.
            page.locator("#changelist-filter").get_by_role(
                "link", name="Failed", exact=True
            ).click()
            expect(page).to_have_url(re.compile(r"status__exact=failed"))
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text("browser.count_words")
            expect(rows.first.locator(".durable-status")).to_have_text("Failed")
            screenshots(page, "filtered-failed")

            # Back to all, find the parent by its execution id, open its page.
            page.goto(f"{base}/admin/django_durable/taskexecution/?q={parent_id}")
            expect(rows).to_have_count(1)
            rows.first.get_by_role("link", name=parent_id).click()
            expect(page.locator("#content h2", has_text="Execution tree")).to_be_visible()
            tree = page.locator("ul.durable-tree")
            expect(tree).to_be_visible()
            root_node = tree.locator(f'li[data-execution-id="{parent_id}"]')
            expect(root_node).to_have_attribute("data-status", "waiting_for_children")
            expect(root_node).to_have_attribute("aria-current", "true")
            expected = {
                "extract_title": "Completed",
                "count_words": "Failed",
                "wait_for_approval": "Running",
            }
            for name, label in expected.items():
                node = root_node.locator(f'ul > li[data-execution-id="{family[name]}"]')
                expect(node).to_be_visible()
                expect(node.locator(".durable-status").first).to_have_text(label)
                expect(node).to_contain_text(f"browser.{name}")
            expect(page.locator(".field-run_output_pretty")).to_contain_text('"path": "report.pdf"')
            screenshots(page, "parent-tree")

            # Follow the sleeping child, wake it with an output (a bad one first).
            root_node.locator(f'li[data-execution-id="{family["wait_for_approval"]}"] > a').click()
            page.get_by_role("link", name="Wake up…").click()
            page.fill("#id_output", "{approved: yes}")
            page.get_by_role("button", name="Wake up").click()
            expect(page.locator(".errorlist")).to_contain_text("Not valid JSON")
            page.fill("#id_output", '{"approved": true}')
            screenshots(page, "wakeup-form")
            page.get_by_role("button", name="Wake up").click()
            expect(page.locator("ul.messagelist")).to_contain_text("Woke 1 sleeping execution")
            expect(page.locator(".field-output_pretty")).to_contain_text('"approved": true')

            # The parent completes (all settled) once the executor sees its last child finish.
            page.goto(f"{base}/admin/django_durable/taskexecution/?q={parent_id}")
            rows.first.get_by_role("link", name=parent_id).click()
            node = page.locator(f'ul.durable-tree li[data-execution-id="{parent_id}"]')
            for _ in range(100):
                if node.get_attribute("data-status") == "completed":
                    break
                page.wait_for_timeout(100)
                page.reload()
            expect(node).to_have_attribute("data-status", "completed")
            expect(
                node.locator(
                    f'li[data-execution-id="{family["wait_for_approval"]}"] .durable-status'
                )
            ).to_have_text("Completed")
            screenshots(page, "parent-completed")

            # The workers, live and silent.
            page.get_by_role("link", name="Workers").first.click()
            worker_rows = page.locator("#result_list tbody tr")
            expect(worker_rows).to_have_count(2)
            expect(page.locator(".durable-liveness-live")).to_have_text("Live")
            expect(page.locator(".durable-liveness-silent")).to_have_text("Silent (presumed dead)")
            screenshots(page, "workers")
        finally:
            browser.close()

    for path in screenshots.saved:
        assert path.stat().st_size > 10_000, path
    assert TaskExecution.objects.get(execution_id=parent_id).status == Status.COMPLETED
