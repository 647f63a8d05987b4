"""Helpers for tests of projects that use django-durable (and a pytest plugin).

The pytest plugin (registered as the ``django_durable`` entry point) forgets, after each test,
the tasks that the test defined, so that tests may define tasks with the same ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .tasks import registry


@contextmanager
def isolated_registry() -> Iterator[None]:
    """Tasks defined inside the block are unregistered when it ends."""
    with registry.isolated():
        yield


def wait_until(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, message: str = ""
) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"Condition not met within {timeout}s")
        time.sleep(interval)


try:  # the pytest plugin, when pytest is installed
    import pytest

    @pytest.fixture(autouse=True)
    def _durable_isolated_registry() -> Iterator[None]:
        with isolated_registry():
            yield

except ImportError:  # pragma: no cover
    pass
