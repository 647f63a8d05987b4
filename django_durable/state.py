"""The state machine as data: allowed transitions and the fields every write derives (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from .models import (
    ERRORED_STATUSES,
    FINISHED_STATUSES,
    ChildrenProcessingStatus,
    CloseStatus,
    Status,
)

#: Allowed status transitions (seed-spec §8). Every write carries a status filter, so a
#: transition whose precondition no longer holds does nothing.
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.READY: frozenset({Status.RUNNING, Status.CANCELLED}),
    Status.RUNNING: frozenset(
        {
            Status.READY,  # retry, or expiry of a crashed attempt
            Status.COMPLETED,
            Status.FAILED,
            Status.TIMED_OUT,
            Status.CANCELLED,
            Status.WAITING_FOR_CHILDREN,
            Status.WAITING_FOR_FINALIZE,
            Status.FINALIZE_FAILED,
        }
    ),
    Status.WAITING_FOR_CHILDREN: frozenset(
        {
            Status.WAITING_FOR_CHILDREN,  # next sequential step
            Status.WAITING_FOR_FINALIZE,
            Status.COMPLETED,
            Status.FINALIZE_FAILED,
            Status.FAILED,
            Status.CANCELLED,
        }
    ),
    Status.WAITING_FOR_FINALIZE: frozenset(
        {Status.COMPLETED, Status.FINALIZE_FAILED, Status.CANCELLED}
    ),
    Status.FAILED: frozenset(),
    Status.TIMED_OUT: frozenset(),
    Status.FINALIZE_FAILED: frozenset(),
    Status.COMPLETED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def is_finished(status: str) -> bool:
    """Whether ``status`` is terminal."""
    return status in FINISHED_STATUSES


def can_transition(from_status: str, to_status: str) -> bool:
    """Whether the state machine allows ``from_status -> to_status``."""
    return Status(to_status) in TRANSITIONS[Status(from_status)]


def derive_update(now: datetime, update: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``update`` completed with the bookkeeping fields it implies (seed-spec §8.1).

    The one place where the derived-field rules live: ``updated_at`` always; on a status
    change ``is_finished``/``finished_at``, the waiting timestamps, and clearing the fields
    that no longer apply (``None``); likewise for the children-processing and close statuses.
    Fields given explicitly in ``update`` are never overridden by a derived clear.
    """
    derived: dict[str, Any] = dict(update)
    derived["updated_at"] = now
    cleared: set[str] = set()

    status = update.get("status")
    if status is not None:
        if status in FINISHED_STATUSES:
            derived["is_finished"] = True
            derived["finished_at"] = now
            cleared.add("run_output")
        if status == Status.READY:
            cleared.update(("run_output", "started_at", "expires_at"))
        elif status == Status.RUNNING:
            derived["started_at"] = now
        elif status == Status.WAITING_FOR_CHILDREN:
            derived["waiting_for_children_started_at"] = now
        elif status == Status.WAITING_FOR_FINALIZE:
            derived["waiting_for_finalize_started_at"] = now
        if status not in ERRORED_STATUSES and status not in (Status.READY, Status.RUNNING):
            cleared.add("error")
        if (status not in (Status.RUNNING, Status.CANCELLED)) or (
            update.get("needs_promise_cancellation") is False
        ):
            cleared.add("executor_id")
        if status != Status.RUNNING:
            cleared.add("expires_at")

    ocfp = update.get("on_children_finished_processing_status")
    if ocfp is not None:
        if ocfp != ChildrenProcessingStatus.PROCESSING:
            cleared.add("on_children_finished_processing_expires_at")
        if ocfp == ChildrenProcessingStatus.PROCESSED:
            derived["on_children_finished_processing_finished_at"] = now

    close_status = update.get("close_status")
    if close_status is not None:
        if close_status != CloseStatus.CLOSING:
            cleared.add("close_expires_at")
        if close_status == CloseStatus.CLOSED:
            derived["closed_at"] = now

    for field in cleared:
        if field not in update:
            derived[field] = None
    return derived


def with_finalize_close(update: Mapping[str, Any], is_finalize_of_parent: bool) -> dict[str, Any]:
    """A finished finalize execution goes straight to ``close_status = ready`` (seed §8.1).

    Finalize executions never decrement their parent's active children; their close step
    hands the result to the parent instead.
    """
    result = dict(update)
    if is_finalize_of_parent and update.get("status") in FINISHED_STATUSES:
        result.setdefault("close_status", CloseStatus.READY)
    return result
