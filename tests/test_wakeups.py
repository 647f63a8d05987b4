"""In-process wake-ups: who hears a wake-up of new work."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_durable import wakeups


@pytest.fixture
def heard() -> Iterator[list[str]]:
    calls: list[str] = []
    listeners = {
        "all": lambda: calls.append("all"),
        "emails": lambda: calls.append("emails"),
        "reports": lambda: calls.append("reports"),
    }
    wakeups.add_listener(wakeups.READY, listeners["all"])
    wakeups.add_listener(wakeups.READY, listeners["emails"], ["emails", "sms"])
    wakeups.add_listener(wakeups.READY, listeners["reports"], ["reports"])
    try:
        yield calls
    finally:
        for listener in listeners.values():
            wakeups.remove_listener(wakeups.READY, listener)


def test_work_in_one_queue_wakes_the_listeners_of_that_queue_only(heard):
    wakeups.notify_local(wakeups.READY, "emails")
    assert sorted(heard) == ["all", "emails"]


def test_work_in_no_particular_queue_wakes_everyone(heard):
    wakeups.notify_local(wakeups.READY)
    assert sorted(heard) == ["all", "emails", "reports"]


def test_a_removed_listener_hears_nothing(heard):
    wakeups.notify_local(wakeups.READY, "nobody")
    assert heard == ["all"]
