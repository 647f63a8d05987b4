"""OpenTelemetry spans around enqueues and runs (recorded by the SDK's in-memory exporter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from django_durable import task, tracing

WAIT = 20


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The engine's tracer, from a provider of this test's own (the global one is untouched)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("django_durable"))
    yield exporter
    provider.shutdown()


def test_enqueue_and_run_are_spans_with_the_execution_ids(make_executor, exporter):
    @task(id="trace.ok", timeout=10, queue="traced")
    def ok(ctx, input):
        return input

    @task(id="trace.async", timeout=10)
    async def ok_async(ctx, input):
        return input

    handle = ok.enqueue(1)
    async_handle = ok_async.enqueue(2)
    many = ok.enqueue_many([3, 4])
    make_executor(queues=["traced", "default"])
    for h in [handle, async_handle, *many]:
        assert h.wait(timeout=WAIT).status == "completed"

    spans = exporter.get_finished_spans()
    enqueues = [s for s in spans if s.name == "durable.enqueue"]
    assert [dict(s.attributes) for s in enqueues] == [
        {"durable.task_id": "trace.ok", "durable.execution_id": handle.execution_id},
        {"durable.task_id": "trace.async", "durable.execution_id": async_handle.execution_id},
        {"durable.task_id": "trace.ok", "durable.executions": 2},
    ]
    runs = {s.attributes["durable.execution_id"]: s for s in spans if s.name == "durable.run"}
    assert set(runs) == {h.execution_id for h in [handle, async_handle, *many]}
    run = runs[handle.execution_id]
    assert dict(run.attributes) == {
        "durable.task_id": "trace.ok",
        "durable.execution_id": handle.execution_id,
        "durable.attempt": 0,
        "durable.queue": "traced",
    }
    assert run.status.status_code == StatusCode.UNSET


def test_a_failing_run_records_the_exception(make_executor, exporter):
    @task(id="trace.boom", timeout=10)
    def boom(ctx, input):
        raise ValueError("boom")

    handle = boom.enqueue()
    make_executor()
    assert handle.wait(timeout=WAIT).status == "failed"
    [run] = [s for s in exporter.get_finished_spans() if s.name == "durable.run"]
    assert run.status.status_code == StatusCode.ERROR
    assert run.status.description == "boom"
    assert [event.name for event in run.events] == ["exception"]
    assert run.events[0].attributes["exception.type"] == "ValueError"


def test_without_a_tracer_spans_are_no_ops(monkeypatch):
    monkeypatch.setattr(tracing, "_tracer", None)
    with tracing.span("durable.run", {"durable.task_id": "t"}) as span:
        span.set("durable.attempt", 1)
        span.fail(RuntimeError("ignored"))


def test_no_spans_are_made_while_no_tracer_provider_is_configured(monkeypatch):
    from opentelemetry import trace

    monkeypatch.setattr(tracing, "_tracer", tracing._UNSET)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert tracing._get_tracer() is None
