"""Simple tasks through a real executor: lifecycle (seed A), retries and backoff (B), timeouts (C)
and serialization limits (F)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import sys
import threading
import time
import uuid
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from django_durable import (
    DurableExecutionCancelledError,
    DurableExecutionError,
    DurableExecutionNotFoundError,
    DurableExecutionTimedOutError,
    ParentResult,
    RetryOptions,
    child,
    parent_task,
    task,
)
from django_durable.models import TaskExecution
from django_durable.testing import wait_until

from ..scenario_helpers import (
    CANCELLED_ERROR,
    TIMED_OUT_ERROR,
    Counter,
    assert_finished,
    error_dict,
    row_count,
    run_in_threads,
)

pytestmark = pytest.mark.django_db(transaction=True, available_apps=["django_durable"])


# -- A: lifecycle ----------------------------------------------------------------------------


def test_sync_task_completes(executor) -> None:  # A1
    count = Counter()

    @task(id="test", timeout=1)
    def t(ctx, input):
        count.incr()
        return "test"

    handle = t.enqueue()
    snapshot = handle.wait(timeout=10)
    assert snapshot.status == "completed"
    assert snapshot.output == "test"
    assert snapshot.error is None
    assert snapshot.retry_attempts == 0
    assert snapshot.input is None
    assert snapshot.execution_id == handle.execution_id
    assert count.value == 1
    assert_finished(snapshot, "test")


class TestTransactionalEnqueue:  # A2
    def test_enqueue_inside_a_transaction_runs_after_commit(self, executor) -> None:
        count = Counter()

        @task(id="test", timeout=1)
        def t(ctx, input):
            count.incr()
            return "test"

        with transaction.atomic():
            handle = t.enqueue()
            # written in the caller's transaction: this connection sees it already
            assert row_count(execution_id=handle.execution_id) == 1
        snapshot = handle.wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == "test"
        assert count.value == 1

    def test_enqueued_row_is_invisible_to_others_until_commit(self, executor) -> None:
        count = Counter()

        @task(id="test", timeout=1)
        def t(ctx, input):
            count.incr()
            return "test"

        with transaction.atomic():
            handle = t.enqueue()
            seen_elsewhere = run_in_threads(lambda: row_count(execution_id=handle.execution_id), 1)
            assert seen_elsewhere == [0]
            assert count.value == 0
        assert handle.wait(timeout=10).status == "completed"
        assert count.value == 1

    def test_invalid_enqueue_leaves_the_transaction_usable(self, executor) -> None:
        @task(id="test", timeout=1, validate_input=_reject_unless_test)
        def t(ctx, input):
            return input

        with transaction.atomic():
            with pytest.raises(DurableExecutionError, match="Invalid input"):
                t.enqueue("invalid")
            handle = t.enqueue("test")
        assert handle.wait(timeout=10).output == "test"
        assert row_count() == 1

    def test_rolled_back_enqueue_stores_and_runs_nothing(self, executor) -> None:
        count = Counter()

        @task(id="test", timeout=1)
        def t(ctx, input):
            count.incr()
            return "test"

        class Rollback(Exception):
            pass

        with pytest.raises(Rollback), transaction.atomic():
            handle = t.enqueue()
            raise Rollback
        assert row_count() == 0
        with pytest.raises(DurableExecutionError, match=r"not found"):
            handle.get_execution()
        # a later enqueue runs, and the rolled-back one never did
        assert t.enqueue().wait(timeout=10).status == "completed"
        assert count.value == 1


def test_async_task_completes(executor) -> None:  # A3
    count = Counter()

    @task(id="test", timeout=1)
    async def t(ctx, input):
        count.incr()
        await asyncio.sleep(0.001)
        return "test"

    snapshot = t.enqueue().wait(timeout=10)
    assert snapshot.status == "completed"
    assert snapshot.output == "test"
    assert count.value == 1
    assert_finished(snapshot, "test")


def test_task_with_one_parameter_receives_only_ctx(executor) -> None:
    @task(id="test", timeout=1)
    def t(ctx):
        return ctx.task_id

    assert t.enqueue().wait(timeout=10).output == "test"


# -- A: input validation ------------------------------------------------------------------------


def _reject_unless_test(value):
    if value != "test":
        raise ValueError("Invalid input")
    return value


class TestValidation:
    def test_validate_input_accepts(self, executor) -> None:  # A4
        count = Counter()

        @task(id="test", timeout=1, validate_input=_reject_unless_test)
        def t(ctx, input):
            count.incr()
            return input

        snapshot = t.enqueue("test").wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == "test"
        assert count.value == 1

    def test_validate_input_rejects_at_enqueue(self, executor) -> None:  # A5 (DESIGN)
        count = Counter()

        @task(id="test", timeout=1, validate_input=_reject_unless_test)
        def t(ctx, input):
            count.incr()
            return input

        with pytest.raises(DurableExecutionError) as info:
            t.enqueue("invalid")
        assert info.value.message == "Invalid input to task test: Invalid input"
        assert info.value.is_retryable is False
        assert info.value.error_type == "generic"
        assert row_count() == 0
        assert count.value == 0

    def test_validator_transforms_the_input_at_run_time(self, executor) -> None:
        @task(id="test", timeout=1, validate_input=int)
        def t(ctx, input):
            return {"type": type(input).__name__, "double": input * 2}

        handle = t.enqueue("21")
        assert handle.get_execution().input == "21"  # stored as given
        snapshot = handle.wait(timeout=10)
        assert snapshot.output == {"type": "int", "double": 42}

    def test_validator_failing_at_run_time_fails_without_running(self, executor) -> None:
        """Validation runs again when the execution runs (seed A5's run-time semantics)."""
        calls = Counter()
        count = Counter()

        def accept_once(value):
            if calls.incr() > 1:
                raise ValueError("Invalid input")
            return value

        @task(id="test", timeout=1, validate_input=accept_once)
        def t(ctx, input):
            count.incr()
            return input

        snapshot = t.enqueue("test").wait(timeout=10)
        assert snapshot.status == "failed"
        assert count.value == 0
        assert snapshot.error == error_dict("Invalid input to task test: Invalid input")
        assert snapshot.started_at is not None
        assert_finished(snapshot, "test")

    def test_validator_error_is_not_retried(self, executor) -> None:
        calls = Counter()

        def reject_at_run_time(value):
            if calls.incr() > 1:
                raise ValueError("nope")
            return value

        @task(
            id="test",
            timeout=1,
            retry=RetryOptions(max_retries=3),
            validate_input=reject_at_run_time,
        )
        def t(ctx, input):
            return input

        snapshot = t.enqueue("x").wait(timeout=10)
        assert snapshot.status == "failed"
        assert snapshot.retry_attempts == 0
        assert calls.value == 2

    def test_input_schema_drf_accepts(self, executor) -> None:  # A6
        from rest_framework import serializers

        class NameSerializer(serializers.Serializer):
            name = serializers.CharField()

        @task(id="test", timeout=1, input_schema=NameSerializer)
        def t(ctx, input):
            return input["name"]

        snapshot = t.enqueue({"name": "test"}).wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == "test"

    def test_input_schema_pydantic_accepts(self, executor) -> None:  # A7
        import pydantic

        class Name(pydantic.BaseModel):
            name: str

        @task(id="test", timeout=1, input_schema=Name)
        def t(ctx, input):
            assert isinstance(input, Name)
            return input.name

        snapshot = t.enqueue({"name": "test"}).wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == "test"

    @pytest.mark.parametrize("value", [{"name": None}, {}, {"name": ["a"]}, "test"])
    def test_input_schema_drf_rejects_at_enqueue(self, executor, value) -> None:  # A8
        from rest_framework import serializers

        class NameSerializer(serializers.Serializer):
            name = serializers.CharField()

        count = Counter()

        @task(id="test", timeout=1, input_schema=NameSerializer)
        def t(ctx, input):
            count.incr()
            return input["name"]

        with pytest.raises(DurableExecutionError, match=r"^Invalid input to task test") as info:
            t.enqueue(value)
        assert info.value.is_retryable is False
        assert info.value.error_type == "generic"
        assert row_count() == 0
        assert count.value == 0

    def test_input_schema_pydantic_rejects_at_enqueue(self, executor) -> None:  # A9
        import pydantic

        class Name(pydantic.BaseModel):
            name: str

        @task(id="test", timeout=1, input_schema=Name)
        def t(ctx, input):
            return input.name

        with pytest.raises(DurableExecutionError, match=r"^Invalid input to task test") as info:
            t.enqueue({"name": 0})
        assert "name" in info.value.message
        assert info.value.is_retryable is False
        assert row_count() == 0

    def test_child_with_invalid_input_fails_the_parent_run(self, executor) -> None:
        count = Counter()

        @task(id="strict_child", timeout=1, validate_input=_reject_unless_test)
        def strict_child(ctx, input):
            count.incr()
            return input

        @parent_task(id="parent", timeout=1)
        def parent(ctx, input):
            return ParentResult(output="p", children=[child(strict_child, "invalid")])

        snapshot = parent.enqueue().wait(timeout=10)
        assert snapshot.status == "failed"
        assert "Invalid input to task strict_child: Invalid input" in snapshot.error.message
        assert snapshot.error.is_retryable is False
        assert count.value == 0
        assert row_count(task_id="strict_child") == 0


def test_plain_exception_fails_without_retries(executor) -> None:  # A10
    count = Counter()

    @task(id="test", timeout=1)
    def t(ctx, input):
        count.incr()
        raise Exception("Test error")

    snapshot = t.enqueue().wait(timeout=10)
    assert snapshot.status == "failed"
    assert count.value == 1
    assert snapshot.error == error_dict("Test error", is_retryable=True)
    assert snapshot.error.message == "Test error"
    assert snapshot.output is None
    assert snapshot.retry_attempts == 0
    assert_finished(snapshot, "test")


def test_async_task_exception_fails(executor) -> None:
    @task(id="test", timeout=1)
    async def t(ctx, input):
        raise ValueError("async boom")

    snapshot = t.enqueue().wait(timeout=10)
    assert snapshot.status == "failed"
    assert snapshot.error == error_dict("async boom", is_retryable=True)


# -- B: retries and backoff ------------------------------------------------------------------------


class TestRetries:
    def test_succeeds_on_retry(self, executor) -> None:  # B1
        count = Counter()

        @task(id="test", timeout=1, retry=RetryOptions(max_retries=1))
        def t(ctx, input):
            count.incr()
            if ctx.attempt == 0:
                raise Exception("Test error")
            return "test"

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == "test"
        assert snapshot.error is None
        assert snapshot.retry_attempts == 1
        assert count.value == 2

    def test_fails_after_retries_with_the_last_error(self, executor) -> None:  # B2
        count = Counter()

        @task(id="test", timeout=1, retry=RetryOptions(max_retries=1))
        def t(ctx, input):
            count.incr()
            raise Exception(f"Test error {ctx.attempt}")

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "failed"
        assert count.value == 2
        assert snapshot.error == error_dict("Test error 1", is_retryable=True)
        assert snapshot.retry_attempts == 1

    @pytest.mark.parametrize(
        "error",
        [
            DurableExecutionError.non_retryable("Test error"),
            DurableExecutionError("Test error"),
        ],
        ids=["non_retryable", "plain_durable_error"],
    )
    def test_non_retryable_error_skips_retries(self, executor, error) -> None:  # B3
        count = Counter()

        @task(id="test", timeout=1, retry=RetryOptions(max_retries=1))
        def t(ctx, input):
            count.incr()
            raise error

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "failed"
        assert count.value == 1
        assert snapshot.error == error_dict("Test error", is_retryable=False)

    def test_raising_cancelled_error_cancels_without_retries(self, executor) -> None:
        count = Counter()

        @task(id="test", timeout=1, retry=RetryOptions(max_retries=2))
        def t(ctx, input):
            count.incr()
            raise DurableExecutionCancelledError()

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "cancelled"
        assert snapshot.error == CANCELLED_ERROR
        assert count.value == 1

    def test_raising_not_found_error_fails_without_retries(self, executor) -> None:
        count = Counter()

        @task(id="test", timeout=1, retry=RetryOptions(max_retries=2))
        def t(ctx, input):
            count.incr()
            raise DurableExecutionNotFoundError("missing thing")

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "failed"
        assert snapshot.error == error_dict("missing thing", error_type="not_found")
        assert count.value == 1

    def test_retryable_durable_error_is_retried(self, executor) -> None:
        count = Counter()

        @task(id="test", timeout=1, retry=RetryOptions(max_retries=2))
        def t(ctx, input):
            count.incr()
            raise DurableExecutionError.retryable("again", is_internal=True)

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "failed"
        assert count.value == 3
        assert snapshot.error == error_dict("again", is_retryable=True, is_internal=True)

    def test_attempt_and_prev_error_in_context(self, executor) -> None:  # B4
        contexts: list[tuple] = []

        @task(id="test", timeout=1, retry=RetryOptions(max_retries=1))
        def t(ctx, input):
            contexts.append((ctx.attempt, ctx.prev_error))
            raise Exception("Test error")

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "failed"
        assert snapshot.error.message == "Test error"
        assert len(contexts) == 2
        assert contexts[0] == (0, None)
        attempt, prev_error = contexts[1]
        assert attempt == 1
        assert prev_error.message == "Test error"
        assert prev_error == error_dict("Test error", is_retryable=True)

    def test_sleep_before_run_delays_the_first_run_only(self, executor) -> None:  # B5
        starts: list[dt.datetime] = []

        @task(id="test", timeout=1, retry=RetryOptions(max_retries=1), sleep_before_run=0.5)
        def t(ctx, input):
            starts.append(timezone.now())
            raise Exception("Test error")

        handle = t.enqueue()
        snapshot = handle.wait(timeout=10)
        assert snapshot.status == "failed"
        assert len(starts) == 2
        assert starts[0] - snapshot.created_at >= dt.timedelta(seconds=0.5)
        assert snapshot.started_at - snapshot.created_at >= dt.timedelta(seconds=0.5)
        # the retry was scheduled at once (``start_at`` is set when the first attempt failed)
        assert snapshot.start_at - starts[0] < dt.timedelta(seconds=0.25)
        assert starts[1] - starts[0] < dt.timedelta(seconds=0.5)

    def test_default_retry_delay_is_zero(self, executor) -> None:  # B6
        starts: list[dt.datetime] = []

        @task(id="test", timeout=1, retry=RetryOptions(max_retries=1))
        def t(ctx, input):
            starts.append(timezone.now())
            raise Exception("Test error")

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "failed"
        assert len(starts) == 2
        assert dt.timedelta(0) <= snapshot.start_at - starts[0] < dt.timedelta(seconds=0.25)
        assert starts[1] >= snapshot.start_at

    def test_readme_retry_example(self, executor) -> None:  # B7
        starts: list[float] = []

        @task(
            id="a",
            timeout=1,
            retry=RetryOptions(max_retries=5, base_delay=0.1, delay_multiplier=1.5, max_delay=1),
        )
        def a(ctx, input):
            starts.append(time.monotonic())
            if ctx.attempt < 2:
                raise Exception("Failed")
            return {"total_attempts": ctx.attempt + 1, "output": f"Hello, {input['name']}!"}

        snapshot = a.enqueue({"name": "world"}).wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == {"total_attempts": 3, "output": "Hello, world!"}
        assert snapshot.retry_attempts == 2
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert gaps[0] >= 0.1 - 0.01
        assert gaps[1] >= 0.15 - 0.01
        assert all(gap < 1.5 for gap in gaps)

    def test_backoff_is_capped_by_max_delay(self, executor) -> None:
        starts: list[float] = []

        @task(
            id="test",
            timeout=1,
            retry=RetryOptions(max_retries=3, base_delay=0.1, delay_multiplier=4, max_delay=0.2),
        )
        def t(ctx, input):
            starts.append(time.monotonic())
            raise Exception("Failed")

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "failed"
        assert snapshot.retry_attempts == 3
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert len(gaps) == 3
        # uncapped, the delays would be 0.1, 0.4 and 1.6 seconds
        for gap, expected in zip(gaps, [0.1, 0.2, 0.2], strict=True):
            assert expected - 0.01 <= gap < expected + 1.0

    def test_immediate_retries_are_never_orphaned(self, executor) -> None:
        """Many executions retrying with no delay: every retry is claimed and run.

        A regression test of a race: a retry claimed before its previous attempt had left the
        executor's running map was dropped and stayed ``running`` until it expired. Rounds of
        40 executions x 10 retries run with a short GIL switch interval (threads are preempted
        more often), which made the race show up within a few rounds.
        """
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)
        try:
            self._immediate_retries_rounds(executor, rounds=3)
        finally:
            sys.setswitchinterval(switch_interval)

    def _immediate_retries_rounds(self, executor, rounds: int) -> None:

        @task(id="flaky", timeout=5, retry=RetryOptions(max_retries=10))
        def flaky(ctx, input):
            raise Exception(f"fail {ctx.attempt}")

        def unfinished() -> list:
            return list(
                TaskExecution.objects.filter(task_id="flaky", is_finished=False).values_list(
                    "execution_id", "status", "executor_id", "retry_attempts"
                )
            )

        for _ in range(rounds):
            handles = [flaky.enqueue(i) for i in range(40)]
            # wait until all finished, or nothing progressed for 2 seconds
            last, last_change = None, time.monotonic()
            while (pending := unfinished()) and time.monotonic() - last_change < 2:
                if pending != last:
                    last, last_change = pending, time.monotonic()
                time.sleep(0.05)
            orphaned = [
                row
                for row in unfinished()
                if row[1] == "running"
                and row[2] == executor.id
                and row[0] not in executor.running_execution_ids
            ]
            assert orphaned == []
            snapshots = [h.wait(timeout=5) for h in handles]
            assert [(s.status, s.retry_attempts) for s in snapshots] == [("failed", 10)] * 40
            assert all(s.error.message == "fail 10" for s in snapshots)
            TaskExecution.objects.filter(task_id="flaky").delete()

    def test_retrying_execution_is_ready_with_the_previous_error(self, executor) -> None:
        @task(id="test", timeout=5, retry=RetryOptions(max_retries=1, base_delay=60))
        def t(ctx, input):
            raise Exception("first failure")

        handle = t.enqueue()
        snapshot = wait_until(lambda: (s := handle.get_execution()).retry_attempts == 1 and s, 10)
        assert snapshot.status == "ready"
        assert snapshot.error == error_dict("first failure", is_retryable=True)
        assert snapshot.start_at - snapshot.updated_at >= dt.timedelta(seconds=59)
        assert snapshot.started_at is None
        assert snapshot.executor_id is None


# -- C: timeouts -----------------------------------------------------------------------------------


class TestTimeouts:
    def test_run_exceeding_its_timeout(self, executor) -> None:  # C1
        count = Counter()
        aborted = threading.Event()

        @task(id="test", timeout=0.05)
        def t(ctx, input):
            count.incr()
            if ctx.abort_signal.wait(2):
                aborted.set()
            return "late"

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "timed_out"
        assert count.value == 1
        assert snapshot.error == TIMED_OUT_ERROR
        assert snapshot.output is None
        assert_finished(snapshot, "test")
        assert aborted.wait(2), "the timeout did not set the abort signal"
        assert (snapshot.finished_at - snapshot.started_at).total_seconds() < 1.5

    def test_async_run_exceeding_its_timeout_is_cancelled(self, executor) -> None:
        cancelled = threading.Event()

        @task(id="test", timeout=0.1)
        async def t(ctx, input):
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "late"

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "timed_out"
        assert snapshot.error == TIMED_OUT_ERROR
        assert cancelled.wait(2)

    def test_timed_out_attempt_is_retried(self, executor) -> None:
        count = Counter()

        @task(id="test", timeout=0.1, retry=RetryOptions(max_retries=1))
        def t(ctx, input):
            count.incr()
            if ctx.attempt == 0:
                ctx.abort_signal.wait(2)
                return "late"
            return {"prev": ctx.prev_error}

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == {"prev": TIMED_OUT_ERROR}
        assert snapshot.retry_attempts == 1
        assert count.value == 2

    def test_raising_timed_out_error_ends_timed_out(self, executor) -> None:
        @task(id="test", timeout=1)
        def t(ctx, input):
            raise DurableExecutionTimedOutError()

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "timed_out"
        assert snapshot.error == TIMED_OUT_ERROR

    def test_enqueue_timeout_override(self, executor) -> None:  # C2
        count = Counter()

        @task(id="test", timeout=0.05, retry=RetryOptions(max_retries=1))
        def t(ctx, input):
            count.incr()
            time.sleep(0.2)
            return "test"

        snapshot = t.enqueue(timeout=5).wait(timeout=10)
        assert snapshot.status == "completed"
        assert snapshot.output == "test"
        assert snapshot.timeout == 5.0
        assert count.value == 1


# -- F: serialization and size limits --------------------------------------------------


class TestSerialization:
    def test_input_over_the_limit_is_refused_at_enqueue(self, executor) -> None:  # F1
        count = Counter()

        @task(id="too_large_input", timeout=1)
        def t(ctx, input):
            count.incr()

        with pytest.raises(DurableExecutionError, match=r"size") as info:
            t.enqueue("x" * (1_048_576 + 1000))
        assert info.value.is_retryable is False
        assert row_count() == 0
        assert count.value == 0

    def test_output_over_the_limit_fails_the_task(self, executor) -> None:  # F2
        @task(id="test", timeout=5)
        def t(ctx, input):
            return "z" * (1_048_576 + 10_000)

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "failed"
        assert "size" in snapshot.error.message
        assert snapshot.output is None

    def test_output_of_an_unsupported_type_fails_the_task(self, executor) -> None:
        @task(id="test", timeout=5, retry=RetryOptions(max_retries=2))
        def t(ctx, input):
            return {"value": object()}

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "failed"
        assert "not serializable" in snapshot.error.message
        assert snapshot.error.is_retryable is False
        assert snapshot.retry_attempts == 0

    def test_rich_values_round_trip_through_an_execution(self, executor) -> None:  # F7
        value = {
            "test": "value",
            "number": 123,
            "date": timezone.now(),
            "day": dt.date(2024, 2, 29),
            "time": dt.time(12, 30, 15),
            "delta": dt.timedelta(days=1, seconds=3),
            "decimal": Decimal("10.25"),
            "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "bytes": b"\x00\xff",
            "set": {1, 2, 3},
            "tuple": (1, "a"),
            "nested": [{"x": None, "y": True, "z": 1.5}],
        }

        @task(id="test", timeout=5)
        def t(ctx, input):
            assert input == value
            return {"echo": input, "types": sorted({type(v).__name__ for v in input.values()})}

        snapshot = t.enqueue(value).wait(timeout=10)
        assert snapshot.status == "completed", snapshot.error
        assert snapshot.input == value
        assert snapshot.output["echo"] == value
        assert snapshot.output["types"] == sorted({type(v).__name__ for v in value.values()})


class ConstantSerializer:
    """F6: a custom serializer that writes everything as ``"test"``."""

    def serialize(self, value):
        return "test"

    def deserialize(self, data):
        return data


class PickySerializer:
    """F5: a JSON serializer that refuses the value ``"boom"``."""

    def serialize(self, value):
        if value == "boom":
            raise ValueError("serialize error")
        return json.dumps(value)

    def deserialize(self, data):
        return json.loads(data)


def _use_serializer(settings, name: str) -> None:
    settings.DURABLE = {**settings.DURABLE, "SERIALIZER": f"{__name__}.{name}"}


class TestCustomSerializer:
    def test_custom_serializer_is_used(self, settings, make_executor) -> None:  # F6
        _use_serializer(settings, "ConstantSerializer")
        make_executor()

        @task(id="test", timeout=1)
        def t(ctx, input):
            return "random"

        snapshot = t.enqueue().wait(timeout=10)
        assert snapshot.status == "completed", snapshot.error
        assert snapshot.output == "test"

    def test_serializer_errors_surface(self, settings, make_executor) -> None:  # F5
        _use_serializer(settings, "PickySerializer")
        make_executor()

        @task(id="test", timeout=1, retry=RetryOptions(max_retries=2))
        def t(ctx, input):
            return input

        with pytest.raises(DurableExecutionError, match="serialize error") as info:
            t.enqueue("boom")
        assert info.value.is_retryable is False
        assert row_count() == 0

        @task(id="boom", timeout=1, retry=RetryOptions(max_retries=2))
        def boom(ctx, input):
            return "boom"

        snapshot = boom.enqueue({"ok": 1}).wait(timeout=10)
        assert snapshot.status == "failed"
        assert snapshot.error.message == "serialize error"
        assert snapshot.error.is_retryable is False
        assert snapshot.retry_attempts == 0
        assert t.enqueue([1, 2]).wait(timeout=10).output == [1, 2]
