"""``DurableExecutionError`` and its subclasses, and ``StoredError``, the stored form of errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final, Self

__all__ = [
    "ERROR_TYPES",
    "DurableExecutionCancelledError",
    "DurableExecutionError",
    "DurableExecutionNotFoundError",
    "DurableExecutionTimedOutError",
    "StoredError",
    "convert_error",
]


class DurableExecutionError(Exception):
    """An error of a durable execution that says whether running it again may help.

    ``is_retryable`` lets the executor retry the execution (within its retry options);
    ``is_internal`` marks an error of the engine itself rather than of the task's code.
    """

    #: The ``error_type`` of the stored form; each subclass that callers tell apart has its own.
    error_type: ClassVar[str] = "generic"

    message: str
    is_retryable: bool
    is_internal: bool

    def __init__(
        self,
        message: str = "",
        *,
        is_retryable: bool = False,
        is_internal: bool = False,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.is_retryable = is_retryable
        self.is_internal = is_internal
        if cause is not None:
            self.__cause__ = cause

    @property
    def cause(self) -> BaseException | None:
        """The exception this one was converted from (the same as ``__cause__``)."""
        return self.__cause__

    @cause.setter
    def cause(self, value: BaseException | None) -> None:
        self.__cause__ = value

    @classmethod
    def retryable(
        cls, message: str, *, is_internal: bool = False, cause: BaseException | None = None
    ) -> Self:
        """An error after which the execution may be retried."""
        return cls(message, is_retryable=True, is_internal=is_internal, cause=cause)

    @classmethod
    def non_retryable(
        cls, message: str, *, is_internal: bool = False, cause: BaseException | None = None
    ) -> Self:
        """An error that fails the execution for good, whatever its retry options."""
        return cls(message, is_retryable=False, is_internal=is_internal, cause=cause)

    def to_dict(self) -> StoredError:
        """The stored form: ``{"error_type", "message", "is_retryable", "is_internal"}``."""
        return StoredError.from_exception(self)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, is_retryable={self.is_retryable!r}, "
            f"is_internal={self.is_internal!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (e.g. by Celery) without the cause, which may not be picklable.
        return (_restore_error, (type(self), self.message), dict(self.__dict__))


class DurableExecutionNotFoundError(DurableExecutionError, LookupError):
    """The execution (or sleeping task) that was asked for does not exist; never retryable."""

    error_type: ClassVar[str] = "not_found"

    def __init__(
        self,
        message: str = "Task execution not found",
        *,
        is_internal: bool = False,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, is_retryable=False, is_internal=is_internal, cause=cause)


class DurableExecutionTimedOutError(DurableExecutionError, TimeoutError):
    """The execution ran past its timeout; retryable."""

    error_type: ClassVar[str] = "timed_out"

    def __init__(
        self,
        message: str = "Task execution timed out",
        *,
        is_internal: bool = False,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, is_retryable=True, is_internal=is_internal, cause=cause)


class DurableExecutionCancelledError(DurableExecutionError):
    """The execution was cancelled; never retryable."""

    error_type: ClassVar[str] = "cancelled"

    def __init__(
        self,
        message: str = "Task execution cancelled",
        *,
        is_internal: bool = False,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, is_retryable=False, is_internal=is_internal, cause=cause)


#: The class of each stored ``error_type``.
ERROR_TYPES: Final[Mapping[str, type[DurableExecutionError]]] = {
    cls.error_type: cls
    for cls in (
        DurableExecutionError,
        DurableExecutionNotFoundError,
        DurableExecutionTimedOutError,
        DurableExecutionCancelledError,
    )
}


def _restore_error(
    cls: type[DurableExecutionError], message: str, state: Mapping[str, Any] | None = None
) -> DurableExecutionError:
    """Build an instance of ``cls`` without calling its ``__init__`` (subclasses differ)."""
    exc = cls.__new__(cls)
    exc.args = (message,)
    exc.message = message
    exc.is_retryable = False
    exc.is_internal = False
    if state:
        exc.__dict__.update(state)
    return exc


class StoredError(dict[str, Any]):
    """The stored form of an error: a plain dict of four keys that also offers attribute access.

    ``StoredError(...) == {"error_type": ..., "message": ..., "is_retryable": ...,
    "is_internal": ...}`` and ``json.dumps`` writes it as that dict.
    """

    def __init__(
        self,
        *,
        error_type: str = DurableExecutionError.error_type,
        message: str = "",
        is_retryable: bool = False,
        is_internal: bool = False,
    ) -> None:
        super().__init__(
            error_type=error_type,
            message=message,
            is_retryable=is_retryable,
            is_internal=is_internal,
        )

    @classmethod
    def from_exception(cls, exc: BaseException) -> StoredError:
        """The stored form of ``exc`` (converted with :func:`convert_error` when it is not ours)."""
        error = convert_error(exc)
        return cls(
            error_type=error.error_type,
            # PostgreSQL's jsonb cannot hold NUL characters.
            message=error.message.replace("\x00", "\ufffd"),
            is_retryable=error.is_retryable,
            is_internal=error.is_internal,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredError:
        """A ``StoredError`` from a stored dict: missing keys take defaults, extra keys go."""
        return cls(
            error_type=str(data.get("error_type") or DurableExecutionError.error_type),
            message=str(data.get("message") or ""),
            is_retryable=bool(data.get("is_retryable", False)),
            is_internal=bool(data.get("is_internal", False)),
        )

    @property
    def error_type(self) -> str:
        """``"generic"``, ``"not_found"``, ``"timed_out"`` or ``"cancelled"``."""
        return str(self["error_type"])

    @property
    def message(self) -> str:
        """The error message."""
        return str(self["message"])

    @property
    def is_retryable(self) -> bool:
        """Whether the execution could be retried after this error."""
        return bool(self["is_retryable"])

    @property
    def is_internal(self) -> bool:
        """Whether this is an error of the engine rather than of the task's code."""
        return bool(self["is_internal"])

    def to_exception(self) -> DurableExecutionError:
        """The exception this stands for, of the subclass named by ``error_type``."""
        cls = ERROR_TYPES.get(self.error_type, DurableExecutionError)
        return _restore_error(
            cls,
            self.message,
            {
                "message": self.message,
                "is_retryable": self.is_retryable,
                "is_internal": self.is_internal,
            },
        )

    def __repr__(self) -> str:
        return f"StoredError({dict.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_stored_error, (dict(self),))


def _restore_stored_error(data: Mapping[str, Any]) -> StoredError:
    return StoredError.from_dict(data)


def convert_error(
    exc: BaseException,
    *,
    prefix: str | None = None,
    is_retryable: bool | None = None,
    is_internal: bool | None = None,
) -> DurableExecutionError:
    """Convert any exception to a ``DurableExecutionError`` (seed-spec §17).

    A ``DurableExecutionError`` keeps its subclass and flags (returned as is when nothing
    changes); ``prefix`` is prepended as ``"prefix: message"``; ``is_retryable`` and
    ``is_internal`` override the flags of generic errors only. Any other exception becomes a
    generic error with its message (or its class name when the message is empty), retryable
    unless overridden, with the exception as its cause. An exception group becomes a
    non-retryable ``"Multiple errors:\\n<a>\\n<b>"``.
    """
    if isinstance(exc, DurableExecutionError):
        message = f"{prefix}: {exc.message}" if prefix else exc.message
        retryable, internal = exc.is_retryable, exc.is_internal
        if exc.error_type == DurableExecutionError.error_type:
            retryable = retryable if is_retryable is None else is_retryable
            internal = internal if is_internal is None else is_internal
        if (message, retryable, internal) == (exc.message, exc.is_retryable, exc.is_internal):
            return exc
        converted = _restore_error(
            type(exc),
            message,
            {
                **exc.__dict__,
                "message": message,
                "is_retryable": retryable,
                "is_internal": internal,
            },
        )
        converted.__cause__ = exc.__cause__
        converted.__context__ = exc.__context__
        converted.__suppress_context__ = exc.__suppress_context__
        return converted.with_traceback(exc.__traceback__)

    if isinstance(exc, BaseExceptionGroup):
        message = "Multiple errors:\n" + "\n".join(
            convert_error(inner).message for inner in exc.exceptions
        )
        default_retryable = False
    else:
        message = str(exc) or type(exc).__name__
        default_retryable = True
    if prefix:
        message = f"{prefix}: {message}"
    return DurableExecutionError(
        message,
        is_retryable=default_retryable if is_retryable is None else is_retryable,
        is_internal=False if is_internal is None else is_internal,
        cause=exc,
    )
