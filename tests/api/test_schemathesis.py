"""Property-based tests of the whole API against its own OpenAPI schema (schemathesis).

The schema is loaded from ``GET /durable/schema/`` of the WSGI application, in process, as a
staff user (HTTP Basic), and every operation is called with generated valid and invalid
requests: none may answer a 5xx, and every answer must match the schema (status code, content
type, body). Enqueues only ever name the test's own tasks marked ``api=True``; path parameters
often name existing executions, so that the routes are exercised beyond their 404s.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from django_durable import ParentResult, child, parent_task, sleeping_task, task  # noqa: E402
from django_durable.models import TaskExecution  # noqa: E402

USERNAME, PASSWORD = "schemathesis", "schemathesis-password"
AUTHORIZATION = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
#: The only tasks that generated enqueues may name.
API_TASKS = ("st.echo", "st.sleeper")
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
EXPECTED_OPERATIONS = {
    "GET /durable/executions/",
    "POST /durable/executions/",
    "GET /durable/executions/{execution_id}/",
    "POST /durable/executions/{execution_id}/cancel/",
    "POST /durable/executions/{execution_id}/retry/",
    "POST /durable/sleeping/{task_id}/{unique_id}/wakeup/",
    "GET /durable/tasks/",
    "GET /durable/stats/",
    "GET /durable/health/",
    "GET /durable/metrics/",
}
#: Examples per operation and generation mode; the whole run stays well under a minute.
MAX_EXAMPLES = 40


def _define_tasks() -> None:
    @task(id="st.echo", api=True, timeout=5)
    def echo(ctx: Any, input: Any) -> Any:
        return input

    sleeper = sleeping_task(id="st.sleeper", timeout=3600, api=True)

    @parent_task(id="st.parent", timeout=5)
    def parent(ctx: Any, input: Any) -> ParentResult:
        return ParentResult(output=None, children=[child(echo, input)])

    # Rows in many states, for the path parameters to find.
    handles = [echo.enqueue(value) for value in (1, "two", {"three": [3]}, None)]
    parent.enqueue({"x": 1})
    for unique_id in ["s-1", "s-2", "s-3"]:
        handles.append(sleeper.enqueue(unique_id))
    statuses = ["completed", "failed", "timed_out", "cancelled", "finalize_failed"]
    for handle, status in zip(handles, statuses, strict=False):
        TaskExecution.objects.filter(execution_id=handle.execution_id).update(
            status=status,
            is_finished=True,
            output='{"done":true}' if status == "completed" else None,
            error=None
            if status == "completed"
            else {
                "error_type": "generic",
                "message": status,
                "is_retryable": False,
                "is_internal": False,
            },
        )


@pytest.fixture
def persistent_connection(transactional_db: None) -> Iterator[None]:
    """Keep the connection across the WSGI requests (Django closes it after each otherwise)."""
    saved = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = None
    yield
    connection.settings_dict["CONN_MAX_AGE"] = saved


@pytest.fixture
def api_schema(persistent_connection: None, settings: Any, django_user_model: Any) -> Any:
    # Basic authentication hashes the password on every request: make that cheap.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.ALLOWED_HOSTS = ["localhost", "testserver"]
    django_user_model.objects.create_user(USERNAME, password=PASSWORD, is_staff=True)
    _define_tasks()
    schema = schemathesis.openapi.from_wsgi(
        "/durable/schema/?format=json",
        get_wsgi_application(),
        config=schemathesis.Config.from_dict(
            {
                "generation": {
                    "max-examples": MAX_EXAMPLES,
                    "mode": "all",
                    "deterministic": True,
                    "with-security-parameters": False,
                }
            }
        ),
        headers={"Authorization": AUTHORIZATION},
    )

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        """Enqueues name a test task (a sleeping one with a unique id string as input)."""
        operation = context.operation
        if not (operation.method.upper() == "POST" and operation.path == "/durable/executions/"):
            return st.just(body)
        if not isinstance(body, dict) or not isinstance(body.get("task_id"), str):
            return st.just(body)
        return st.sampled_from(API_TASKS).flatmap(
            lambda task_id: (
                st.just({**body, "task_id": task_id})
                if task_id == "st.echo"
                else st.text(min_size=1, max_size=40).map(
                    lambda unique_id: {**body, "task_id": task_id, "input": unique_id}
                )
            )
        )

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
        """Path parameters often name existing executions and sleeping tasks."""
        if not isinstance(path_parameters, dict):
            return st.just(path_parameters)
        if "execution_id" in path_parameters:
            existing = list(TaskExecution.objects.values_list("execution_id", flat=True)[:50])
            return st.sampled_from([path_parameters["execution_id"], *existing]).map(
                lambda execution_id: {**path_parameters, "execution_id": execution_id}
            )
        if "unique_id" in path_parameters:
            sleeping = list(
                TaskExecution.objects.filter(is_sleeping_task=True).values_list(
                    "task_id", "sleeping_task_unique_id"
                )[:50]
            )
            pairs = [(path_parameters.get("task_id"), path_parameters["unique_id"]), *sleeping]
            return st.sampled_from(pairs).map(
                lambda pair: {**path_parameters, "task_id": pair[0], "unique_id": pair[1]}
            )
        return st.just(path_parameters)

    return schema


def fuzz(operation: Any, mode: Any, codes: set[int]) -> None:
    """Call ``operation`` with ``MAX_EXAMPLES`` generated requests and validate each answer."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def call(case: Any) -> None:
        response = case.call_and_validate(headers={"Authorization": AUTHORIZATION}, checks=CHECKS)
        codes.add(response.status_code)

    call()


# schemathesis' own pytest integration (``from_fixture`` / ``parametrize``) does not run on
# pytest 9 yet, so the test drives each operation's Hypothesis strategy itself.
@pytest.mark.timeout(300)
def test_api_conforms_to_its_schema_and_never_fails_with_a_5xx(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {f"{operation.method.upper()} {operation.path}" for operation in operations}
    assert labels == EXPECTED_OPERATIONS
    seen: dict[str, set[int]] = {}
    for operation in operations:
        codes = seen.setdefault(f"{operation.method.upper()} {operation.path}", set())
        modes = [GenerationMode.POSITIVE]
        # A string path parameter has no invalid values: negative cases need a query or body.
        if len(operation.query) or len(operation.body):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            fuzz(operation, mode, codes)
    # The generated requests reached the routes, not only their validation errors.
    assert 201 in seen["POST /durable/executions/"]
    assert 200 in seen["GET /durable/executions/{execution_id}/"]
    assert {200, 409} <= seen["POST /durable/executions/{execution_id}/cancel/"]
    assert 409 in seen["POST /durable/executions/{execution_id}/retry/"]
    assert 200 in seen["POST /durable/sleeping/{task_id}/{unique_id}/wakeup/"]
