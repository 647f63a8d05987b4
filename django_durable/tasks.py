"""Task definitions: the task kinds, their options, input validation and the registry."""

from __future__ import annotations

import enum
import inspect
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, overload

from .errors import DurableExecutionError
from .results import ChildSpec, ParentResult, ParentRunResult, child

if TYPE_CHECKING:
    from .handles import TaskHandle

__all__ = [
    "RetryOptions",
    "Task",
    "TaskKind",
    "looping_task",
    "parent_task",
    "registry",
    "sequential_tasks",
    "sleeping_task",
    "task",
]

DEFAULT_TIMEOUT = 300.0
#: Longest accepted duration (timeouts, delays): 100 years.
MAX_DURATION = 100 * 365 * 86400.0
#: Timeout of the wrapper tasks of sequences and loops (seed: 30 s).
WRAPPER_TIMEOUT = 30.0
_TASK_ID_RE = re.compile(r"^[A-Za-z0-9_.]+$")


class TaskKind(enum.StrEnum):
    TASK = "task"
    SLEEPING_TASK = "sleeping_task"
    PARENT_TASK = "parent_task"
    SEQUENTIAL_TASKS = "sequential_tasks"


def to_seconds(value: Any, what: str, task_id: str, *, allow_zero: bool = True) -> float:
    """A duration given as seconds or ``timedelta``, validated (finite, not negative)."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DurableExecutionError(f"Invalid {what} value for task {task_id}: {value!r}")
    if value > MAX_DURATION:
        raise DurableExecutionError(
            f"Invalid {what} value for task {task_id}: {value!r} (must be at most "
            f"{MAX_DURATION} seconds)"
        )
    if value < 0 or (not allow_zero and value == 0):
        raise DurableExecutionError(
            f"Invalid {what} value for task {task_id}: {value!r} "
            f"(must be {'>= 0' if allow_zero else '> 0'} seconds)"
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class RetryOptions:
    """How often and how soon a failed attempt is retried.

    ``max_retries`` retries follow the first run (the seed's ``maxAttempts``). Retry ``r``
    (1, 2, ...) waits ``min(base_delay * delay_multiplier ** (r - 1), max_delay)`` seconds.
    """

    max_retries: int = 0
    base_delay: float = 0.0
    delay_multiplier: float = 1.0
    max_delay: float | None = None

    def validate(self, task_id: str) -> RetryOptions:
        """Return a normalized copy, or raise ``Invalid retry options for task ...``."""

        def invalid(reason: str) -> DurableExecutionError:
            return DurableExecutionError(f"Invalid retry options for task {task_id}: {reason}")

        max_retries = self.max_retries
        if isinstance(max_retries, bool) or not isinstance(max_retries, int):
            raise invalid(f"max_retries must be an integer, got {max_retries!r}")
        if not 0 <= max_retries <= 1000:
            raise invalid(f"max_retries must be between 0 and 1000, got {max_retries}")
        try:
            base_delay = to_seconds(self.base_delay or 0, "base_delay", task_id)
            max_delay = (
                None if self.max_delay is None else to_seconds(self.max_delay, "max_delay", task_id)
            )
        except DurableExecutionError as error:
            raise invalid(str(error)) from None
        if base_delay > 3600:
            raise invalid(f"base_delay must be at most 3600 seconds, got {base_delay}")
        if max_delay is not None and max_delay > 86400:
            raise invalid(f"max_delay must be at most 86400 seconds, got {max_delay}")
        multiplier = 1.0 if self.delay_multiplier is None else self.delay_multiplier
        if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)):
            raise invalid(f"delay_multiplier must be a number, got {multiplier!r}")
        if not 0.1 <= multiplier <= 10:
            raise invalid(f"delay_multiplier must be between 0.1 and 10, got {multiplier}")
        if max_delay is not None and max_delay < base_delay:
            raise invalid("max_delay must be greater than or equal to base_delay")
        return RetryOptions(max_retries, base_delay, float(multiplier), max_delay)

    def delay(self, retry_attempts: int) -> float:
        """Seconds to wait before the retry that follows attempt ``retry_attempts`` (0-based)."""
        delay = self.base_delay
        if retry_attempts > 0 and delay > 0:
            delay *= self.delay_multiplier**retry_attempts
        if self.max_delay is not None:
            delay = min(delay, self.max_delay)
        return delay

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_retries": self.max_retries,
            "base_delay": self.base_delay,
            "delay_multiplier": self.delay_multiplier,
            "max_delay": self.max_delay,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | None) -> RetryOptions:
        if not value:
            return cls()
        return cls(
            max_retries=int(value.get("max_retries", 0)),
            base_delay=float(value.get("base_delay") or 0.0),
            delay_multiplier=float(value.get("delay_multiplier") or 1.0),
            max_delay=value.get("max_delay"),
        )


def coerce_retry(value: Any, task_id: str) -> RetryOptions:
    """``RetryOptions``, a mapping of its fields, an int (``max_retries``) or ``None``."""
    if value is None:
        return RetryOptions()
    if isinstance(value, RetryOptions):
        return value.validate(task_id)
    if isinstance(value, Mapping):
        try:
            return RetryOptions(**value).validate(task_id)
        except TypeError as error:
            raise DurableExecutionError(
                f"Invalid retry options for task {task_id}: {error}"
            ) from None
    if isinstance(value, int) and not isinstance(value, bool):
        return RetryOptions(max_retries=value).validate(task_id)
    raise DurableExecutionError(f"Invalid retry options for task {task_id}: {value!r}")


def validate_task_id(task_id: Any) -> str:
    if not isinstance(task_id, str) or not task_id:
        raise DurableExecutionError("Task id cannot be empty")
    if len(task_id) > 255:
        raise DurableExecutionError(
            f"Task id cannot be longer than 255 characters [idLength={len(task_id)}]"
        )
    if not _TASK_ID_RE.match(task_id):
        raise DurableExecutionError(
            "Task id can only contain alphanumeric characters, underscores and dots "
            f"[taskId={task_id}]"
        )
    return task_id


def default_task_id(function: Callable[..., Any]) -> str:
    """``module.qualname`` of ``function``, without the ``<locals>`` of nested definitions."""
    qualname = function.__qualname__.replace("<locals>.", "")
    return f"{function.__module__}.{qualname}"


def _positional_arity(function: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 2
    count = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return 2
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            count += 1
    return count


def _describe_validation_error(error: Any) -> str:
    """Readable text of a DRF ``ValidationError`` detail or a pydantic error list."""
    if isinstance(error, Mapping):
        lines = []
        for field, messages in error.items():
            for message in messages if isinstance(messages, list) else [messages]:
                if isinstance(message, Mapping):
                    for line in _describe_validation_error(message).splitlines():
                        lines.append(f"{line}\n  → at {field}" if "→" not in line else line)
                else:
                    lines.append(f"× {message}\n  → at {field}")  # noqa: RUF001
        return "\n".join(lines)
    if isinstance(error, list):
        return "\n".join(_describe_validation_error(item) for item in error)
    return str(error)


def make_validator(
    validate_input: Callable[[Any], Any] | None, input_schema: Any
) -> Callable[[Any], Any] | None:
    """One callable from ``validate_input=`` and ``input_schema=`` (DRF serializer or pydantic)."""
    if validate_input is not None and input_schema is not None:
        raise DurableExecutionError("Give either validate_input= or input_schema=, not both")
    if validate_input is not None:
        if not callable(validate_input):
            raise DurableExecutionError("validate_input must be callable")
        return validate_input
    if input_schema is None:
        return None
    if hasattr(input_schema, "model_validate"):  # a pydantic model

        def validate_with_pydantic(value: Any) -> Any:
            try:
                return input_schema.model_validate(value)
            except Exception as error:
                errors = getattr(error, "errors", None)
                if callable(errors):
                    lines = []
                    for item in errors():
                        path = ".".join(str(part) for part in item.get("loc", ()))
                        lines.append(f"× {item.get('msg')}" + (f"\n  → at {path}" if path else ""))  # noqa: RUF001
                    raise ValueError("\n".join(lines)) from None
                raise

        return validate_with_pydantic
    if inspect.isclass(input_schema) and hasattr(input_schema, "is_valid"):  # a DRF serializer
        schema_class: Any = input_schema

        def validate_with_serializer(value: Any) -> Any:
            serializer = schema_class(data=value)
            if not serializer.is_valid():
                raise ValueError(_describe_validation_error(serializer.errors))
            data = serializer.validated_data
            return dict(data) if isinstance(data, Mapping) else data

        return validate_with_serializer
    raise DurableExecutionError(
        "input_schema must be a Django REST framework Serializer class or a pydantic model, "
        f"got {input_schema!r}"
    )


def is_valid_priority(value: Any) -> bool:
    """Whether ``value`` fits the priority column (a 32-bit integer; higher runs first)."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31


def _concurrency_key_function(
    value: Callable[[Any], Any] | str | None, task_id: str
) -> Callable[[Any], Any] | None:
    """``concurrency_key=`` as a function of the input: a string is the same key for every
    execution."""
    if value is None or callable(value):
        return value
    if isinstance(value, str) and value and len(value) <= 255:
        key = value
        return lambda input: key
    raise DurableExecutionError(
        "concurrency_key must be a function of the input or a non-empty string of at most 255 "
        f"characters [taskId={task_id}]"
    )


def _max_concurrency(value: Any, concurrency_key: Any, task_id: str) -> int | None:
    if value is None:
        if concurrency_key is not None:
            raise DurableExecutionError(
                f"concurrency_key needs max_concurrency (a positive integer) [taskId={task_id}]"
            )
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DurableExecutionError(
            f"max_concurrency must be a positive integer, got {value!r} [taskId={task_id}]"
        )
    if concurrency_key is None:
        raise DurableExecutionError(
            f"max_concurrency needs a concurrency_key (a function of the input or a string) "
            f"[taskId={task_id}]"
        )
    return value


class Task:
    """A registered task definition. Create with :func:`task`, :func:`parent_task`,
    :func:`sleeping_task`, :func:`sequential_tasks` or :func:`looping_task`."""

    def __init__(
        self,
        *,
        id: str,
        kind: TaskKind,
        function: Callable[..., Any] | None = None,
        timeout: Any = DEFAULT_TIMEOUT,
        retry: Any = None,
        sleep_before_run: Any = 0,
        validator: Callable[[Any], Any] | None = None,
        finalize: Callable[..., Any] | Task | None = None,
        steps: Sequence[Task] = (),
        queue: str | None = None,
        priority: int = 0,
        api: bool = False,
        concurrency_key: Callable[[Any], Any] | str | None = None,
        max_concurrency: int | None = None,
        schedule: str | None = None,
        description: str = "",
    ) -> None:
        self.id = validate_task_id(id)
        self.kind = kind
        self.function = function
        self.timeout = to_seconds(timeout, "timeout", self.id, allow_zero=False)
        self.retry = coerce_retry(retry, self.id)
        self.sleep_before_run = to_seconds(sleep_before_run or 0, "sleep before run", self.id)
        self.validator = validator
        if finalize is not None and isinstance(finalize, Task):
            if finalize.kind == TaskKind.SLEEPING_TASK:
                raise DurableExecutionError(
                    f"Finalize task cannot be a sleeping task [taskId={finalize.id}]"
                )
        elif finalize is not None and not callable(finalize):
            raise DurableExecutionError(f"finalize must be a function or a task [taskId={self.id}]")
        self.finalize = finalize
        self.steps = tuple(steps)
        if queue is not None and (not isinstance(queue, str) or not queue or len(queue) > 64):
            raise DurableExecutionError(
                f"queue must be a non-empty string of at most 64 characters [taskId={self.id}]"
            )
        #: Children and finalize executions of a parent run on the parent's queue unless their
        #: own task names one.
        self.queue_is_explicit = queue is not None
        self.queue: str = queue or "default"
        if not is_valid_priority(priority):
            raise DurableExecutionError(
                f"priority must be an integer between -2**31 and 2**31 - 1 [taskId={self.id}]"
            )
        self.priority = priority
        self.api = bool(api)
        self.concurrency_key = _concurrency_key_function(concurrency_key, self.id)
        self.max_concurrency = _max_concurrency(max_concurrency, concurrency_key, self.id)
        self.schedule = schedule
        if schedule is not None:
            from .schedules import validate_cron

            validate_cron(schedule, f"schedule of task {self.id}")
        self.description = description or (inspect.getdoc(function) or "" if function else "")
        self.is_async = function is not None and inspect.iscoroutinefunction(function)
        self._arity = _positional_arity(function) if function is not None else 2
        self._finalize_arity = (
            _positional_arity(finalize)
            if finalize is not None and not isinstance(finalize, Task)
            else 0
        )

    def __repr__(self) -> str:
        return f"<Task {self.id} ({self.kind})>"

    # -- running -------------------------------------------------------------------------

    def call(self, ctx: Any, input: Any) -> Any:
        """Call the task's function with ``(ctx, input)`` (or ``(ctx)`` if it takes one)."""
        assert self.function is not None
        if self._arity >= 2:
            return self.function(ctx, input)
        if self._arity == 1:
            return self.function(ctx)
        return self.function()

    def call_finalize(self, ctx: Any, result: ParentRunResult) -> Any:
        """Call a finalize *function* with ``(ctx, result)`` (or ``(result)``)."""
        assert self.finalize is not None and not isinstance(self.finalize, Task)
        if self._finalize_arity >= 2:
            return self.finalize(ctx, result)
        return self.finalize(result)

    def __call__(self, ctx: Any, input: Any = None) -> Any:
        """Call the function directly (no durability): handy in unit tests."""
        return self.call(ctx, input)

    def validate_input(self, value: Any) -> Any:
        """Apply the task's validator; raise ``Invalid input to task ID: ...`` on failure."""
        if self.validator is None:
            return value
        try:
            return self.validator(value)
        except DurableExecutionError as error:
            if type(error) is DurableExecutionError:
                raise DurableExecutionError(
                    f"Invalid input to task {self.id}: {error.message}"
                ) from error
            raise
        except Exception as error:
            raise DurableExecutionError(f"Invalid input to task {self.id}: {error}") from error

    # -- enqueueing ----------------------------------------------------------------------------

    def enqueue(
        self,
        input: Any = None,
        *,
        timeout: Any = None,
        retry: Any = None,
        sleep_before_run: Any = None,
        queue: str | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
    ) -> TaskHandle:
        """Store a new execution of this task and return its handle.

        Inside ``transaction.atomic()`` the row is written in the caller's transaction (and
        workers are woken on commit). Invalid input or options raise
        :class:`DurableExecutionError` and store nothing.
        """
        from .handles import enqueue

        return enqueue(
            self,
            input,
            timeout=timeout,
            retry=retry,
            sleep_before_run=sleep_before_run,
            queue=queue,
            priority=priority,
            idempotency_key=idempotency_key,
        )

    def enqueue_many(self, inputs: Iterable[Any], **options: Any) -> list[TaskHandle]:
        """Store one execution per input in one statement (all or nothing)."""
        from .handles import enqueue_many

        return enqueue_many(self, inputs, **options)

    async def aenqueue(self, input: Any = None, **options: Any) -> TaskHandle:
        """Async twin of :meth:`enqueue`."""
        from .handles import _to_async

        return await _to_async(self.enqueue)(input, **options)


class TaskRegistry:
    """Task ids -> tasks. Duplicated ids are refused."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()

    def register(self, task: Task) -> Task:
        with self._lock:
            existing = self._tasks.get(task.id)
            if existing is not None and existing is not task:
                raise DurableExecutionError(f"Task with given id already exists [taskId={task.id}]")
            self._tasks[task.id] = task
        return task

    def unregister(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    def __len__(self) -> int:
        return len(self._tasks)

    def has_concurrency_limits(self) -> bool:
        """Whether a registered task has a concurrency key (executors then claim such rows)."""
        return any(task.concurrency_key is not None for task in list(self._tasks.values()))

    @contextmanager
    def isolated(self) -> Iterator[TaskRegistry]:
        """Within the block, tasks registered are forgotten afterwards (tests)."""
        with self._lock:
            saved = dict(self._tasks)
        try:
            yield self
        finally:
            with self._lock:
                self._tasks = saved


#: The process-wide registry every task definition registers in.
registry = TaskRegistry()


def _resolve_task(value: Task | str) -> Task:
    if isinstance(value, Task):
        return value
    found = registry.get(value)
    if found is None:
        from .errors import DurableExecutionNotFoundError

        raise DurableExecutionNotFoundError(f"Task not found [taskId={value}]")
    return found


# -- decorators and builders ------------------------------------------------------------------


def _common_options(options: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {
        "timeout",
        "retry",
        "sleep_before_run",
        "queue",
        "priority",
        "api",
        "concurrency_key",
        "max_concurrency",
        "schedule",
        "description",
    }
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"Unknown task option(s): {', '.join(sorted(unknown))}")
    return dict(options)


@overload
def task(function: Callable[..., Any], /) -> Task: ...


@overload
def task(
    *,
    id: str | None = None,
    validate_input: Callable[[Any], Any] | None = None,
    input_schema: Any = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Task]: ...


def task(
    function: Callable[..., Any] | None = None,
    /,
    *,
    id: str | None = None,
    validate_input: Callable[[Any], Any] | None = None,
    input_schema: Any = None,
    **options: Any,
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Define a task from a function ``(ctx, input) -> output`` (sync or ``async def``).

    Options: ``id`` (default ``module.qualname``), ``timeout`` (seconds per attempt),
    ``retry`` (:class:`RetryOptions`), ``sleep_before_run``, ``validate_input`` /
    ``input_schema``, ``queue``, ``priority``, ``api`` (may be enqueued through the HTTP API),
    ``concurrency_key`` / ``max_concurrency`` and ``schedule`` (cron).
    """
    common = _common_options(options)

    def decorate(function: Callable[..., Any]) -> Task:
        return registry.register(
            Task(
                id=default_task_id(function) if id is None else id,
                kind=TaskKind.TASK,
                function=function,
                validator=make_validator(validate_input, input_schema),
                **common,
            )
        )

    return decorate(function) if function is not None else decorate


def parent_task(
    function: Callable[..., Any] | None = None,
    /,
    *,
    id: str | None = None,
    finalize: Callable[..., Any] | Task | None = None,
    validate_input: Callable[[Any], Any] | None = None,
    input_schema: Any = None,
    **options: Any,
) -> Any:
    """Define a parent task: its function returns :class:`ParentResult` (output + children).

    Children run in parallel; when all finished, ``finalize`` (a function
    ``(ctx, result)``, or a task or parent task receiving ``result`` as input) produces the
    parent's output. Without finalize the output is ``{"output": ..., "children": [...]}``.
    """
    common = _common_options(options)

    def decorate(function: Callable[..., Any]) -> Task:
        return registry.register(
            Task(
                id=default_task_id(function) if id is None else id,
                kind=TaskKind.PARENT_TASK,
                function=function,
                finalize=finalize,
                validator=make_validator(validate_input, input_schema),
                **common,
            )
        )

    return decorate(function) if function is not None else decorate


def sleeping_task(*, id: str, timeout: Any, **options: Any) -> Task:
    """Define a sleeping task: it runs nothing and waits to be woken by
    :func:`~django_durable.wakeup_sleeping_task` (e.g. from a webhook), or times out.

    Its input at enqueue is the unique id string it will be woken by.
    """
    common = _common_options(options)
    common.pop("retry", None)
    common.pop("sleep_before_run", None)
    return registry.register(Task(id=id, kind=TaskKind.SLEEPING_TASK, timeout=timeout, **common))


def sequential_tasks(
    id: str,
    tasks: Sequence[Task],
    *,
    validate_input: Callable[[Any], Any] | None = None,
    input_schema: Any = None,
    **options: Any,
) -> Task:
    """Define a task that runs ``tasks`` one after another, each output the next input.

    Its output is the last task's output; a failing step ends it ``finalize_failed``.
    """
    if not tasks:
        raise DurableExecutionError("No tasks provided")
    steps = [_resolve_task(step) for step in tasks]
    common = _common_options(options)
    common.setdefault("timeout", WRAPPER_TIMEOUT)

    def run(ctx: Any, input: Any) -> ParentResult:
        return ParentResult(
            output=None,
            children=[child(steps[0], input), *(child(step) for step in steps[1:])],
        )

    return registry.register(
        Task(
            id=id,
            kind=TaskKind.SEQUENTIAL_TASKS,
            function=run,
            steps=steps,
            validator=make_validator(validate_input, input_schema),
            **common,
        )
    )


def looping_task(
    id: str,
    iteration_task: Task,
    max_attempts: int,
    sleep_between: Any = None,
    *,
    validate_input: Callable[[Any], Any] | None = None,
    input_schema: Any = None,
    **options: Any,
) -> Task:
    """Define a task that runs ``iteration_task`` until it returns ``{"is_done": True, ...}``.

    Each iteration receives the looping task's input and returns ``{"is_done": False}`` or
    ``{"is_done": True, "output": ...}``. The output is ``{"is_success": True, "output": ...}``
    once an iteration is done, or ``{"is_success": False}`` after ``max_attempts`` iterations.
    ``sleep_between`` (seconds, or a function of the attempt number) delays each iteration.
    A failing iteration ends the loop ``finalize_failed``.
    """
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts <= 0:
        raise DurableExecutionError("Max attempts must be greater than 0")
    iteration = _resolve_task(iteration_task)
    common = _common_options(options)
    common.setdefault("timeout", WRAPPER_TIMEOUT)
    inner_id = f"{id}_inner"
    inner_finalize_id = f"{id}_inner_finalize"

    def iteration_delay(attempt: int) -> float | None:
        if sleep_between is None:
            return None
        if callable(sleep_between):
            return to_seconds(sleep_between(attempt), "sleep before run", iteration.id)
        return to_seconds(sleep_between, "sleep before run", iteration.id)

    def child_failed_message(record: Mapping[str, Any]) -> str:
        error = record.get("error") or {}
        return str(error.get("message") or "Unknown error")

    def outer_run(ctx: Any, input: Any) -> ParentResult:
        return ParentResult(output=None, children=[child(inner, {"input": input, "attempt": 0})])

    def outer_finalize(result: ParentRunResult) -> Any:
        record = result.children[0]
        if record.status != "completed":
            raise DurableExecutionError(child_failed_message(record))
        return record.output

    def inner_run(ctx: Any, input: Any) -> ParentResult:
        return ParentResult(
            output=input,
            children=[
                child(
                    iteration,
                    input["input"],
                    sleep_before_run=iteration_delay(input["attempt"]),
                )
            ],
        )

    def inner_finalize_run(ctx: Any, input: ParentRunResult) -> ParentResult:
        state = input.output
        record = input.children[0]
        if record.status != "completed":
            raise DurableExecutionError(
                f"Iteration task failed [taskId={iteration.id}]: {child_failed_message(record)}"
            )
        value = record.output if isinstance(record.output, Mapping) else {}
        if value.get("is_done"):
            return ParentResult(output={"is_success": True, "output": value.get("output")})
        if state["attempt"] + 1 >= max_attempts:
            return ParentResult(output={"is_success": False})
        return ParentResult(
            output={"is_success": False},
            children=[child(inner, {"input": state["input"], "attempt": state["attempt"] + 1})],
        )

    def inner_finalize_finalize(result: ParentRunResult) -> Any:
        if result.output.get("is_success"):
            return result.output
        if not result.children:
            return {"is_success": False}
        record = result.children[0]
        if record.status != "completed":
            raise DurableExecutionError(child_failed_message(record))
        return record.output

    inner_finalize = registry.register(
        Task(
            id=inner_finalize_id,
            kind=TaskKind.PARENT_TASK,
            function=inner_finalize_run,
            finalize=inner_finalize_finalize,
            timeout=WRAPPER_TIMEOUT,
        )
    )
    inner = registry.register(
        Task(
            id=inner_id,
            kind=TaskKind.PARENT_TASK,
            function=inner_run,
            finalize=inner_finalize,
            timeout=WRAPPER_TIMEOUT,
        )
    )
    return registry.register(
        Task(
            id=id,
            kind=TaskKind.PARENT_TASK,
            function=outer_run,
            finalize=outer_finalize,
            validator=make_validator(validate_input, input_schema),
            **common,
        )
    )


def get_task(task_or_id: Task | str) -> Task:
    """The registered task for a task or id; :class:`DurableExecutionNotFoundError` if none."""
    return _resolve_task(task_or_id)


__all__ += ["ChildSpec", "ParentResult", "child", "get_task"]
