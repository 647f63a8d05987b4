"""``GET executions/``: every filter, cursor pagination, and bounded queries."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_durable import task
from django_durable.models import TaskExecution

from .helpers import url

pytestmark = pytest.mark.django_db


def make_task(task_id: str) -> Any:
    return task(id=task_id)(lambda ctx, input: input)


def listing(client: Client, query: str = "") -> Any:
    response = client.get(url("execution-list") + query)
    assert response.status_code == 200, response.content
    return response.json()


def ids(client: Client, query: str = "") -> list[str]:
    return [item["execution_id"] for item in listing(client, query)["results"]]


@pytest.fixture
def family(set_state: Any) -> dict[str, str]:
    """A root with two children (one finished) and a grandchild, plus an unrelated execution."""
    root = make_task("f.root").enqueue(0).execution_id
    other = make_task("f.other").enqueue(0).execution_id
    leaf = make_task("f.leaf")
    children = [leaf.enqueue(i).execution_id for i in range(2)]
    grandchild = leaf.enqueue(9).execution_id
    for execution_id in children:
        set_state(
            execution_id,
            "ready",
            parent_task_id="f.root",
            parent_execution_id=root,
            root_task_id="f.root",
            root_execution_id=root,
        )
    set_state(
        grandchild,
        "ready",
        parent_task_id="f.leaf",
        parent_execution_id=children[0],
        root_task_id="f.root",
        root_execution_id=root,
    )
    set_state(children[1], "completed", close_status="closed")
    set_state(other, "failed", close_status="ready")
    return {
        "root": root,
        "other": other,
        "child0": children[0],
        "child1": children[1],
        "grandchild": grandchild,
    }


def test_the_list_is_newest_first_and_leaves_values_out(
    staff_client: Client, family: dict[str, str]
) -> None:
    body = listing(staff_client)
    assert body["previous"] is None and body["next"] is None
    rows = body["results"]
    assert [row["execution_id"] for row in rows] == list(
        TaskExecution.objects.order_by("-id").values_list("execution_id", flat=True)
    )
    assert "input" not in rows[0] and "output" not in rows[0] and "children" not in rows[0]
    assert {"execution_id", "task_id", "status", "close_status", "created_at"} <= set(rows[0])


def test_filter_by_status(staff_client: Client, family: dict[str, str]) -> None:
    assert ids(staff_client, "?status=completed") == [family["child1"]]
    assert set(ids(staff_client, "?status=completed&status=failed")) == {
        family["child1"],
        family["other"],
    }
    assert len(ids(staff_client, "?status=ready")) == 3


def test_filter_by_close_status(staff_client: Client, family: dict[str, str]) -> None:
    assert ids(staff_client, "?close_status=closed") == [family["child1"]]
    assert set(ids(staff_client, "?close_status=closed&close_status=ready")) == {
        family["child1"],
        family["other"],
    }


def test_filter_by_task_id(staff_client: Client, family: dict[str, str]) -> None:
    assert ids(staff_client, "?task_id=f.root") == [family["root"]]
    assert len(ids(staff_client, "?task_id=f.leaf")) == 3
    assert ids(staff_client, "?task_id=f.none") == []


def test_filter_by_parent(staff_client: Client, family: dict[str, str]) -> None:
    assert set(ids(staff_client, f"?parent={family['root']}")) == {
        family["child0"],
        family["child1"],
    }
    assert ids(staff_client, f"?parent={family['child0']}") == [family["grandchild"]]


def test_filter_by_root(staff_client: Client, family: dict[str, str]) -> None:
    assert set(ids(staff_client, f"?root={family['root']}")) == {
        family["child0"],
        family["child1"],
        family["grandchild"],
    }
    assert ids(staff_client, f"?root={family['other']}") == []


def test_filter_by_is_finished(staff_client: Client, family: dict[str, str]) -> None:
    assert set(ids(staff_client, "?is_finished=true")) == {family["child1"], family["other"]}
    assert len(ids(staff_client, "?is_finished=false")) == 3


def test_filters_combine_with_and(staff_client: Client, family: dict[str, str]) -> None:
    query = f"?root={family['root']}&status=ready&task_id=f.leaf&is_finished=false"
    assert set(ids(staff_client, query)) == {family["child0"], family["grandchild"]}


def test_filter_by_creation_time(staff_client: Client, set_state: Any) -> None:
    t = make_task("f.timed")
    now = timezone.now().replace(microsecond=0)
    old, middle, new = (t.enqueue(i).execution_id for i in range(3))
    set_state(old, "ready", created_at=now - datetime.timedelta(days=2))
    set_state(middle, "ready", created_at=now - datetime.timedelta(hours=1))
    set_state(new, "ready", created_at=now)
    day_ago = (now - datetime.timedelta(days=1)).isoformat()
    assert set(ids(staff_client, f"?created_after={day_ago}".replace("+", "%2B"))) == {
        middle,
        new,
    }
    assert ids(staff_client, f"?created_before={day_ago}".replace("+", "%2B")) == [old]
    # created_after is inclusive, created_before exclusive.
    exact = now.isoformat().replace("+", "%2B")
    assert ids(staff_client, f"?created_after={exact}") == [new]
    assert new not in ids(staff_client, f"?created_before={exact}")
    # A naive time is in the current time zone (UTC here); Z and offsets work.
    naive = (now - datetime.timedelta(minutes=90)).replace(tzinfo=None).isoformat()
    assert set(ids(staff_client, f"?created_after={naive}")) == {middle, new}
    zulu = (now - datetime.timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert set(ids(staff_client, f"?created_after={zulu}")) == {middle, new}
    # An offset PostgreSQL cannot store (beyond ±15:59) is taken as the same instant in UTC.
    far = (now - datetime.timedelta(minutes=90)).astimezone(
        datetime.timezone(-datetime.timedelta(hours=23, minutes=9))
    )
    assert set(ids(staff_client, f"?created_after={far.isoformat()}")) == {middle, new}
    assert ids(staff_client, "?created_before=0269-09-02T23:10:29-23:09") == []


@pytest.mark.parametrize(
    "query, field",
    [
        ("?status=sleeping", "status"),
        ("?close_status=open", "close_status"),
        ("?created_after=yesterday", "created_after"),
        ("?created_before=2024-13-45T00:00:00", "created_before"),
        ("?created_after=9999-12-31T23:59:59-23:59", "created_after"),
        ("?created_before=0001-01-01T00:00:00%2B23:59", "created_before"),
        ("?task_id=a%00b", "task_id"),
        ("?parent=a%00b", "parent"),
        ("?root=a%00b", "root"),
    ],
)
def test_invalid_filter_values_are_400(staff_client: Client, query: str, field: str) -> None:
    response = staff_client.get(url("execution-list") + query)
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body["errors"] and field in body["detail"]


def test_unknown_query_parameters_are_ignored(staff_client: Client, family: dict[str, str]) -> None:
    assert len(ids(staff_client, "?colour=blue")) == 5


# -- pagination ------------------------------------------------------------------------------


def test_pages_follow_next_and_previous_links_without_gaps(staff_client: Client) -> None:
    t = make_task("f.many")
    created = [t.enqueue(i).execution_id for i in range(7)]
    seen: list[str] = []
    body = listing(staff_client, "?page_size=3")
    pages = [body]
    while body["next"]:
        response = staff_client.get(body["next"])
        assert response.status_code == 200
        body = response.json()
        pages.append(body)
    for page in pages:
        seen.extend(item["execution_id"] for item in page["results"])
    assert [len(page["results"]) for page in pages] == [3, 3, 1]
    assert seen == list(reversed(created))
    back = staff_client.get(pages[-1]["previous"]).json()
    assert [item["execution_id"] for item in back["results"]] == seen[3:6]


def test_page_size_defaults_to_50_and_is_capped_at_500(staff_client: Client) -> None:
    t = make_task("f.many")
    rows = [TaskExecution(**_row_fields(t)) for _ in range(520)]
    TaskExecution.objects.bulk_create(rows)
    assert len(listing(staff_client)["results"]) == 50
    assert len(listing(staff_client, "?page_size=1000")["results"]) == 500
    assert len(listing(staff_client, "?page_size=0")["results"]) == 50
    assert len(listing(staff_client, "?page_size=abc")["results"]) == 50


def _row_fields(t: Any) -> dict[str, Any]:
    now = timezone.now()
    return {
        "task_id": t.id,
        "timeout": 10,
        "input": "1",
        "start_at": now,
        "created_at": now,
        "updated_at": now,
    }


def test_new_rows_do_not_shift_a_page_that_is_being_followed(staff_client: Client) -> None:
    t = make_task("f.many")
    created = [t.enqueue(i).execution_id for i in range(4)]
    first = listing(staff_client, "?page_size=2")
    t.enqueue(99)  # newer than everything listed
    second = staff_client.get(first["next"]).json()
    assert [item["execution_id"] for item in second["results"]] == [created[1], created[0]]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        base64.b64encode(b"p=abc").decode(),
        base64.b64encode(b"p=" + b"9" * 30).decode(),
        base64.b64encode(b"o=-1").decode(),
        "%C3%A9",
    ],
)
def test_a_malformed_cursor_is_400(staff_client: Client, cursor: str) -> None:
    response = staff_client.get(url("execution-list") + f"?cursor={cursor}")
    assert response.status_code == 400, response.content
    assert "cursor" in response.json()["errors"]


def test_a_page_is_a_bounded_query_without_count(staff_client: Client) -> None:
    t = make_task("f.many")
    TaskExecution.objects.bulk_create([TaskExecution(**_row_fields(t)) for _ in range(120)])
    with CaptureQueriesContext(connection) as queries:
        body = listing(staff_client, "?status=ready&page_size=100")
    assert len(body["results"]) == 100
    executions = [q["sql"] for q in queries if "django_durable_taskexecution" in q["sql"]]
    assert len(executions) == 1
    sql = executions[0].upper()
    assert "COUNT(" not in sql
    assert "LIMIT 101" in sql
    assert '"INPUT"' not in sql and '"OUTPUT"' not in sql  # large values are not read
