"""The API's routes as a staff user calls them: executions, wake-ups, tasks, stats, health,
metrics and the schema, and every client mistake answered with a 4xx and a message."""

from __future__ import annotations

import datetime
import decimal
import json
import threading
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone

from django_durable import (
    DurableExecutionError,
    ParentResult,
    RetryOptions,
    child,
    parent_task,
    sleeping_task,
    task,
)
from django_durable.models import TaskExecution, Worker
from django_durable.tokens import check_wakeup_token

from .helpers import ago, post_json, url

WAIT = 10


def echo_task(task_id: str = "api.echo", **options: Any) -> Any:
    options.setdefault("api", True)

    def run(ctx: Any, input: Any) -> Any:
        return input

    return task(id=task_id, **options)(run)


def enqueue(client: Client, data: Any) -> Any:
    return post_json(client, url("execution-list"), data)


def detail(client: Client, execution_id: str) -> Any:
    return client.get(url("execution-detail", execution_id=execution_id))


def assert_error(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["code"], str)
    for fragment in fragments:
        assert fragment in body["detail"], body
    return body


# -- enqueue ---------------------------------------------------------------------------------


@pytest.mark.django_db
class TestEnqueue:
    def test_enqueue_returns_201_with_the_new_execution(self, staff_client: Client) -> None:
        echo_task()
        response = enqueue(staff_client, {"task_id": "api.echo", "input": {"path": "a.txt"}})
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["task_id"] == "api.echo"
        assert body["execution_id"].startswith("te_")
        assert body["status"] == "ready"
        assert body["input"] == {"path": "a.txt"}
        assert body["output"] is None
        assert body["children"] == [] and body["finalize"] is None and body["wakeup"] is None
        assert response["Location"].endswith(
            url("execution-detail", execution_id=body["execution_id"])
        )
        row = TaskExecution.objects.get(execution_id=body["execution_id"])
        assert json.loads(row.input) == {"path": "a.txt"}

    def test_enqueue_without_input_stores_none(self, staff_client: Client) -> None:
        echo_task()
        response = enqueue(staff_client, {"task_id": "api.echo"})
        assert response.status_code == 201
        assert response.json()["input"] is None

    def test_enqueue_options_override_the_tasks(self, staff_client: Client) -> None:
        echo_task(timeout=30, queue="default", priority=0)
        response = enqueue(
            staff_client,
            {
                "task_id": "api.echo",
                "input": 1,
                "timeout": 12.5,
                "retry": {"max_retries": 3, "base_delay": 0.5, "delay_multiplier": 2},
                "sleep_before_run": 60,
                "queue": "emails",
                "priority": 7,
            },
        )
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["timeout"] == 12.5
        assert body["retry_options"] == {
            "max_retries": 3,
            "base_delay": 0.5,
            "delay_multiplier": 2.0,
            "max_delay": None,
        }
        assert body["sleep_before_run"] == 60
        assert body["queue"] == "emails"
        assert body["priority"] == 7
        start_at = datetime.datetime.fromisoformat(body["start_at"].replace("Z", "+00:00"))
        assert start_at > timezone.now() + datetime.timedelta(seconds=50)

    def test_enqueue_with_a_used_idempotency_key_returns_the_existing_execution(
        self, staff_client: Client
    ) -> None:
        echo_task()
        first = enqueue(staff_client, {"task_id": "api.echo", "idempotency_key": "order-42"})
        second = enqueue(
            staff_client, {"task_id": "api.echo", "input": 2, "idempotency_key": "order-42"}
        )
        assert first.status_code == 201
        assert second.status_code == 200
        assert second.json()["execution_id"] == first.json()["execution_id"]
        assert second.json()["idempotency_key"] == "order-42"
        assert TaskExecution.objects.count() == 1

    def test_enqueue_a_sleeping_task_takes_its_unique_id_as_input(
        self, staff_client: Client
    ) -> None:
        sleeping_task(id="api.sleeper", timeout=60, api=True)
        response = enqueue(staff_client, {"task_id": "api.sleeper", "input": "order-1"})
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["status"] == "running"
        assert body["is_sleeping_task"] is True
        assert body["sleeping_task_unique_id"] == "order-1"
        assert body["input"] == "order-1"
        assert check_wakeup_token(body["wakeup"]["token"], body["execution_id"])

    def test_unknown_task_id_is_404(self, staff_client: Client) -> None:
        response = enqueue(staff_client, {"task_id": "no.such.task"})
        assert_error(response, 404, "no.such.task")

    def test_task_not_marked_api_is_403(self, staff_client: Client) -> None:
        echo_task("api.private", api=False)
        response = enqueue(staff_client, {"task_id": "api.private", "input": 1})
        body = assert_error(response, 403, "api.private", "api=True")
        assert body["code"] == "task_not_allowed"
        assert TaskExecution.objects.count() == 0

    def test_invalid_input_is_400_with_the_validators_message(self, staff_client: Client) -> None:
        def validate(value: Any) -> Any:
            if not isinstance(value, dict) or "path" not in value:
                raise ValueError("a path is required")
            return value

        task(id="api.validated", api=True, validate_input=validate)(lambda ctx, input: input)
        response = enqueue(staff_client, {"task_id": "api.validated", "input": {"x": 1}})
        body = assert_error(response, 400, "Invalid input to task api.validated", "a path")
        assert body["code"] == "invalid"
        assert TaskExecution.objects.count() == 0

    def test_sleeping_task_without_a_unique_id_string_is_400(self, staff_client: Client) -> None:
        sleeping_task(id="api.sleeper", timeout=60, api=True)
        assert_error(enqueue(staff_client, {"task_id": "api.sleeper", "input": 5}), 400)
        assert_error(enqueue(staff_client, {"task_id": "api.sleeper"}), 400)

    def test_duplicate_sleeping_unique_id_is_400(self, staff_client: Client) -> None:
        sleeping_task(id="api.sleeper", timeout=60, api=True)
        assert enqueue(staff_client, {"task_id": "api.sleeper", "input": "u"}).status_code == 201
        assert_error(
            enqueue(staff_client, {"task_id": "api.sleeper", "input": "u"}), 400, "unique id"
        )

    def test_failing_concurrency_key_is_400(self, staff_client: Client) -> None:
        task(
            id="api.limited",
            api=True,
            concurrency_key=lambda input: input["tenant"],
            max_concurrency=1,
        )(lambda ctx, input: input)
        assert_error(enqueue(staff_client, {"task_id": "api.limited", "input": {}}), 400)
        ok = enqueue(staff_client, {"task_id": "api.limited", "input": {"tenant": "a"}})
        assert ok.status_code == 201

    @pytest.mark.parametrize(
        "data, field",
        [
            ({}, "task_id"),
            ({"task_id": 5}, None),
            ({"task_id": ""}, "task_id"),
            ({"task_id": "api.echo", "timeout": "soon"}, "timeout"),
            ({"task_id": "api.echo", "timeout": 0}, "timeout"),
            ({"task_id": "api.echo", "timeout": 1e300}, "timeout"),
            ({"task_id": "api.echo", "sleep_before_run": -1}, "sleep_before_run"),
            ({"task_id": "api.echo", "priority": 2**40}, "priority"),
            ({"task_id": "api.echo", "priority": 1.5}, "priority"),
            ({"task_id": "api.echo", "retry": 3}, "retry"),
            ({"task_id": "api.echo", "retry": {"max_retries": -1}}, "retry"),
            ({"task_id": "api.echo", "retry": {"base_delay": 10, "max_delay": 1}}, None),
            ({"task_id": "api.echo", "queue": ""}, "queue"),
            ({"task_id": "api.echo", "queue": "q" * 65}, "queue"),
            ({"task_id": "api.echo", "idempotency_key": "k\x00"}, "idempotency_key"),
            ({"task_id": "api.echo", "idempotency_key": "k" * 256}, "idempotency_key"),
            ({"task_id": "api.echo", "input": "\ud800"}, "input"),
            ([1, 2], None),
            ("text", None),
        ],
    )
    def test_wrong_types_and_values_are_400(
        self, staff_client: Client, data: Any, field: str | None
    ) -> None:
        echo_task()
        response = enqueue(staff_client, data)
        body = assert_error(response, 400)
        if field is not None:
            assert field in body["errors"], body
            assert field in body["detail"]
        assert TaskExecution.objects.count() == 0

    @pytest.mark.parametrize(
        "body, content_type",
        [
            (b'{"task_id": "api.echo",', "application/json"),
            (b'{"task_id": "api.echo", "input": NaN}', "application/json"),
            (b'{"task_id": "api.echo", "input": Infinity}', "application/json"),
            (b"[" * 100_000 + b"]" * 100_000, "application/json"),
            (b"\xff\xfe{", "application/json"),
        ],
        ids=["truncated", "nan", "infinity", "deep", "not-utf8"],
    )
    def test_malformed_json_is_400(
        self, staff_client: Client, body: bytes, content_type: str
    ) -> None:
        echo_task()
        response = staff_client.generic("POST", url("execution-list"), body, content_type)
        assert_error(response, 400, "JSON parse error")

    def test_an_unknown_charset_is_ignored(self, staff_client: Client) -> None:
        echo_task()
        body = b'{"task_id": "api.echo"}'
        content_type = "application/json; charset=no-such-charset"
        response = staff_client.generic("POST", url("execution-list"), body, content_type)
        assert response.status_code == 201, response.content

    def test_an_input_nested_too_deeply_to_store_is_400(self, staff_client: Client) -> None:
        echo_task()
        body = '{"task_id": "api.echo", "input": ' + "[" * 900 + "]" * 900 + "}"
        response = staff_client.generic("POST", url("execution-list"), body, "application/json")
        assert_error(response, 400, "nested too deeply")

    def test_a_body_that_is_not_json_is_415(self, staff_client: Client) -> None:
        echo_task()
        response = staff_client.post(url("execution-list"), {"task_id": "api.echo"})
        assert_error(response, 415)

    def test_a_body_over_the_size_limit_is_413_before_it_is_read(
        self, staff_client: Client
    ) -> None:
        echo_task()
        response = staff_client.post(
            url("execution-list"),
            b"{}",
            content_type="application/json",
            CONTENT_LENGTH=str(2 * 1024 * 1024),
        )
        assert_error(response, 413, "at most")

    @override_settings(DURABLE={"MAX_INPUT_SIZE": 1024}, DATA_UPLOAD_MAX_MEMORY_SIZE=None)
    def test_an_input_over_max_input_size_is_413(self, staff_client: Client) -> None:
        echo_task()
        response = enqueue(staff_client, {"task_id": "api.echo", "input": "x" * 2000})
        assert_error(response, 413, "exceeds maximum allowed size")
        huge = enqueue(staff_client, {"task_id": "api.echo", "input": "x" * 100_000})
        assert_error(huge, 413, "at most")
        assert TaskExecution.objects.count() == 0

    @override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10_000)
    def test_data_upload_max_memory_size_bounds_the_body_too(self, staff_client: Client) -> None:
        echo_task()
        response = enqueue(staff_client, {"task_id": "api.echo", "input": "x" * 20_000})
        assert_error(response, 413, "at most 10000")


@pytest.mark.django_db(transaction=True)
def test_an_enqueued_execution_runs_and_its_detail_shows_the_output(
    staff_client: Client, executor: Any
) -> None:
    @task(id="api.shout", api=True)
    def shout(ctx: Any, input: Any) -> Any:
        return {"text": input["text"].upper()}

    response = enqueue(staff_client, {"task_id": "api.shout", "input": {"text": "hi"}})
    assert response.status_code == 201
    execution_id = response.json()["execution_id"]
    shout_handle = TaskExecution.objects.get(execution_id=execution_id)
    from django_durable import get_handle

    get_handle(shout_handle.execution_id).wait(timeout=WAIT)
    body = detail(staff_client, execution_id).json()
    assert body["status"] == "completed"
    assert body["is_finished"] is True
    assert body["output"] == {"text": "HI"}
    assert body["error"] is None
    assert body["finished_at"] is not None


# -- detail ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_detail_renders_values_that_json_cannot_hold(staff_client: Client, executor: Any) -> None:
    value = {
        "when": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC),
        "day": datetime.date(2024, 5, 1),
        "at": datetime.time(8, 30),
        "took": datetime.timedelta(seconds=90),
        "price": decimal.Decimal("10.50"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "raw": b"\x00\xffhi",
        "tags": {"b", "a"},
        "frozen": frozenset({3, 1}),
        "pair": (1, "two"),
        "nan": float("nan"),
        "inf": float("-inf"),
        "by_number": {1: "one", (2, 3): "pair", None: "none"},
        "$type": "a user key",
    }

    @task(id="api.exotic")
    def exotic(ctx: Any, input: Any) -> Any:
        return value

    snapshot = exotic.enqueue(value).wait(timeout=WAIT)
    assert snapshot.status == "completed", snapshot.error
    response = detail(staff_client, snapshot.execution_id)
    assert response.status_code == 200
    expected = {
        "when": "2024-05-01T12:00:00+00:00",
        "day": "2024-05-01",
        "at": "08:30:00",
        "took": 90.0,
        "price": "10.50",
        "id": "12345678-1234-5678-1234-567812345678",
        "raw": "AP9oaQ==",
        "tags": ["a", "b"],
        "frozen": [1, 3],
        "pair": [1, "two"],
        "nan": "NaN",
        "inf": "-Infinity",
        "by_number": {"1": "one", "[2, 3]": "pair", "null": "none"},
        "$type": "a user key",
    }
    assert response.json()["output"] == expected
    assert response.json()["input"] == expected


@pytest.mark.django_db
def test_detail_of_a_value_that_cannot_be_deserialized_is_its_raw_text(
    staff_client: Client, set_state: Any
) -> None:
    handle = echo_task().enqueue(1)
    TaskExecution.objects.filter(execution_id=handle.execution_id).update(input='{"$type": 1}')
    set_state(handle.execution_id, "completed", output="not json {")
    body = detail(staff_client, handle.execution_id).json()
    assert body["input"] == '{"$type": 1}'
    assert body["output"] == "not json {"


@pytest.mark.django_db(transaction=True)
def test_detail_of_a_parent_lists_its_children_and_finalize(
    staff_client: Client, executor: Any
) -> None:
    leaf = echo_task("api.leaf", api=False)
    combine = echo_task("api.combine", api=False)

    @parent_task(id="api.parent", finalize=combine)
    def parent(ctx: Any, input: Any) -> ParentResult:
        return ParentResult(output="p", children=[child(leaf, 1), child(leaf, 2)])

    snapshot = parent.enqueue().wait(timeout=WAIT)
    assert snapshot.status == "completed", snapshot.error
    body = detail(staff_client, snapshot.execution_id).json()
    assert [ref["task_id"] for ref in body["children"]] == ["api.leaf", "api.leaf"]
    assert body["finalize"]["task_id"] == "api.combine"
    assert body["root"] is None and body["parent"] is None

    first = detail(staff_client, body["children"][0]["execution_id"]).json()
    assert first["root"] == {"task_id": "api.parent", "execution_id": snapshot.execution_id}
    assert first["parent"] == {
        "task_id": "api.parent",
        "execution_id": snapshot.execution_id,
        "index_in_parent_children": 0,
        "is_only_child_of_parent": False,
        "is_finalize_of_parent": False,
    }
    finalize = detail(staff_client, body["finalize"]["execution_id"]).json()
    assert finalize["parent"]["is_finalize_of_parent"] is True


@pytest.mark.django_db
@pytest.mark.parametrize("execution_id", ["te_doesnotexist", "x" * 33, "te_%00", "te_%F0%9F%98%80"])
def test_detail_of_an_unknown_execution_is_404(staff_client: Client, execution_id: str) -> None:
    response = staff_client.get(f"/durable/executions/{execution_id}/")
    assert_error(response, 404, "not found")


@pytest.mark.django_db
def test_detail_of_a_sleeping_execution_offers_a_wakeup_link(staff_client: Client) -> None:
    sleeper = sleeping_task(id="api.sleeper", timeout=60)
    handle = sleeper.enqueue("order/7 ü")
    body = detail(staff_client, handle.execution_id).json()
    wakeup = body["wakeup"]
    assert check_wakeup_token(wakeup["token"], handle.execution_id)
    assert wakeup["url"].startswith("http://testserver/durable/sleeping/api.sleeper/order/7")
    assert "?token=" in wakeup["url"]
    expires_at = datetime.datetime.fromisoformat(wakeup["expires_at"].replace("Z", "+00:00"))
    assert expires_at > timezone.now() + datetime.timedelta(days=6)

    # The link works as given, without credentials.
    response = Client().post(
        wakeup["url"], {"output": {"ok": True}}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["output"] == {"ok": True}
    assert detail(staff_client, handle.execution_id).json()["wakeup"] is None


# -- cancel ----------------------------------------------------------------------------------


@pytest.mark.django_db
class TestCancel:
    def test_cancel_an_unfinished_execution(self, staff_client: Client) -> None:
        handle = echo_task().enqueue(1)
        response = post_json(
            staff_client, url("execution-cancel", execution_id=handle.execution_id)
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["status"] == "cancelled"
        assert body["error"]["error_type"] == "cancelled"
        assert TaskExecution.objects.get(execution_id=handle.execution_id).status == "cancelled"

    @pytest.mark.parametrize("status", ["completed", "failed", "timed_out", "cancelled"])
    def test_cancel_a_finished_execution_is_409(
        self, staff_client: Client, set_state: Any, status: str
    ) -> None:
        handle = echo_task().enqueue(1)
        set_state(handle.execution_id, status)
        response = post_json(
            staff_client, url("execution-cancel", execution_id=handle.execution_id)
        )
        body = assert_error(response, 409, "already finished", status)
        assert body["code"] == "already_finished"
        assert TaskExecution.objects.get(execution_id=handle.execution_id).status == status

    def test_cancel_an_unknown_execution_is_404(self, staff_client: Client) -> None:
        response = post_json(staff_client, url("execution-cancel", execution_id="te_nope"))
        assert_error(response, 404)

    def test_cancel_ignores_a_json_body(self, staff_client: Client) -> None:
        handle = echo_task().enqueue(1)
        response = post_json(
            staff_client, url("execution-cancel", execution_id=handle.execution_id), {"x": 1}
        )
        assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_running_attempt(staff_client: Client, executor: Any) -> None:
    started = threading.Event()

    @task(id="api.long", timeout=30)
    def long(ctx: Any, input: Any) -> str:
        started.set()
        ctx.abort_signal.wait(10)
        return "late"

    handle = long.enqueue()
    assert started.wait(WAIT)
    response = post_json(staff_client, url("execution-cancel", execution_id=handle.execution_id))
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert handle.wait(timeout=WAIT).status == "cancelled"


# -- retry -----------------------------------------------------------------------------------


@pytest.mark.django_db
class TestRetry:
    @pytest.mark.parametrize("status", ["failed", "timed_out", "finalize_failed", "cancelled"])
    def test_retry_enqueues_the_same_input_as_a_new_execution(
        self, staff_client: Client, set_state: Any, status: str
    ) -> None:
        t = echo_task(retry=RetryOptions(max_retries=2))
        value = {"when": datetime.date(2024, 1, 2), "n": decimal.Decimal("1.5")}
        handle = t.enqueue(value, timeout=42, queue="slow", priority=3)
        old = set_state(handle.execution_id, status)

        response = post_json(staff_client, url("execution-retry", execution_id=old.execution_id))
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["execution_id"] != old.execution_id
        assert body["status"] == "ready"
        assert body["retried_from_execution_id"] == old.execution_id
        assert body["input"] == {"when": "2024-01-02", "n": "1.5"}
        assert response["Location"].endswith(
            url("execution-detail", execution_id=body["execution_id"])
        )
        new = TaskExecution.objects.get(execution_id=body["execution_id"])
        assert new.input == old.input  # the stored text, verbatim
        assert (new.timeout, new.queue, new.priority) == (42, "slow", 3)
        assert new.retry_options["max_retries"] == 2
        assert TaskExecution.objects.get(execution_id=old.execution_id).status == status

    def test_retrying_the_same_execution_again_returns_the_first_retry(
        self, staff_client: Client, set_state: Any
    ) -> None:
        handle = echo_task().enqueue(1)
        set_state(handle.execution_id, "failed")
        path = url("execution-retry", execution_id=handle.execution_id)
        first = post_json(staff_client, path)
        second = post_json(staff_client, path)
        assert (first.status_code, second.status_code) == (201, 200)
        assert first.json()["execution_id"] == second.json()["execution_id"]
        assert TaskExecution.objects.count() == 2

    @pytest.mark.parametrize("status", ["ready", "running", "waiting_for_children", "completed"])
    def test_retry_of_an_execution_that_did_not_fail_is_409(
        self, staff_client: Client, set_state: Any, status: str
    ) -> None:
        handle = echo_task().enqueue(1)
        set_state(handle.execution_id, status)
        response = post_json(staff_client, url("execution-retry", execution_id=handle.execution_id))
        body = assert_error(response, 409, status)
        assert body["code"] == "not_retryable"
        assert TaskExecution.objects.count() == 1

    def test_retry_of_a_child_is_409(self, staff_client: Client, set_state: Any) -> None:
        handle = echo_task().enqueue(1)
        set_state(
            handle.execution_id,
            "failed",
            parent_task_id="p",
            parent_execution_id="te_parent",
            root_task_id="p",
            root_execution_id="te_parent",
        )
        response = post_json(staff_client, url("execution-retry", execution_id=handle.execution_id))
        assert_error(response, 409, "top-level", "te_parent")

    def test_retry_of_a_sleeping_task_is_409(self, staff_client: Client, set_state: Any) -> None:
        handle = sleeping_task(id="api.sleeper", timeout=60).enqueue("u1")
        set_state(handle.execution_id, "timed_out")
        response = post_json(staff_client, url("execution-retry", execution_id=handle.execution_id))
        assert_error(response, 409, "sleeping")

    def test_retry_of_an_unregistered_task_is_409(
        self, staff_client: Client, set_state: Any
    ) -> None:
        handle = echo_task().enqueue(1)
        set_state(handle.execution_id, "failed", task_id="gone.task")
        response = post_json(staff_client, url("execution-retry", execution_id=handle.execution_id))
        assert_error(response, 409, "gone.task", "no longer registered")

    def test_retry_of_an_unknown_execution_is_404(self, staff_client: Client) -> None:
        assert_error(post_json(staff_client, url("execution-retry", execution_id="te_x")), 404)


@pytest.mark.django_db(transaction=True)
def test_a_retried_execution_runs_again(staff_client: Client, executor: Any) -> None:
    attempts: list[Any] = []

    @task(id="api.flaky")
    def flaky(ctx: Any, input: Any) -> Any:
        attempts.append(input)
        if len(attempts) == 1:
            raise DurableExecutionError("first run fails")
        return {"got": input}

    failed = flaky.enqueue({"n": 1}).wait(timeout=WAIT)
    assert failed.status == "failed"
    response = post_json(staff_client, url("execution-retry", execution_id=failed.execution_id))
    assert response.status_code == 201
    from django_durable import get_handle

    finished = get_handle(response.json()["execution_id"]).wait(timeout=WAIT)
    assert finished.status == "completed"
    assert finished.output == {"got": {"n": 1}}
    assert attempts == [{"n": 1}, {"n": 1}]


# -- wake-up ---------------------------------------------------------------------------------


def wake(client: Client, task_id: str, unique_id: str, data: Any = None, **query: str) -> Any:
    path = url("sleeping-wakeup", task_id=task_id, unique_id=unique_id)
    if query:
        path += "?" + "&".join(f"{key}={value}" for key, value in query.items())
    return post_json(client, path, data if data is not None else {})


@pytest.mark.django_db
class TestWakeup:
    def test_wake_with_an_output(self, staff_client: Client) -> None:
        handle = sleeping_task(id="api.sleeper", timeout=60).enqueue("order-1")
        response = wake(
            staff_client, "api.sleeper", "order-1", {"status": "completed", "output": [1, 2]}
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["execution_id"] == handle.execution_id
        assert body["status"] == "completed"
        assert body["output"] == [1, 2]

    def test_status_defaults_to_completed(self, staff_client: Client) -> None:
        sleeping_task(id="api.sleeper", timeout=60).enqueue("order-1")
        response = wake(staff_client, "api.sleeper", "order-1", {})
        assert response.status_code == 200
        assert response.json()["status"] == "completed"
        assert response.json()["output"] is None

    @pytest.mark.parametrize("error", ["Card declined", {"message": "Card declined"}])
    def test_wake_with_an_error(self, staff_client: Client, error: Any) -> None:
        sleeping_task(id="api.sleeper", timeout=60).enqueue("order-1")
        response = wake(
            staff_client, "api.sleeper", "order-1", {"status": "failed", "error": error}
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["status"] == "failed"
        assert body["error"]["message"] == "Card declined"
        assert body["output"] is None

    def test_unique_ids_with_slashes_and_unicode(self, staff_client: Client) -> None:
        sleeping_task(id="api.sleeper", timeout=60).enqueue("orders/42/ü")
        response = wake(staff_client, "api.sleeper", "orders/42/ü", {"output": 1})
        assert response.status_code == 200, response.content

    @pytest.mark.parametrize("status", ["completed", "failed", "timed_out", "cancelled"])
    def test_wake_a_finished_execution_is_409(
        self, staff_client: Client, set_state: Any, status: str
    ) -> None:
        handle = sleeping_task(id="api.sleeper", timeout=60).enqueue("order-1")
        set_state(handle.execution_id, status)
        response = wake(staff_client, "api.sleeper", "order-1", {"output": 1})
        body = assert_error(response, 409, "already finished", status)
        assert body["code"] == "already_finished"

    @pytest.mark.parametrize(
        "task_id, unique_id",
        [
            ("api.sleeper", "other"),
            ("no.such", "order-1"),
            ("api.echo", "order-1"),
            ("api.sleeper2", "order-1"),
            ("api.sleeper", "x" * 300),
        ],
    )
    def test_unknown_sleeping_executions_are_404(
        self, staff_client: Client, task_id: str, unique_id: str
    ) -> None:
        echo_task()
        sleeping_task(id="api.sleeper", timeout=60).enqueue("order-1")
        sleeping_task(id="api.sleeper2", timeout=60)
        assert_error(wake(staff_client, task_id, unique_id, {"output": 1}), 404)

    def test_a_nul_in_the_unique_id_is_404(self, staff_client: Client) -> None:
        sleeping_task(id="api.sleeper", timeout=60)
        response = post_json(staff_client, "/durable/sleeping/api.sleeper/a%00b/wakeup/", {})
        assert_error(response, 404)

    @pytest.mark.parametrize(
        "data, field",
        [
            ({"status": "running"}, "status"),
            ({"status": "completed", "error": "no"}, "error"),
            ({"status": "failed", "output": 1}, "output"),
            ({"status": "failed", "error": 5}, "error"),
            ({"status": "failed", "error": {"message": 5}}, "error"),
            ({"status": "failed", "error": "a\x00b"}, "error"),
            ({"output": "\udfff"}, "output"),
            ([], None),
        ],
    )
    def test_invalid_bodies_are_400(self, staff_client: Client, data: Any, field: str) -> None:
        handle = sleeping_task(id="api.sleeper", timeout=60).enqueue("order-1")
        body = assert_error(wake(staff_client, "api.sleeper", "order-1", data), 400)
        if field:
            assert field in body["errors"]
        assert TaskExecution.objects.get(execution_id=handle.execution_id).status == "running"

    @override_settings(DURABLE={"MAX_OUTPUT_SIZE": 1024})
    def test_an_output_over_max_output_size_is_413(self, staff_client: Client) -> None:
        sleeping_task(id="api.sleeper", timeout=60).enqueue("order-1")
        response = wake(staff_client, "api.sleeper", "order-1", {"output": "x" * 5000})
        assert_error(response, 413)


@pytest.mark.django_db(transaction=True)
def test_waking_a_sleeping_child_with_a_token_finishes_its_parent(executor: Any) -> None:
    sleeper = sleeping_task(id="api.payment", timeout=30)

    @parent_task(id="api.checkout", timeout=30)
    def checkout(ctx: Any, input: Any) -> ParentResult:
        return ParentResult(output="ordered", children=[child(sleeper, f"pay-{input}")])

    handle = checkout.enqueue(7)
    from django_durable.testing import wait_until

    row = wait_until(
        lambda: TaskExecution.objects.filter(sleeping_task_unique_id="pay-7").first(),
        timeout=WAIT,
    )
    from django_durable.tokens import make_wakeup_token

    token = make_wakeup_token(row.execution_id)
    response = wake(Client(), "api.payment", "pay-7", {"output": {"paid": True}}, token=token)
    assert response.status_code == 200, response.content
    finished = handle.wait(timeout=WAIT)
    assert finished.status == "completed"
    assert finished.output["children"][0]["output"] == {"paid": True}


# -- tasks, stats, health, metrics, schema ---------------------------------------------------


@pytest.mark.django_db
def test_tasks_lists_every_registered_task_sorted_by_id(staff_client: Client) -> None:
    @task(
        id="api.b",
        api=True,
        timeout=12,
        retry=RetryOptions(max_retries=2, base_delay=1),
        queue="emails",
        priority=5,
    )
    def b(ctx: Any, input: Any) -> None:
        """Send the mail."""

    sleeping_task(id="api.a", timeout=60)
    response = staff_client.get(url("task-list"))
    assert response.status_code == 200
    tasks = {item["id"]: item for item in response.json()}
    assert [item["id"] for item in response.json()] == sorted(tasks)
    assert tasks["api.b"] == {
        "id": "api.b",
        "kind": "task",
        "description": "Send the mail.",
        "timeout": 12.0,
        "retry": {"max_retries": 2, "base_delay": 1.0, "delay_multiplier": 1.0, "max_delay": None},
        "sleep_before_run": 0.0,
        "queue": "emails",
        "priority": 5,
        "api": True,
        "schedule": None,
        "max_concurrency": None,
        "schedules": [],
        "next_run_at": None,
    }
    assert tasks["api.a"]["kind"] == "sleeping_task"
    assert tasks["api.a"]["api"] is False


@pytest.mark.django_db
def test_tasks_show_each_schedule_and_its_next_run(staff_client: Client) -> None:
    @task(id="api.cron", schedule="*/5 * * * *", concurrency_key="k", max_concurrency=2)
    def cron(ctx: Any, input: Any) -> None:
        """Every five minutes."""

    nightly = {"task": "api.cron", "schedule": "0 3 * * *"}
    with override_settings(DURABLE={"SCHEDULES": {"nightly": nightly}}):
        before = timezone.now()
        [item] = [t for t in staff_client.get(url("task-list")).json() if t["id"] == "api.cron"]
    assert (item["schedule"], item["max_concurrency"]) == ("*/5 * * * *", 2)
    runs = {run["name"]: run for run in item["schedules"]}
    assert {name: run["schedule"] for name, run in runs.items()} == {
        "api.cron": "*/5 * * * *",
        "nightly": "0 3 * * *",
    }
    every_five = datetime.datetime.fromisoformat(runs["api.cron"]["next_run_at"])
    assert before < every_five <= before + datetime.timedelta(minutes=5)
    assert every_five.minute % 5 == 0 and every_five.second == 0
    assert item["next_run_at"] == runs["api.cron"]["next_run_at"]


@pytest.mark.django_db
def test_stats_counts_by_status_with_one_group_by(
    staff_client: Client, set_state: Any, django_assert_max_num_queries: Any
) -> None:
    t = echo_task()
    handles = [t.enqueue(i) for i in range(5)]
    set_state(handles[0].execution_id, "completed")
    set_state(handles[1].execution_id, "failed")
    set_state(handles[2].execution_id, "ready", start_at=ago(30))
    Worker.objects.create(
        worker_id="w1", hostname="h", pid=1, started_at=ago(1), last_heartbeat_at=ago(1)
    )
    Worker.objects.create(
        worker_id="w2", hostname="h", pid=2, started_at=ago(999), last_heartbeat_at=ago(999)
    )
    with django_assert_max_num_queries(8):  # session, user, counts, oldest, workers
        response = staff_client.get(url("stats"))
    assert response.status_code == 200
    body = response.json()
    assert body["executions"] == {
        "ready": 3,
        "running": 0,
        "failed": 1,
        "timed_out": 0,
        "waiting_for_children": 0,
        "waiting_for_finalize": 0,
        "finalize_failed": 0,
        "completed": 1,
        "cancelled": 0,
    }
    assert body["total"] == 5
    assert 29 < body["oldest_ready_age_seconds"] < 60
    assert body["live_workers"] == 1
    assert isinstance(body["storage"], list)
    group_by = [q for q in connection.queries if "GROUP BY" in q["sql"].upper()]
    assert len(group_by) <= 1


@pytest.mark.django_db(transaction=True)
def test_stats_include_the_storage_timings_of_this_process(
    staff_client: Client, executor: Any
) -> None:
    echo_task().enqueue(1).wait(timeout=WAIT)
    storage = staff_client.get(url("stats")).json()["storage"]
    operations = {item["operation"]: item for item in storage}
    assert "insert_many" in operations
    insert = operations["insert_many"]
    assert insert["count"] >= 1
    assert 0 <= insert["min_ms"] <= insert["p50_ms"] <= insert["max_ms"]


@pytest.mark.django_db
def test_stats_with_nothing_ready(staff_client: Client) -> None:
    body = staff_client.get(url("stats")).json()
    assert body["total"] == 0
    assert body["oldest_ready_age_seconds"] is None
    assert body["live_workers"] == 0


@pytest.mark.django_db
def test_health_reports_the_database_and_workers(anon_client: Client) -> None:
    echo_task().enqueue(1)
    Worker.objects.create(
        worker_id="w1", hostname="h", pid=1, started_at=ago(1), last_heartbeat_at=ago(1)
    )
    response = anon_client.get(url("health"))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["live_workers"] == 1
    assert body["oldest_ready_age_seconds"] >= 0


@pytest.mark.django_db(transaction=True)
def test_health_is_503_when_the_database_is_down(anon_client: Client, tmp_path: Any) -> None:
    settings_dict = connection.settings_dict
    saved = dict(settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        settings_dict["NAME"] = str(tmp_path / "missing-dir" / "db.sqlite3")
    else:
        settings_dict["PORT"] = "1"  # nothing listens there
    try:
        response = anon_client.get(url("health"))
    finally:
        connection.close()
        settings_dict.clear()
        settings_dict.update(saved)
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "unavailable",
        "live_workers": None,
        "oldest_ready_age_seconds": None,
    }
    assert anon_client.get(url("health")).status_code == 200


@pytest.mark.django_db
def test_metrics_are_prometheus_text(staff_client: Client, set_state: Any) -> None:
    t = echo_task()
    handles = [t.enqueue(i) for i in range(3)]
    set_state(handles[0].execution_id, "completed")
    detail(staff_client, handles[1].execution_id)  # a storage read to time
    response = staff_client.get(url("metrics"))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    lines = response.content.decode().splitlines()
    assert 'durable_executions{status="ready"} 2.0' in lines
    assert 'durable_executions{status="completed"} 1.0' in lines
    assert 'durable_executions{status="failed"} 0.0' in lines
    assert 'durable_task_executions{status="ready",task_id="api.echo"} 2.0' in lines
    assert "# TYPE durable_executions gauge" in lines
    assert "# TYPE durable_storage_operation_duration_seconds summary" in lines
    assert "# TYPE durable_claim_latency_seconds summary" in lines
    assert "durable_live_workers 0.0" in lines
    assert any(line.startswith("durable_oldest_ready_age_seconds ") for line in lines)
    summary = [line for line in lines if line.startswith("durable_storage_operation_duration")]
    assert any('quantile="0.5"' in line for line in summary)
    assert any(
        line.startswith("durable_storage_operation_duration_seconds_count{") for line in summary
    )
    for line in lines:  # every sample line is "<name>[{labels}] <number>"
        if not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


@pytest.mark.django_db
def test_schema_documents_every_route_and_its_errors(staff_client: Client) -> None:
    response = staff_client.get(url("schema"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    response = staff_client.get(url("schema") + "?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "django-durable API"
    assert set(schema["paths"]) == {
        "/durable/executions/",
        "/durable/executions/{execution_id}/",
        "/durable/executions/{execution_id}/cancel/",
        "/durable/executions/{execution_id}/retry/",
        "/durable/sleeping/{task_id}/{unique_id}/wakeup/",
        "/durable/tasks/",
        "/durable/stats/",
        "/durable/health/",
        "/durable/metrics/",
    }
    paths = schema["paths"]
    assert {"201", "200", "400", "403", "404", "413"} <= set(
        paths["/durable/executions/"]["post"]["responses"]
    )
    assert "409" in paths["/durable/executions/{execution_id}/cancel/"]["post"]["responses"]
    assert "409" in paths["/durable/executions/{execution_id}/retry/"]["post"]["responses"]
    wakeup = paths["/durable/sleeping/{task_id}/{unique_id}/wakeup/"]["post"]
    assert {"400", "403", "404", "409", "413"} <= set(wakeup["responses"])
    assert "token" in {parameter["name"] for parameter in wakeup["parameters"]}
    listing = paths["/durable/executions/"]["get"]
    names = {parameter["name"] for parameter in listing["parameters"]}
    assert {
        "status",
        "close_status",
        "task_id",
        "parent",
        "root",
        "is_finished",
        "created_after",
        "created_before",
        "cursor",
        "page_size",
    } <= names
    assert paths["/durable/health/"]["get"].get("security", []) in ([], [{}])
    assert "security" not in schema  # each operation says how it is guarded


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["staff_client", "anon_client"])
def test_no_method_on_any_route_is_a_server_error(request: pytest.FixtureRequest, who: str) -> None:
    client: Client = request.getfixturevalue(who)
    echo_task()
    handle = sleeping_task(id="api.sleeper", timeout=60).enqueue("u")
    paths = [
        url("execution-list"),
        url("execution-detail", execution_id=handle.execution_id),
        url("execution-cancel", execution_id=handle.execution_id),
        url("execution-retry", execution_id=handle.execution_id),
        url("sleeping-wakeup", task_id="api.sleeper", unique_id="u"),
        url("task-list"),
        url("stats"),
        url("health"),
        url("metrics"),
        url("schema"),
    ]
    for path in paths:
        for method in ("options", "head", "put", "patch", "delete"):
            response = getattr(client, method)(path)
            assert response.status_code < 500, (method, path)
            if method in ("put", "patch", "delete") and who == "staff_client":
                assert response.status_code == 405, (method, path)
    accept_json = client.get(url("metrics"), HTTP_ACCEPT="application/json")
    assert accept_json.status_code in (403, 406)
    assert client.get(url("execution-list") + "?format=xml").status_code in (403, 404)
