"""The read-only admin: list, filters, search, the detail page with its execution tree, the
cancel and wake-up actions, permissions, and bounded queries on a big table."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from django_durable import sleeping_task, task
from django_durable.admin import (
    CappedCountPaginator,
    build_execution_tree,
    format_duration,
    pretty_stored_value,
)
from django_durable.models import (
    FINISHED_STATUSES,
    CloseStatus,
    Status,
    TaskExecution,
    Worker,
    generate_execution_id,
)
from django_durable.serialization import serialize

CHANGELIST = "admin:django_durable_taskexecution_changelist"


def change_url(execution: TaskExecution | str) -> str:
    key = execution if isinstance(execution, str) else str(execution.pk)
    return reverse("admin:django_durable_taskexecution_change", args=[quote(key)])


def make_row(
    task_id: str = "admin.task", status: str = Status.READY, **fields: Any
) -> TaskExecution:
    """An execution row written directly (the admin only reads rows)."""
    now = fields.pop("now", None) or timezone.now()
    values: dict[str, Any] = {
        "execution_id": generate_execution_id(),
        "task_id": task_id,
        "status": status,
        "timeout": 10.0,
        "start_at": now,
        "created_at": now,
        "updated_at": now,
        "input": serialize({"path": "a.txt"}, max_size=None),
        "is_finished": status in FINISHED_STATUSES,
    }
    if status != Status.READY:
        values["started_at"] = now
    if values["is_finished"]:
        values["finished_at"] = now + timedelta(seconds=1.5)
    values.update(fields)
    return TaskExecution.objects.create(**values)


def make_family() -> dict[str, TaskExecution]:
    """A parent waiting for its children: one completed, one failed, one nested parent with a
    running grandchild, and a finalize not yet created."""
    parent = make_row("admin.upload", Status.WAITING_FOR_CHILDREN, active_children_count=2)
    family = {"parent": parent}

    def kid(name: str, task_id: str, status: str, index: int, of: TaskExecution, **extra: Any):
        row = make_row(
            task_id,
            status,
            root_task_id=parent.task_id,
            root_execution_id=parent.execution_id,
            parent_task_id=of.task_id,
            parent_execution_id=of.execution_id,
            index_in_parent_children=index,
            **extra,
        )
        family[name] = row
        return row

    kid(
        "ok",
        "admin.extract",
        Status.COMPLETED,
        0,
        parent,
        output=serialize({"title": "Hello", "when": timezone.now()}, max_size=None),
    )
    kid(
        "bad",
        "admin.count",
        Status.FAILED,
        1,
        parent,
        retry_attempts=2,
        error={
            "error_type": "generic",
            "message": "disk full",
            "is_retryable": False,
            "is_internal": False,
        },
    )
    nested = kid("nested", "admin.nested", Status.WAITING_FOR_CHILDREN, 2, parent)
    kid("grandchild", "admin.deep", Status.RUNNING, 0, nested)
    parent.children = [
        {"task_id": r.task_id, "execution_id": r.execution_id}
        for r in (family["ok"], family["bad"], nested)
    ]
    parent.run_output = serialize({"path": "a.txt"}, max_size=None)
    parent.save(update_fields=["children", "run_output"])
    return family


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def listed_ids(response) -> set[str]:
    return {row.execution_id for row in response.context["cl"].result_list}


# -- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.35, "350 ms"),
        (12.34, "12.3 s"),
        (242, "4 min 2 s"),
        (3 * 3600 + 300, "3 h 5 min"),
        (2 * 86400 + 3600, "2 d 1 h"),
        (-1, "0 ms"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_pretty_stored_value_indents_json_and_keeps_unreadable_text() -> None:
    text = serialize({"b": [1, 2], "when": timezone.datetime(2024, 5, 1, 12, 0)}, max_size=None)
    assert pretty_stored_value(text) == (
        '{\n  "b": [\n    1,\n    2\n  ],\n  "when": "2024-05-01T12:00:00"\n}'
    )
    assert pretty_stored_value("not json {") == "not json {"
    assert pretty_stored_value(None) is None
    # Values JSON cannot show (a dict with tuple keys) fall back to pprint.
    assert pretty_stored_value(serialize({(1, 2): "x"}, max_size=None)) == "{(1, 2): 'x'}"


# -- the list ---------------------------------------------------------------------------------


@pytest.mark.django_db
class TestChangelist:
    def test_lists_executions_with_coloured_status_and_family_links(self, admin_client) -> None:
        family = make_family()
        response = admin_client.get(reverse(CHANGELIST))
        assert response.status_code == 200
        body = response.content.decode()
        for name in ("parent", "ok", "bad", "nested", "grandchild"):
            assert family[name].execution_id in body
        assert 'class="durable-status durable-status-completed"' in body
        assert 'class="durable-status durable-status-failed"' in body
        assert "django_durable/admin.css" in body
        # The grandchild links to its parent (nested) and its root (parent) by execution id.
        assert f'href="{change_url(family["nested"].execution_id)}"' in body
        assert f'href="{change_url(family["parent"].execution_id)}"' in body
        assert "1.5 s" in body  # duration of the finished ones
        # No add button, no delete action.
        assert reverse("admin:django_durable_taskexecution_add") not in body
        assert 'value="delete_selected"' not in body
        assert 'value="cancel_selected"' in body

    def test_filters_by_status(self, admin_client) -> None:
        family = make_family()
        response = admin_client.get(reverse(CHANGELIST), {"status__exact": "failed"})
        assert listed_ids(response) == {family["bad"].execution_id}
        response = admin_client.get(reverse(CHANGELIST), {"status__exact": "waiting_for_children"})
        assert listed_ids(response) == {
            family["parent"].execution_id,
            family["nested"].execution_id,
        }

    def test_filters_by_close_status_sleeping_level_and_date(self, admin_client) -> None:
        family = make_family()
        closed = make_row("admin.closed", Status.COMPLETED, close_status=CloseStatus.CLOSED)
        sleeper = make_row(
            "admin.sleeper",
            Status.RUNNING,
            is_sleeping_task=True,
            sleeping_task_unique_id="order-42",
        )
        old = make_row("admin.old", Status.COMPLETED, now=timezone.now() - timedelta(days=40))
        url = reverse(CHANGELIST)
        assert listed_ids(admin_client.get(url, {"close_status__exact": "closed"})) == {
            closed.execution_id
        }
        assert listed_ids(admin_client.get(url, {"is_sleeping_task__exact": "1"})) == {
            sleeper.execution_id
        }
        top = listed_ids(admin_client.get(url, {"level": "top"}))
        assert family["parent"].execution_id in top
        assert family["ok"].execution_id not in top
        children = listed_ids(admin_client.get(url, {"level": "child"}))
        assert family["grandchild"].execution_id in children
        assert family["parent"].execution_id not in children
        since = str(timezone.now() - timedelta(days=7))
        recent = listed_ids(admin_client.get(url, {"created_at__gte": since}))
        assert old.execution_id not in recent
        assert family["parent"].execution_id in recent
        # Lookups on a local field work from the URL (the tree's "list the descendants" link).
        descendants = listed_ids(
            admin_client.get(url, {"root_execution_id": family["parent"].execution_id})
        )
        assert descendants == {
            family[n].execution_id for n in ("ok", "bad", "nested", "grandchild")
        }

    def test_task_id_filter_offers_registered_tasks_without_scanning(self, admin_client) -> None:
        @task(id="admin.registered", timeout=5)
        def registered(ctx, input):
            return input

        make_row("admin.registered")
        other = make_row("admin.unregistered")
        response = admin_client.get(reverse(CHANGELIST))
        body = response.content.decode()
        assert "?task_id=admin.registered" in body
        assert "?task_id=admin.unregistered" not in body  # not registered: not offered
        # ... but can still be filtered by, and then shows in the filter.
        response = admin_client.get(reverse(CHANGELIST), {"task_id": "admin.unregistered"})
        assert listed_ids(response) == {other.execution_id}
        assert "?task_id=admin.unregistered" in response.content.decode()

    def test_search_by_execution_id_sleeping_id_and_task_id_prefix(self, admin_client) -> None:
        family = make_family()
        sleeper = make_row(
            "admin.sleeper",
            Status.RUNNING,
            is_sleeping_task=True,
            sleeping_task_unique_id="order-42",
        )
        url = reverse(CHANGELIST)
        assert listed_ids(admin_client.get(url, {"q": family["bad"].execution_id})) == {
            family["bad"].execution_id
        }
        assert listed_ids(admin_client.get(url, {"q": " order-42 "})) == {sleeper.execution_id}
        assert listed_ids(admin_client.get(url, {"q": "admin.ext"})) == {family["ok"].execution_id}
        assert listed_ids(admin_client.get(url, {"q": "order-4"})) == set()  # exact, not prefix
        assert listed_ids(admin_client.get(url, {"q": "nothing"})) == set()

    def test_count_is_capped(self, admin_client, monkeypatch) -> None:
        monkeypatch.setattr(CappedCountPaginator, "count_limit", 5)
        for _ in range(7):
            make_row("admin.many", Status.COMPLETED)
        response = admin_client.get(reverse(CHANGELIST), {"task_id": "admin.many"})
        cl = response.context["cl"]
        assert cl.result_count == 5
        assert cl.paginator.count_is_capped
        assert "More than 5 executions match" in response.content.decode()
        response = admin_client.get(reverse(CHANGELIST), {"task_id": "admin.nope"})
        assert response.context["cl"].result_count == 0
        assert not response.context["cl"].paginator.count_is_capped

    @pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's row estimate")
    def test_unfiltered_count_is_postgresql_estimate_on_big_tables(
        self, admin_client, monkeypatch
    ) -> None:
        monkeypatch.setattr(CappedCountPaginator, "count_limit", 5)
        for _ in range(20):
            make_row("admin.many", Status.COMPLETED)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {TaskExecution._meta.db_table}")
        response = admin_client.get(reverse(CHANGELIST))
        cl = response.context["cl"]
        assert cl.paginator.count_is_estimate
        assert cl.result_count == 20
        assert "estimate" in response.content.decode()


# -- the detail page --------------------------------------------------------------------------


@pytest.mark.django_db
class TestDetail:
    def test_is_read_only_with_pretty_values_and_family_links(self, admin_client) -> None:
        family = make_family()
        response = admin_client.get(change_url(family["ok"]))
        assert response.status_code == 200
        body = response.content.decode()
        assert 'name="_save"' not in body
        form = body.split('id="taskexecution_form"')[1].split("</form>")[0]
        assert "<textarea" not in form
        assert "<select" not in form
        # Indented JSON of the input and output (a datetime shown as its ISO text).
        assert html.escape('{\n  "path": "a.txt"\n}', quote=True) in body
        assert html.escape('"title": "Hello"', quote=True) in body
        assert re.search(r"&quot;when&quot;: &quot;\d{4}-\d\d-\d\dT", body)
        # Root and parent link to the parent by execution id.
        assert f'href="{change_url(family["parent"].execution_id)}"' in body

        response = admin_client.get(change_url(family["bad"]))
        body = response.content.decode()
        assert html.escape('"message": "disk full"', quote=True) in body

    def test_parent_shows_children_finalize_and_raw_text(self, admin_client) -> None:
        family = make_family()
        parent = family["parent"]
        finalize = make_row(
            "admin.combine",
            Status.READY,
            root_task_id=parent.task_id,
            root_execution_id=parent.execution_id,
            parent_task_id=parent.task_id,
            parent_execution_id=parent.execution_id,
            is_finalize_of_parent=True,
            input="not json {",
        )
        parent.finalize = {"task_id": finalize.task_id, "execution_id": finalize.execution_id}
        parent.save(update_fields=["finalize"])
        body = admin_client.get(change_url(parent)).content.decode()
        assert f'href="{change_url(finalize.execution_id)}"' in body  # finalize link
        for name in ("ok", "bad", "nested"):
            assert f'href="{change_url(family[name].execution_id)}"' in body
        assert "List the 3 children" in body
        body = admin_client.get(change_url(finalize)).content.decode()
        assert "not json {" in body  # unreadable input shown as stored

    def test_draws_the_execution_tree(self, admin_client) -> None:
        family = make_family()
        response = admin_client.get(change_url(family["parent"]))
        body = response.content.decode()
        assert "Execution tree" in body
        tree = response.context["execution_tree"]
        assert tree.size == 5
        assert not tree.truncated
        nodes = re.findall(r'data-execution-id="(te_\w+)" data-status="(\w+)"', body)
        expected = [
            (family["parent"].execution_id, "waiting_for_children"),
            (family["ok"].execution_id, "completed"),
            (family["bad"].execution_id, "failed"),
            (family["nested"].execution_id, "waiting_for_children"),
            (family["grandchild"].execution_id, "running"),
        ]
        assert nodes == expected  # depth-first, children in their order
        html_tree = str(tree.html)
        # The grandchild is nested inside the nested parent's list.
        nested_at = html_tree.index(family["nested"].execution_id)
        assert html_tree.index("<ul>", nested_at) < html_tree.index(
            family["grandchild"].execution_id
        )
        assert html_tree.count("<ul") == html_tree.count("</ul>")
        assert html_tree.count("<li") == html_tree.count("</li>")
        assert "2 retries" in html_tree

    def test_a_child_page_draws_the_whole_tree_with_itself_marked(self, admin_client) -> None:
        family = make_family()
        body = admin_client.get(change_url(family["grandchild"].execution_id)).content.decode()
        assert (
            'durable-node durable-node-current" '
            f'data-execution-id="{family["grandchild"].execution_id}"' in body
        )
        assert family["parent"].execution_id in body

    def test_tree_is_capped(self, db) -> None:
        parent = make_row("admin.parent", Status.WAITING_FOR_CHILDREN)
        for index in range(6):
            make_row(
                "admin.kid",
                Status.COMPLETED,
                root_execution_id=parent.execution_id,
                root_task_id=parent.task_id,
                parent_execution_id=parent.execution_id,
                parent_task_id=parent.task_id,
                index_in_parent_children=index,
            )
        tree = build_execution_tree(parent, link=lambda row: "#", limit=4)
        assert tree.truncated
        assert tree.size == 4
        assert str(tree.html).count('class="durable-node') == 4

    def test_deep_tree_does_not_recurse(self, db) -> None:
        root = make_row("admin.loop", Status.WAITING_FOR_CHILDREN)
        parent = root
        for _ in range(1500):
            parent = make_row(
                "admin.loop",
                Status.WAITING_FOR_CHILDREN,
                root_execution_id=root.execution_id,
                root_task_id=root.task_id,
                parent_execution_id=parent.execution_id,
                parent_task_id="admin.loop",
            )
        tree = build_execution_tree(parent, link=lambda row: "#")
        assert tree.size == 1501
        assert str(tree.html).count("<ul>") == 1500

    def test_unknown_execution_id_redirects_with_a_message(self, admin_client) -> None:
        response = admin_client.get(change_url("te_doesnotexist"))
        assert response.status_code == 302

    def test_sleeping_execution_shows_its_unique_id_and_wakeup_button(self, admin_client) -> None:
        sleeper = make_row(
            "admin.sleeper",
            Status.RUNNING,
            is_sleeping_task=True,
            sleeping_task_unique_id="order-42",
            input="",
        )
        body = admin_client.get(change_url(sleeper)).content.decode()
        assert html.escape('"order-42"', quote=True) in body
        assert "Wake up…" in body
        assert "Cancel execution…" in body
        finished = make_row("admin.done", Status.COMPLETED)
        body = admin_client.get(change_url(finished)).content.decode()
        assert "Cancel execution…" not in body


# -- permissions ------------------------------------------------------------------------------


@pytest.mark.django_db
class TestPermissions:
    def test_no_add_change_or_delete(self, admin_client) -> None:
        row = make_row()
        add = reverse("admin:django_durable_taskexecution_add")
        delete = reverse("admin:django_durable_taskexecution_delete", args=[row.pk])
        assert admin_client.get(add).status_code == 403
        assert admin_client.post(add, {"task_id": "x"}).status_code == 403
        assert admin_client.get(delete).status_code == 403
        assert admin_client.post(delete, {"post": "yes"}).status_code == 403
        response = admin_client.post(change_url(row), {"task_id": "changed", "status": "completed"})
        assert response.status_code == 403
        row.refresh_from_db()
        assert (row.task_id, row.status) == ("admin.task", Status.READY)
        worker = Worker.objects.create(
            worker_id="de_x",
            hostname="h",
            pid=1,
            started_at=timezone.now(),
            last_heartbeat_at=timezone.now(),
        )
        worker_change = reverse("admin:django_durable_worker_change", args=[worker.pk])
        assert admin_client.post(worker_change, {"pid": 2}).status_code == 403
        assert admin_client.get(reverse("admin:django_durable_worker_add")).status_code == 403

    def test_view_only_staff_sees_no_actions_and_cannot_cancel(
        self, client, django_user_model
    ) -> None:
        user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
        user.user_permissions.add(Permission.objects.get(codename="view_taskexecution"))
        client.force_login(user)
        row = make_row()
        body = client.get(reverse(CHANGELIST)).content.decode()
        assert row.execution_id in body
        assert "cancel_selected" not in body
        assert client.get(change_url(row)).status_code == 200
        cancel = reverse("admin:django_durable_taskexecution_cancel", args=[row.pk])
        assert client.post(cancel).status_code == 403
        row.refresh_from_db()
        assert row.status == Status.READY


# -- actions ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
class TestActions:
    def test_cancel_selected(self, admin_client) -> None:
        ready = make_row("admin.a", Status.READY)
        running = make_row("admin.b", Status.RUNNING)
        done = make_row("admin.c", Status.COMPLETED)
        response = admin_client.post(
            reverse(CHANGELIST),
            {
                "action": "cancel_selected",
                "index": 0,
                "_selected_action": [ready.pk, running.pk, done.pk],
            },
            follow=True,
        )
        assert response.status_code == 200
        for row in (ready, running, done):
            row.refresh_from_db()
        assert ready.status == Status.CANCELLED
        assert running.status == Status.CANCELLED
        assert ready.error["error_type"] == "cancelled"
        assert done.status == Status.COMPLETED
        assert messages_of(response) == [
            "Cancelled 2 executions.",
            "1 selected was already finished.",
        ]

    def test_cancel_one_from_its_page(self, admin_client) -> None:
        row = make_row("admin.a", Status.READY)
        cancel = reverse("admin:django_durable_taskexecution_cancel", args=[row.pk])
        response = admin_client.get(cancel)
        assert response.status_code == 200
        assert "Yes, cancel it" in response.content.decode()
        row.refresh_from_db()
        assert row.status == Status.READY  # GET only asks
        response = admin_client.post(cancel, follow=True)
        assert response.redirect_chain[-1][0] == change_url(row)
        row.refresh_from_db()
        assert row.status == Status.CANCELLED
        assert messages_of(response) == ["Cancelled 1 execution."]

    def test_retry_selected_enqueues_a_new_execution_of_each_failed_one(self, admin_client) -> None:
        @task(id="admin.flaky", timeout=10)
        def flaky(ctx: Any, input: Any) -> Any:
            return input

        failed = make_row("admin.flaky", Status.FAILED, error={"message": "boom"})
        done = make_row("admin.flaky", Status.COMPLETED)
        response = admin_client.post(
            reverse(CHANGELIST),
            {"action": "retry_selected", "index": 0, "_selected_action": [failed.pk, done.pk]},
            follow=True,
        )
        assert messages_of(response) == ["Retried 1 execution as new executions."]
        new = TaskExecution.objects.get(retried_from_execution_id=failed.execution_id)
        assert (new.status, new.input, new.task_id) == (Status.READY, failed.input, "admin.flaky")
        assert (
            TaskExecution.objects.filter(retried_from_execution_id=done.execution_id).count() == 0
        )
        again = admin_client.post(
            reverse(CHANGELIST),
            {"action": "retry_selected", "index": 0, "_selected_action": [failed.pk]},
            follow=True,
        )
        assert messages_of(again) == [
            f"{failed.execution_id} was already retried as {new.execution_id}."
        ]
        assert (
            TaskExecution.objects.filter(retried_from_execution_id=failed.execution_id).count() == 1
        )

    def test_wake_selected_asks_then_completes_with_the_output(self, admin_client) -> None:
        sleeper = sleeping_task(id="admin.sleeper", timeout=60)
        first = sleeper.enqueue("order-1").execution_id
        second = sleeper.enqueue("order-2").execution_id
        other = make_row("admin.other", Status.RUNNING)
        rows = {r.execution_id: r for r in TaskExecution.objects.all()}
        selected = [rows[first].pk, rows[second].pk, other.pk]
        url = reverse(CHANGELIST)
        response = admin_client.post(
            url, {"action": "wake_selected", "index": 0, "_selected_action": selected}
        )
        assert response.status_code == 200
        body = response.content.decode()
        assert "order-1" in body and "order-2" in body
        assert other.execution_id not in body  # only sleeping executions
        # Invalid JSON: the form again, with the error.
        data = {
            "action": "wake_selected",
            "_selected_action": selected,
            "apply": "1",
            "select_across": "0",
            "status": "completed",
            "output": "{paid: true}",
        }
        response = admin_client.post(url, data)
        assert response.status_code == 200
        assert "Not valid JSON" in response.content.decode()
        assert TaskExecution.objects.get(execution_id=first).status == Status.RUNNING
        # Valid: both woken, the other one untouched.
        response = admin_client.post(url, {**data, "output": '{"paid": true}'}, follow=True)
        assert messages_of(response) == ["Woke 2 sleeping executions as completed."]
        for execution_id in (first, second):
            row = TaskExecution.objects.get(execution_id=execution_id)
            assert row.status == Status.COMPLETED
            assert pretty_stored_value(row.output) == '{\n  "paid": true\n}'
        other.refresh_from_db()
        assert other.status == Status.RUNNING

    def test_wake_one_as_failed_from_its_page(self, admin_client) -> None:
        sleeper = sleeping_task(id="admin.sleeper", timeout=60)
        execution_id = sleeper.enqueue("order-9").execution_id
        row = TaskExecution.objects.get(execution_id=execution_id)
        url = reverse("admin:django_durable_taskexecution_wakeup", args=[row.pk])
        assert admin_client.get(url).status_code == 200
        response = admin_client.post(url, {"status": "failed", "error_message": ""})
        assert "Give the message of the error." in response.content.decode()
        response = admin_client.post(
            url, {"status": "failed", "error_message": "card declined"}, follow=True
        )
        assert messages_of(response) == ["Woke 1 sleeping execution as failed."]
        row.refresh_from_db()
        assert row.status == Status.FAILED
        assert row.error["message"] == "card declined"

    def test_wake_selected_without_sleeping_executions(self, admin_client) -> None:
        row = make_row("admin.a", Status.RUNNING)
        response = admin_client.post(
            reverse(CHANGELIST),
            {"action": "wake_selected", "index": 0, "_selected_action": [row.pk]},
            follow=True,
        )
        assert messages_of(response) == [
            "None of the selected executions is a sleeping execution that is waiting."
        ]


# -- workers ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_workers_list_shows_liveness(admin_client) -> None:
    now = timezone.now()
    Worker.objects.create(
        worker_id="de_live",
        hostname="web-1",
        pid=10,
        queues=["emails"],
        concurrency=8,
        started_at=now,
        last_heartbeat_at=now,
    )
    Worker.objects.create(
        worker_id="de_silent",
        hostname="web-2",
        pid=11,
        queues=[],
        concurrency=8,
        started_at=now - timedelta(hours=1),
        last_heartbeat_at=now - timedelta(minutes=10),
    )
    Worker.objects.create(
        worker_id="de_gone",
        hostname="web-3",
        pid=12,
        started_at=now,
        last_heartbeat_at=now,
        stopped_at=now,
    )
    url = reverse("admin:django_durable_worker_changelist")
    body = admin_client.get(url).content.decode()
    assert "durable-liveness-live" in body
    assert "durable-liveness-silent" in body
    assert "durable-liveness-stopped" in body
    assert "emails" in body
    assert "executor_id=de_live" in body
    live = admin_client.get(url, {"liveness": "live"}).context["cl"].result_list
    assert [w.worker_id for w in live] == ["de_live"]
    silent = admin_client.get(url, {"liveness": "silent"}).context["cl"].result_list
    assert [w.worker_id for w in silent] == ["de_silent"]


# -- a big table ------------------------------------------------------------------------------

BIG = 100_000


@pytest.fixture
def big_table(db) -> dict[str, TaskExecution]:
    """100,000 executions: families of one parent and four children, statuses mixed.

    Generated by the database from one template row (``INSERT ... SELECT`` over a recursive
    series, the same SQL on SQLite and PostgreSQL): ``bulk_create`` would take minutes.
    """
    template = make_row("admin.big", Status.COMPLETED)
    quote = connection.ops.quote_name
    table = quote(TaskExecution._meta.db_table)
    statuses = [Status.COMPLETED, Status.FAILED, Status.RUNNING, Status.READY, Status.CANCELLED]
    # "%%" is "%" (modulo) once the parameters are bound.
    status_case = " ".join(f"WHEN {i} THEN '{s.value}'" for i, s in enumerate(statuses))
    parent = "(n - n %% 5)"
    generated = {
        "execution_id": "'te_big' || n",
        "task_id": "'admin.big' || (n %% 7)",
        "status": f"CASE n %% 5 {status_case} END",
        "is_finished": "(n %% 5) IN (0, 1, 4)",
        "input": "'{\"n\": ' || n || '}'",
        "parent_execution_id": f"CASE WHEN n %% 5 = 0 THEN NULL ELSE 'te_big' || {parent} END",
        "root_execution_id": f"CASE WHEN n %% 5 = 0 THEN NULL ELSE 'te_big' || {parent} END",
        "parent_task_id": f"CASE WHEN n %% 5 = 0 THEN NULL ELSE 'admin.big' || ({parent} %% 7) END",
        "root_task_id": f"CASE WHEN n %% 5 = 0 THEN NULL ELSE 'admin.big' || ({parent} %% 7) END",
        "index_in_parent_children": "CASE WHEN n %% 5 = 0 THEN 0 ELSE n %% 5 - 1 END",
    }
    columns = [f.column for f in TaskExecution._meta.concrete_fields if not f.primary_key]
    values = [generated.get(column, f"tpl.{quote(column)}") for column in columns]
    sql = (
        f"WITH RECURSIVE series(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM series WHERE n < %s) "
        f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT {', '.join(values)} FROM {table} tpl, series WHERE tpl.id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [BIG - 1, template.pk])
    template.delete()
    assert TaskExecution.objects.count() == BIG
    return {"parent": TaskExecution.objects.get(execution_id=f"te_big{BIG - 5}")}


@pytest.mark.slow
def test_queries_stay_bounded_on_a_big_table(
    admin_client, big_table, django_assert_max_num_queries
) -> None:
    url = reverse(CHANGELIST)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {TaskExecution._meta.db_table}")
    # session, user, count (estimated or capped), page: no query per row.
    with django_assert_max_num_queries(6):
        response = admin_client.get(url)
    cl = response.context["cl"]
    assert len(cl.result_list) == 50
    if connection.vendor == "postgresql":
        assert cl.paginator.count_is_estimate
        assert abs(cl.result_count - BIG) < BIG // 10
    else:
        assert cl.paginator.count_is_capped
        assert cl.result_count == CappedCountPaginator.count_limit
    with django_assert_max_num_queries(6):
        response = admin_client.get(
            url, {"status__exact": "failed", "task_id": "admin.big3", "p": 3}
        )
    assert response.status_code == 200
    with django_assert_max_num_queries(6):
        response = admin_client.get(url, {"q": big_table["parent"].execution_id})
    assert listed_ids(response) == {big_table["parent"].execution_id}
    with django_assert_max_num_queries(6):
        response = admin_client.get(change_url(big_table["parent"]))
    assert response.context["execution_tree"].size == 5


# -- schedules --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_schedules_page_lists_each_schedule_with_its_next_run_and_latest_tick(
    admin_client,
) -> None:
    from django.test import override_settings

    from django_durable.schedules import enqueue_due

    @task(id="admin.every_minute", schedule="* * * * *")
    def every_minute(ctx: Any, input: Any) -> None:
        return None

    nightly = {"task": "admin.every_minute", "schedule": "0 3 * * *"}
    with override_settings(DURABLE={"SCHEDULES": {"nightly": nightly}}):
        [enqueued, *_] = enqueue_due(timezone.now())
        changelist = admin_client.get(reverse(CHANGELIST)).content.decode()
        page = admin_client.get(reverse("admin:django_durable_taskexecution_schedules"))
    assert reverse("admin:django_durable_taskexecution_schedules") in changelist
    body = page.content.decode()
    assert page.status_code == 200
    assert "admin.every_minute" in body and "nightly" in body
    assert "<code>0 3 * * *</code>" in body and "<code>* * * * *</code>" in body
    assert enqueued.execution_id in body
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:00 UTC</td>", body)  # next runs
