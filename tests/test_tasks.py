"""Task definitions: options and id validation (seed D1, D3, D6, C3, G3, H7) and the registry.

Nothing here touches the database: definitions are validated when they are made.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_durable import (
    DurableExecutionError,
    DurableExecutionNotFoundError,
    ParentResult,
    RetryOptions,
    Task,
    child,
    looping_task,
    parent_task,
    sequential_tasks,
    sleeping_task,
    task,
)
from django_durable.tasks import DEFAULT_TIMEOUT, TaskKind, get_task, registry


def make(task_id: str = "test", **options):
    """Define a trivial task ``task_id`` with ``options``."""

    def run(ctx, input):
        return input

    return task(id=task_id, **options)(run)


# -- D1: valid options ---------------------------------------------------------------------


class TestValidOptions:
    def test_retry_with_max_retries_only(self) -> None:
        t = make(retry=RetryOptions(max_retries=1))
        assert t.retry == RetryOptions(max_retries=1, base_delay=0.0, delay_multiplier=1.0)
        assert t.retry.max_delay is None

    def test_retry_with_multiplier(self) -> None:
        t = make(retry=RetryOptions(max_retries=2, delay_multiplier=2))
        assert (t.retry.max_retries, t.retry.delay_multiplier) == (2, 2.0)

    @pytest.mark.parametrize("sleep", [0, 1, 0.5, timedelta(milliseconds=250)])
    def test_sleep_before_run(self, sleep) -> None:
        t = make(sleep_before_run=sleep)
        expected = sleep.total_seconds() if isinstance(sleep, timedelta) else float(sleep)
        assert t.sleep_before_run == expected

    def test_all_options_together(self) -> None:
        t = make(
            retry=RetryOptions(max_retries=3, base_delay=1, delay_multiplier=3, max_delay=3),
            sleep_before_run=1,
            timeout=3,
        )
        assert t.retry == RetryOptions(3, 1.0, 3.0, 3.0)
        assert t.sleep_before_run == 1.0
        assert t.timeout == 3.0

    def test_retry_as_mapping_and_as_int(self) -> None:
        assert make("a", retry={"max_retries": 4, "base_delay": 0.5}).retry == RetryOptions(
            4, 0.5, 1.0, None
        )
        assert make("b", retry=2).retry.max_retries == 2

    def test_timeout_as_timedelta(self) -> None:
        assert make(timeout=timedelta(seconds=2, milliseconds=500)).timeout == 2.5

    def test_defaults(self) -> None:
        t = make()
        assert t.timeout == DEFAULT_TIMEOUT
        assert t.retry == RetryOptions()
        assert t.retry.max_retries == 0
        assert t.sleep_before_run == 0.0
        assert t.kind == TaskKind.TASK

    def test_retry_delay_formula(self) -> None:
        retry = RetryOptions(max_retries=5, base_delay=0.1, delay_multiplier=1.5, max_delay=1.0)
        delays = [round(retry.validate("t").delay(n), 6) for n in range(7)]
        assert delays == [0.1, 0.15, 0.225, 0.3375, 0.50625, 0.759375, 1.0]
        assert RetryOptions(max_retries=1).validate("t").delay(3) == 0.0


# -- D1 / C3: invalid options ----------------------------------------------------------------


class TestInvalidOptions:
    @pytest.mark.parametrize(
        "define",
        [
            lambda: sleeping_task(id="", timeout=1),
            lambda: sequential_tasks("", [make("a")]),
            lambda: looping_task("", make("a"), 2),
        ],
        ids=["sleeping", "sequential", "looping"],
    )
    def test_empty_id(self, define) -> None:
        with pytest.raises(DurableExecutionError, match=r"^Task id cannot be empty"):
            define()

    @pytest.mark.parametrize("decorator", [task, parent_task])
    def test_explicit_empty_id_on_decorators(self, decorator) -> None:
        with pytest.raises(DurableExecutionError, match=r"^Task id cannot be empty"):
            decorator(id="")(lambda ctx, input: input)

    def test_id_too_long(self) -> None:
        with pytest.raises(
            DurableExecutionError, match=r"^Task id cannot be longer than 255 characters"
        ):
            make("a" * 256)

    def test_id_of_255_characters_is_fine(self) -> None:
        assert make("a" * 255).id == "a" * 255

    @pytest.mark.parametrize("timeout", ["1000", -1, 0, float("nan"), float("inf"), True])
    def test_invalid_timeout(self, timeout) -> None:
        with pytest.raises(DurableExecutionError, match=r"^Invalid timeout value for task test"):
            make(timeout=timeout)

    @pytest.mark.parametrize("sleep", ["1000", -1, -100, timedelta(seconds=-1)])
    def test_invalid_sleep_before_run(self, sleep) -> None:
        with pytest.raises(
            DurableExecutionError, match=r"^Invalid sleep before run value for task test"
        ):
            make(sleep_before_run=sleep)

    @pytest.mark.parametrize(
        "retry",
        [
            RetryOptions(max_retries="1"),  # type: ignore[arg-type]
            RetryOptions(max_retries=-1),
            RetryOptions(max_retries=-5),
            RetryOptions(max_retries=10000),
            RetryOptions(max_retries=1001),
            RetryOptions(max_retries=1.5),  # type: ignore[arg-type]
            RetryOptions(max_retries=True),
            RetryOptions(max_retries=1, base_delay=-1),
            RetryOptions(max_retries=1, base_delay=3601),
            RetryOptions(max_retries=1, delay_multiplier=0.05),
            RetryOptions(max_retries=1, delay_multiplier=11),
            RetryOptions(max_retries=1, max_delay=86401),
            RetryOptions(max_retries=1, base_delay=2, max_delay=1),
            {"max_retries": 1, "unknown": 2},
            {"max_retries": -1},
            "3",
        ],
    )
    def test_invalid_retry_options(self, retry) -> None:
        with pytest.raises(DurableExecutionError, match=r"^Invalid retry options for task test"):
            make(retry=retry)

    def test_max_delay_below_base_delay_message(self) -> None:
        with pytest.raises(DurableExecutionError, match=r"max_delay must be greater than or equal"):
            make(retry=RetryOptions(max_retries=1, base_delay=2, max_delay=1))

    def test_retry_bounds_are_inclusive(self) -> None:
        t = make(
            retry=RetryOptions(
                max_retries=1000, base_delay=3600, delay_multiplier=10, max_delay=86400
            )
        )
        assert t.retry.max_retries == 1000
        assert make("b", retry=RetryOptions(max_retries=0, delay_multiplier=0.1)).retry

    def test_id_is_checked_before_options(self) -> None:
        with pytest.raises(DurableExecutionError, match=r"^Task id can only contain"):
            make("bad-id", timeout=-1)

    def test_options_are_checked_before_the_duplicate_id(self) -> None:
        make("test")
        with pytest.raises(DurableExecutionError, match=r"^Invalid timeout value for task test"):
            make("test", timeout=-1)

    def test_an_invalid_definition_is_not_registered(self) -> None:
        with pytest.raises(DurableExecutionError):
            make("test", timeout=-1)
        assert "test" not in registry
        assert make("test").id == "test"

    def test_unknown_option_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match=r"Unknown task option"):
            make(timeot=1)

    def test_validate_input_and_input_schema_together(self) -> None:
        from rest_framework import serializers

        class Schema(serializers.Serializer):
            name = serializers.CharField()

        with pytest.raises(DurableExecutionError, match=r"either validate_input= or input_schema="):
            make(validate_input=lambda value: value, input_schema=Schema)

    def test_input_schema_of_the_wrong_kind(self) -> None:
        with pytest.raises(DurableExecutionError, match=r"input_schema must be"):
            make(input_schema={"name": str})

    def test_finalize_must_be_callable_or_task(self) -> None:
        with pytest.raises(DurableExecutionError, match=r"finalize must be a function or a task"):
            parent_task(id="p", finalize="nope")(lambda ctx, input: ParentResult())

    def test_finalize_cannot_be_a_sleeping_task(self) -> None:
        sleeper = sleeping_task(id="sleeper", timeout=10)
        with pytest.raises(DurableExecutionError, match=r"Finalize task cannot be a sleeping task"):
            parent_task(id="p", finalize=sleeper)(lambda ctx, input: ParentResult())

    @pytest.mark.parametrize("timeout", [-1, 0, "10"])
    def test_sleeping_task_timeout(self, timeout) -> None:
        with pytest.raises(DurableExecutionError, match=r"^Invalid timeout value for task sleeper"):
            sleeping_task(id="sleeper", timeout=timeout)


# -- D3: task id charset -----------------------------------------------------------------------


class TestTaskIds:
    @pytest.mark.parametrize(
        "task_id", ["valid_id", "validTaskId123", "task123", "test", "app.tasks.send_mail", "_"]
    )
    def test_valid_ids(self, task_id) -> None:
        assert make(task_id).id == task_id

    @pytest.mark.parametrize(
        "task_id",
        [
            "invalid-id",
            "invalid id",
            "$invalid_id",
            "invalid_id ",
            "task@id",
            "task#id",
            "task%id",
            "task-id-with-hyphens",
            "tâche",
            "a/b",
        ],
    )
    def test_invalid_characters(self, task_id) -> None:
        with pytest.raises(
            DurableExecutionError,
            match=r"^Task id can only contain alphanumeric characters(, underscores)?",
        ) as info:
            make(task_id)
        assert info.value.is_retryable is False

    def test_long_id_is_a_length_error(self) -> None:
        with pytest.raises(DurableExecutionError, match=r"\[idLength=260\]"):
            make("task" + "a" * 256)

    def test_default_id_is_module_and_qualname(self) -> None:
        @task
        def send_mail(ctx, input):
            return None

        @task(timeout=5)
        def other(ctx, input):
            return None

        assert send_mail.id == (
            f"{__name__}.TestTaskIds.test_default_id_is_module_and_qualname.send_mail"
        )
        assert other.id.endswith(".other")
        assert get_task(send_mail.id) is send_mail


# -- D6 and the registry --------------------------------------------------------------------


class TestRegistry:
    def test_duplicate_id(self) -> None:
        make("test")
        with pytest.raises(
            DurableExecutionError, match=r"^Task with given id already exists \[taskId=test\]$"
        ):
            make("test")

    @pytest.mark.parametrize("kind", ["task", "parent", "sleeping", "sequential"])
    def test_duplicate_id_across_kinds(self, kind) -> None:
        first = make("first")
        make("dup")
        with pytest.raises(DurableExecutionError, match=r"already exists"):
            if kind == "task":
                make("dup")
            elif kind == "parent":
                parent_task(id="dup")(lambda ctx, input: ParentResult())
            elif kind == "sleeping":
                sleeping_task(id="dup", timeout=1)
            else:
                sequential_tasks("dup", [first])

    def test_looping_task_registers_its_inner_tasks(self) -> None:
        iteration = make("iteration")
        loop = looping_task("looping", iteration, 3)
        assert loop.id == "looping"
        assert loop.kind == TaskKind.PARENT_TASK
        assert {"looping", "looping_inner", "looping_inner_finalize"} <= {t.id for t in registry}
        with pytest.raises(DurableExecutionError, match=r"already exists"):
            make("looping_inner")

    def test_looping_task_id_clash_with_an_inner_id(self) -> None:
        make("looping_inner")
        with pytest.raises(DurableExecutionError, match=r"already exists"):
            looping_task("looping", make("iteration"), 3)

    def test_get_task(self) -> None:
        t = make("known")
        assert get_task("known") is t
        assert get_task(t) is t
        with pytest.raises(DurableExecutionNotFoundError, match=r"^Task not found \[taskId=nope\]"):
            get_task("nope")

    def test_registry_is_isolated_per_test_part_1(self) -> None:
        make("isolated_id")
        assert "isolated_id" in registry

    def test_registry_is_isolated_per_test_part_2(self) -> None:
        assert "isolated_id" not in registry
        make("isolated_id")


# -- task kinds ----------------------------------------------------------------------------------


class TestKinds:
    def test_task_is_callable_directly(self) -> None:
        @task(id="double")
        def double(ctx, input):
            return input * 2

        assert isinstance(double, Task)
        assert double(None, 21) == 42

    def test_async_task_is_detected(self) -> None:
        @task(id="async_task")
        async def run(ctx, input):
            return input

        @task(id="sync_task")
        def run_sync(ctx, input):
            return input

        assert run.is_async is True
        assert run_sync.is_async is False

    def test_parent_task(self) -> None:
        c = make("c")

        def fin(ctx, result):
            return result.output

        @parent_task(id="p", timeout=10, finalize=fin)
        def p(ctx, input):
            return ParentResult(output=1, children=[child(c, 1)])

        assert p.kind == TaskKind.PARENT_TASK
        assert p.finalize is fin
        assert p.timeout == 10.0

    def test_sleeping_task(self) -> None:
        s = sleeping_task(id="wait_for_payment", timeout=3600)
        assert s.kind == TaskKind.SLEEPING_TASK
        assert s.timeout == 3600.0
        assert s.retry.max_retries == 0
        assert s.sleep_before_run == 0.0

    def test_sequential_tasks(self) -> None:
        a, b = make("a"), make("b")
        seq = sequential_tasks("seq", [a, b])
        assert seq.kind == TaskKind.SEQUENTIAL_TASKS
        assert seq.steps == (a, b)
        assert seq.timeout == 30.0

    def test_sequential_tasks_by_id(self) -> None:
        a = make("a")
        assert sequential_tasks("seq", ["a"]).steps == (a,)
        with pytest.raises(DurableExecutionNotFoundError, match=r"Task not found"):
            sequential_tasks("seq2", ["missing"])

    @pytest.mark.parametrize("tasks", [[], (), None])
    def test_empty_sequence(self, tasks) -> None:  # G3
        with pytest.raises(DurableExecutionError, match=r"^No tasks provided$"):
            sequential_tasks("seq", tasks)
        assert "seq" not in registry

    @pytest.mark.parametrize("max_attempts", [-1, 0, 1.5, "3", True])
    def test_invalid_max_attempts(self, max_attempts) -> None:  # H7
        with pytest.raises(DurableExecutionError, match=r"^Max attempts must be greater than 0$"):
            looping_task("looping", make("iteration"), max_attempts)
        assert "looping" not in registry


# -- D7: executor options ------------------------------------------------------------------------


class TestExecutorOptions:
    @pytest.mark.parametrize(
        "overrides",
        [{"max_input_size": "invalid"}, {"poll_interval": -1}, {"max_concurrent_executions": 0}],
    )
    def test_invalid_executor_options(self, overrides) -> None:
        from django.core.exceptions import ImproperlyConfigured

        from django_durable import Executor

        with pytest.raises(ImproperlyConfigured, match="is invalid"):
            Executor(**overrides)

    def test_unknown_executor_option(self) -> None:
        from django_durable import Executor

        with pytest.raises(TypeError, match="Unknown option 'bogus'"):
            Executor(bogus=1)

    def test_executor_ids(self) -> None:
        from django_durable import Executor

        first, second = Executor(), Executor()
        assert first.id.startswith("de_") and len(first.id) == 11
        assert first.id != second.id
        assert first.is_running is False
