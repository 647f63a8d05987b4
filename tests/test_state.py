"""The state machine's pure parts: derived update fields (seed T1) and allowed transitions."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from django_durable.models import (
    ACTIVE_STATUSES,
    FINISHED_STATUSES,
    ChildrenProcessingStatus,
    CloseStatus,
    Status,
)
from django_durable.state import can_transition, derive_update, is_finished, with_finalize_close

NOW = timezone.now()

#: (partial update, fields derive_update must add) — seed-spec §8.1 and the seed's
#: ``storage.test.ts`` table. ``None`` means "unset".
DERIVED: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({}, {}),
    (
        {"status": Status.READY},
        {"executor_id": None, "run_output": None, "started_at": None, "expires_at": None},
    ),
    ({"status": Status.RUNNING}, {"started_at": NOW}),
    (
        {"status": Status.WAITING_FOR_CHILDREN},
        {
            "waiting_for_children_started_at": NOW,
            "error": None,
            "executor_id": None,
            "expires_at": None,
        },
    ),
    (
        {"status": Status.WAITING_FOR_FINALIZE},
        {
            "waiting_for_finalize_started_at": NOW,
            "error": None,
            "executor_id": None,
            "expires_at": None,
        },
    ),
    *[
        (
            {"status": status},
            {
                "is_finished": True,
                "finished_at": NOW,
                "run_output": None,
                "executor_id": None,
                "expires_at": None,
            },
        )
        for status in (Status.FAILED, Status.TIMED_OUT, Status.FINALIZE_FAILED)
    ],
    (
        {"status": Status.COMPLETED},
        {
            "is_finished": True,
            "finished_at": NOW,
            "run_output": None,
            "error": None,
            "executor_id": None,
            "expires_at": None,
        },
    ),
    # Cancelled keeps the executor id: the owning executor must still abort the attempt.
    (
        {"status": Status.CANCELLED},
        {"is_finished": True, "finished_at": NOW, "run_output": None, "expires_at": None},
    ),
    (
        {"status": Status.CANCELLED, "needs_promise_cancellation": False},
        {
            "is_finished": True,
            "finished_at": NOW,
            "run_output": None,
            "expires_at": None,
            "executor_id": None,
        },
    ),
    (
        {"status": Status.RUNNING, "needs_promise_cancellation": False},
        {"started_at": NOW, "executor_id": None},
    ),
    # Without a status, clearing the flag leaves the executor id alone (seed: the rule is
    # part of the status block).
    ({"needs_promise_cancellation": False}, {}),
    (
        {"on_children_finished_processing_status": ChildrenProcessingStatus.IDLE},
        {"on_children_finished_processing_expires_at": None},
    ),
    ({"on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSING}, {}),
    (
        {"on_children_finished_processing_status": ChildrenProcessingStatus.PROCESSED},
        {
            "on_children_finished_processing_expires_at": None,
            "on_children_finished_processing_finished_at": NOW,
        },
    ),
    ({"close_status": CloseStatus.IDLE}, {"close_expires_at": None}),
    ({"close_status": CloseStatus.READY}, {"close_expires_at": None}),
    ({"close_status": CloseStatus.CLOSING}, {}),
    ({"close_status": CloseStatus.CLOSED}, {"close_expires_at": None, "closed_at": NOW}),
]


@pytest.mark.parametrize(("update", "derived"), DERIVED, ids=lambda value: repr(value))
def test_derive_update_adds_exactly_the_derived_fields(
    update: dict[str, Any], derived: dict[str, Any]
) -> None:
    assert derive_update(NOW, update) == {**update, **derived, "updated_at": NOW}


def test_derive_update_keeps_explicit_values_over_derived_clears() -> None:
    later = NOW.replace(year=NOW.year + 1)
    update = derive_update(NOW, {"status": Status.READY, "expires_at": later, "error": None})
    assert update["expires_at"] == later
    assert update["started_at"] is None
    assert update["error"] is None


def test_derive_update_does_not_modify_its_argument() -> None:
    update = {"status": Status.COMPLETED}
    derive_update(NOW, update)
    assert update == {"status": Status.COMPLETED}


def test_derive_update_is_idempotent() -> None:
    for update, _ in DERIVED:
        once = derive_update(NOW, update)
        assert derive_update(NOW, once) == once


def test_finalize_execution_finishing_goes_straight_to_close_ready() -> None:
    for status in FINISHED_STATUSES:
        assert with_finalize_close({"status": status}, True)["close_status"] == CloseStatus.READY
        assert "close_status" not in with_finalize_close({"status": status}, False)
    for status in ACTIVE_STATUSES:
        assert "close_status" not in with_finalize_close({"status": status}, True)
    assert "close_status" not in with_finalize_close({"output": "1"}, True)


def test_is_finished() -> None:
    assert {status for status in Status if is_finished(status)} == set(FINISHED_STATUSES)


def test_terminal_states_never_change() -> None:
    for status in FINISHED_STATUSES:
        assert not any(can_transition(status, to) for to in Status)


@pytest.mark.parametrize(
    ("from_status", "to_status"),
    [
        (Status.READY, Status.RUNNING),
        (Status.READY, Status.CANCELLED),
        (Status.RUNNING, Status.READY),
        (Status.RUNNING, Status.COMPLETED),
        (Status.RUNNING, Status.WAITING_FOR_CHILDREN),
        (Status.RUNNING, Status.WAITING_FOR_FINALIZE),
        (Status.RUNNING, Status.FINALIZE_FAILED),
        (Status.RUNNING, Status.TIMED_OUT),
        (Status.WAITING_FOR_CHILDREN, Status.WAITING_FOR_CHILDREN),
        (Status.WAITING_FOR_CHILDREN, Status.WAITING_FOR_FINALIZE),
        (Status.WAITING_FOR_CHILDREN, Status.CANCELLED),
        (Status.WAITING_FOR_FINALIZE, Status.COMPLETED),
        (Status.WAITING_FOR_FINALIZE, Status.FINALIZE_FAILED),
    ],
)
def test_allowed_transitions(from_status: Status, to_status: Status) -> None:
    assert can_transition(from_status, to_status)


@pytest.mark.parametrize(
    ("from_status", "to_status"),
    [
        (Status.READY, Status.COMPLETED),
        (Status.READY, Status.WAITING_FOR_CHILDREN),
        (Status.WAITING_FOR_FINALIZE, Status.RUNNING),
        (Status.WAITING_FOR_CHILDREN, Status.READY),
    ],
)
def test_forbidden_transitions(from_status: Status, to_status: Status) -> None:
    assert not can_transition(from_status, to_status)
