"""OpenTelemetry spans around enqueues and runs, when ``opentelemetry-api`` is installed.

Nothing is imported from OpenTelemetry until the first span, and only if it is installed:
without it, :func:`span` is a no-op. Spans go to whatever tracer provider the project
configured (the API's default provider drops them).

- ``durable.enqueue``: around :func:`~django_durable.handles.enqueue` (and ``enqueue_many``),
  attributes ``durable.task_id`` and, once known, ``durable.execution_id``.
- ``durable.run``: around one attempt of task code, attributes ``durable.task_id``,
  ``durable.execution_id``, ``durable.attempt`` and ``durable.queue``; an exception raised by
  the task is recorded and sets the span's status to error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

__all__ = ["SpanHandle", "span", "traced_enqueue"]

F = TypeVar("F", bound=Callable[..., Any])

_UNSET: Any = object()
_tracer: Any = _UNSET


_trace: Any = None


def _get_tracer() -> Any:
    """The tracer, or ``None`` without OpenTelemetry or while no SDK provider is configured
    (spans would be dropped: not creating them keeps the hot path as it is)."""
    global _tracer, _trace
    if _tracer is _UNSET:
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer = None
        else:
            _trace = trace
            _tracer = trace.get_tracer("django_durable")
    if (
        _trace is not None
        and isinstance(_tracer, _trace.ProxyTracer)
        and isinstance(
            _trace.get_tracer_provider(), _trace.ProxyTracerProvider | _trace.NoOpTracerProvider
        )
    ):
        return None
    return _tracer


class SpanHandle:
    """The span of a ``with span(...)`` block (or nothing, without OpenTelemetry)."""

    __slots__ = ("_span",)

    def __init__(self, span: Any) -> None:
        self._span = span

    def set(self, key: str, value: Any) -> None:
        if self._span is not None and value is not None:
            self._span.set_attribute(key, value)

    def fail(self, error: BaseException) -> None:
        """Record ``error`` (caught by the caller, not raised through the block)."""
        if self._span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self._span.record_exception(error)
        self._span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__name__))


@contextmanager
def span(name: str, attributes: dict[str, Any] | None = None) -> Iterator[SpanHandle]:
    """A span named ``name`` as the current span for the block, if OpenTelemetry is here."""
    tracer = _get_tracer()
    if tracer is None:
        yield SpanHandle(None)
        return
    clean = {key: value for key, value in (attributes or {}).items() if value is not None}
    with tracer.start_as_current_span(name, attributes=clean) as current:
        yield SpanHandle(current)


def traced_enqueue(function: F) -> F:
    """Wrap an enqueue function ``(task, input, ...)`` in a ``durable.enqueue`` span."""

    @functools.wraps(function)
    def wrapper(task: Any, *args: Any, **kwargs: Any) -> Any:
        if _get_tracer() is None:
            return function(task, *args, **kwargs)
        task_id = getattr(task, "id", task)
        with span("durable.enqueue", {"durable.task_id": str(task_id)}) as current:
            result = function(task, *args, **kwargs)
            if isinstance(result, list):
                current.set("durable.executions", len(result))
            else:
                current.set("durable.execution_id", getattr(result, "execution_id", None))
            return result

    return wrapper  # type: ignore[return-value]
