"""Value types handed to and returned by task code: references, child specs and results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import StoredError

if TYPE_CHECKING:
    from .tasks import Task


class AttrDict(dict[str, Any]):
    """A dict whose keys are also attributes (``result.output`` and ``result["output"]``)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name.startswith("__"):
                raise AttributeError(name) from None
            return None


class ChildResult(AttrDict):
    """The finished record of one child: ``task_id, execution_id, status`` and
    ``output`` (completed) or ``error`` (otherwise)."""

    __slots__ = ()

    @property
    def is_completed(self) -> bool:
        return self.get("status") == "completed"


class ParentRunResult(AttrDict):
    """What a finalize function or task receives: ``output`` (the parent run's output) and
    ``children`` (one :class:`ChildResult` per child, in order, failed ones too)."""

    __slots__ = ()

    @classmethod
    def from_value(cls, value: Any) -> ParentRunResult:
        """Wrap the stored finalize input (plain dicts) for attribute access."""
        if not isinstance(value, Mapping):
            return cls(output=value, children=[])
        children = []
        for record in value.get("children") or ():
            record = ChildResult(record)
            if isinstance(record.get("error"), Mapping):
                record["error"] = StoredError.from_dict(record["error"])
            children.append(record)
        return cls(output=value.get("output"), children=children)


@dataclass(frozen=True, slots=True)
class ExecutionRef:
    """A reference to an execution: its task id and execution id."""

    task_id: str
    execution_id: str


@dataclass(frozen=True, slots=True)
class ParentRef:
    """The parent of an execution and the execution's place among its children."""

    task_id: str
    execution_id: str
    index_in_parent_children: int = 0
    is_only_child_of_parent: bool = False
    is_finalize_of_parent: bool = False


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """A child to spawn from a parent task: built with :func:`child`."""

    task: Task
    input: Any = None
    timeout: float | None = None
    retry: Any = None
    sleep_before_run: float | None = None


def child(
    task: Task,
    input: Any = None,
    *,
    timeout: Any = None,
    retry: Any = None,
    sleep_before_run: Any = None,
) -> ChildSpec:
    """A child of a parent task: ``task`` run with ``input``, optionally with overrides.

    For a sleeping task, ``input`` is the unique id the child will be woken by.
    """
    return ChildSpec(task, input, timeout, retry, sleep_before_run)


@dataclass(slots=True)
class ParentResult:
    """What a parent task returns: its own ``output`` and the ``children`` to run in parallel."""

    output: Any = None
    children: Sequence[ChildSpec] = field(default_factory=list)
