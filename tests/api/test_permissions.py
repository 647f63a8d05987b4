"""Who may call what: staff by default, the configured permission classes, the open health
check, and signed wake-up tokens that wake one execution and nothing else."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core import signing
from django.test import Client, override_settings

from django_durable import sleeping_task, task
from django_durable.models import TaskExecution
from django_durable.tokens import WAKEUP_TOKEN_SALT, make_wakeup_token

from .helpers import post_json, url

pytestmark = pytest.mark.django_db


@pytest.fixture
def routes() -> list[tuple[str, str, Any]]:
    """(method, path, body) of every guarded route, on an existing execution."""
    echo = task(id="p.echo", api=True)(lambda ctx, input: input)
    sleeping_task(id="p.sleeper", timeout=60).enqueue("u1")
    execution_id = echo.enqueue(1).execution_id
    return [
        ("get", url("execution-list"), None),
        ("post", url("execution-list"), {"task_id": "p.echo", "input": 2}),
        ("get", url("execution-detail", execution_id=execution_id), None),
        ("post", url("execution-cancel", execution_id=execution_id), None),
        ("post", url("execution-retry", execution_id=execution_id), None),
        ("post", url("sleeping-wakeup", task_id="p.sleeper", unique_id="u1"), {"output": 1}),
        ("get", url("task-list"), None),
        ("get", url("stats"), None),
        ("get", url("metrics"), None),
        ("get", url("schema"), None),
    ]


def call(client: Client, method: str, path: str, body: Any) -> Any:
    if method == "get":
        return client.get(path)
    return post_json(client, path, body)


@pytest.mark.parametrize("who", ["anon_client", "user_client"])
def test_every_route_but_health_is_staff_only_by_default(
    request: pytest.FixtureRequest, routes: list[tuple[str, str, Any]], who: str
) -> None:
    client: Client = request.getfixturevalue(who)
    for method, path, body in routes:
        response = call(client, method, path, body)
        assert response.status_code == 403, (method, path, response.content)
        if path not in (url("metrics"), url("schema")):  # text and YAML
            assert response.json()["code"] in {"not_authenticated", "permission_denied"}
    assert TaskExecution.objects.filter(status="cancelled").count() == 0
    assert TaskExecution.objects.count() == 2  # nothing enqueued, retried or woken
    assert TaskExecution.objects.get(sleeping_task_unique_id="u1").status == "running"


def test_staff_may_call_every_route(
    staff_client: Client, routes: list[tuple[str, str, Any]]
) -> None:
    for method, path, body in routes:
        response = call(staff_client, method, path, body)
        assert response.status_code not in (401, 403), (method, path, response.content)


def test_health_needs_no_credentials(anon_client: Client, user_client: Client) -> None:
    assert anon_client.get(url("health")).status_code == 200
    assert user_client.get(url("health")).status_code == 200


def test_basic_authentication_of_a_staff_user_works(django_user_model: Any, settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    django_user_model.objects.create_user("ops", password="secret", is_staff=True)
    import base64

    credentials = base64.b64encode(b"ops:secret").decode()
    client = Client(HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert client.get(url("stats")).status_code == 200
    wrong = Client(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"ops:nope").decode())
    assert wrong.get(url("stats")).status_code in (401, 403)


@override_settings(
    DURABLE={"API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"]}
)
def test_permission_classes_come_from_the_settings(
    anon_client: Client, user_client: Client
) -> None:
    assert user_client.get(url("stats")).status_code == 200
    assert user_client.get(url("task-list")).status_code == 200
    assert anon_client.get(url("stats")).status_code == 403


@override_settings(DURABLE={"API_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"]})
def test_allow_any_opens_the_api(anon_client: Client) -> None:
    task(id="p.echo", api=True)(lambda ctx, input: input)
    response = post_json(anon_client, url("execution-list"), {"task_id": "p.echo"})
    assert response.status_code == 201


@override_settings(
    DURABLE={
        "API_PERMISSION_CLASSES": [
            "rest_framework.permissions.IsAuthenticated",
            "rest_framework.permissions.IsAdminUser",
        ]
    }
)
def test_every_configured_class_must_allow(user_client: Client, staff_client: Client) -> None:
    assert user_client.get(url("stats")).status_code == 403
    assert staff_client.get(url("stats")).status_code == 200


# -- wake-up tokens --------------------------------------------------------------------------


@pytest.fixture
def sleepers() -> Callable[[str], str]:
    sleeper = sleeping_task(id="p.sleeper", timeout=60)

    def enqueue(unique_id: str) -> str:
        return sleeper.enqueue(unique_id).execution_id

    return enqueue


def wake_with_token(client: Client, unique_id: str, token: str, data: Any = None) -> Any:
    path = url("sleeping-wakeup", task_id="p.sleeper", unique_id=unique_id)
    return post_json(client, f"{path}?token={token}", data or {"output": "woken"})


def status_of(execution_id: str) -> str:
    return TaskExecution.objects.get(execution_id=execution_id).status


def test_a_token_wakes_its_execution_without_credentials(
    anon_client: Client, sleepers: Callable[[str], str]
) -> None:
    execution_id = sleepers("order-1")
    response = wake_with_token(anon_client, "order-1", make_wakeup_token(execution_id))
    assert response.status_code == 200, response.content
    assert response.json()["output"] == "woken"
    assert status_of(execution_id) == "completed"


def test_a_token_also_admits_a_logged_in_user_who_is_not_staff(
    user_client: Client, sleepers: Callable[[str], str]
) -> None:
    execution_id = sleepers("order-1")
    response = wake_with_token(user_client, "order-1", make_wakeup_token(execution_id))
    assert response.status_code == 200


def test_a_token_for_one_execution_never_wakes_another(
    anon_client: Client, sleepers: Callable[[str], str]
) -> None:
    first = sleepers("order-1")
    second = sleepers("order-2")
    response = wake_with_token(anon_client, "order-2", make_wakeup_token(first))
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_token"
    assert "another execution" in response.json()["detail"]
    assert status_of(first) == status_of(second) == "running"


def test_a_token_for_a_purged_and_recreated_unique_id_is_refused(
    anon_client: Client, sleepers: Callable[[str], str]
) -> None:
    old = sleepers("order-1")
    token = make_wakeup_token(old)
    TaskExecution.objects.filter(execution_id=old).delete()
    new = sleepers("order-1")
    assert wake_with_token(anon_client, "order-1", token).status_code == 403
    assert status_of(new) == "running"


@pytest.mark.parametrize(
    "forge",
    [
        lambda execution_id: make_wakeup_token(execution_id)[:-2] + "xx",
        lambda execution_id: make_wakeup_token(execution_id + "x").replace("x:", ":", 1),
        lambda execution_id: signing.TimestampSigner(salt="other").sign(execution_id),
        lambda execution_id: signing.TimestampSigner(
            key="another-secret", salt=WAKEUP_TOKEN_SALT
        ).sign(execution_id),
        lambda execution_id: execution_id,
        lambda execution_id: "",
    ],
    ids=["tampered", "edited-id", "other-salt", "other-key", "bare-id", "empty"],
)
def test_forged_tokens_are_refused(
    anon_client: Client, sleepers: Callable[[str], str], forge: Callable[[str], str]
) -> None:
    execution_id = sleepers("order-1")
    response = wake_with_token(anon_client, "order-1", forge(execution_id))
    assert response.status_code == 403
    assert status_of(execution_id) == "running"


@override_settings(DURABLE={"WAKEUP_TOKEN_MAX_AGE": 60})
def test_an_expired_token_is_refused(
    anon_client: Client, sleepers: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    execution_id = sleepers("order-1")
    issued = time.time() - 120
    monkeypatch.setattr(signing.time, "time", lambda: issued)
    token = make_wakeup_token(execution_id)
    monkeypatch.undo()
    response = wake_with_token(anon_client, "order-1", token)
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]
    assert status_of(execution_id) == "running"


def test_a_token_opens_no_other_route(anon_client: Client, sleepers: Callable[[str], str]) -> None:
    execution_id = sleepers("order-1")
    token = make_wakeup_token(execution_id)
    for path in (
        url("execution-detail", execution_id=execution_id),
        url("execution-list"),
        url("stats"),
    ):
        assert anon_client.get(f"{path}?token={token}").status_code == 403
    cancel = url("execution-cancel", execution_id=execution_id)
    assert post_json(anon_client, f"{cancel}?token={token}").status_code == 403
    assert status_of(execution_id) == "running"


def test_staff_need_no_token_and_a_bad_one_does_not_hurt(
    staff_client: Client, sleepers: Callable[[str], str]
) -> None:
    sleepers("order-1")
    assert wake_with_token(staff_client, "order-1", "bad").status_code == 200


def test_a_token_holder_gets_404_for_an_unknown_unique_id(
    anon_client: Client, sleepers: Callable[[str], str]
) -> None:
    execution_id = sleepers("order-1")
    response = wake_with_token(anon_client, "nope", make_wakeup_token(execution_id))
    assert response.status_code == 404


def test_without_a_token_nothing_about_sleeping_executions_is_revealed(
    anon_client: Client, sleepers: Callable[[str], str]
) -> None:
    sleepers("order-1")
    known = post_json(anon_client, url("sleeping-wakeup", task_id="p.sleeper", unique_id="order-1"))
    unknown = post_json(anon_client, url("sleeping-wakeup", task_id="p.sleeper", unique_id="zzz"))
    assert known.status_code == unknown.status_code == 403
