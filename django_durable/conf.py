"""The ``DURABLE`` settings: their defaults, their validation and the ``durable_settings`` object.

Projects configure the app with one dict in their settings module::

    DURABLE = {
        "POLL_INTERVAL": 0.2,
        "RETENTION": timedelta(days=30),
    }

Code reads a setting at call time as ``durable_settings.POLL_INTERVAL`` (validated, times in
float seconds); an ``Executor(...)`` takes the same names in lower case as overrides, resolved
with :func:`resolve` into an immutable :class:`DurableSettingsSnapshot`.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from .serialization import Serializer

__all__ = [
    "DEFAULTS",
    "IMPORT_STRINGS",
    "DurableSettings",
    "DurableSettingsSnapshot",
    "InvalidDurableSettingError",
    "UnknownDurableSettingError",
    "connect_signals",
    "durable_settings",
    "import_setting",
    "register_reload_hook",
    "reload_durable_settings",
    "resolve",
    "validate_settings",
]

# Times are seconds (int or float) or ``datetime.timedelta``; they are read back as float seconds.
DEFAULTS: dict[str, Any] = {
    # Added to a running execution's timeout before it counts as crashed and is retried.
    "EXPIRE_LEEWAY": 300,
    # How often an idle executor looks for ready work (LISTEN/NOTIFY makes it sooner); <= 60 s.
    "POLL_INTERVAL": 0.5,
    # Attempts that one executor runs at the same time.
    "MAX_CONCURRENT_EXECUTIONS": 1000,
    # Ready executions claimed by one claim (1..1000).
    "MAX_EXECUTIONS_PER_BATCH": 100,
    # Children that one parent task may return.
    "MAX_CHILDREN_PER_EXECUTION": 1000,
    # Largest serialized input / output, in UTF-8 bytes (1 KiB..100 MiB).
    "MAX_INPUT_SIZE": 1_048_576,
    "MAX_OUTPUT_SIZE": 1_048_576,
    # Dotted path to a class with ``serialize(value) -> str`` and ``deserialize(str) -> value``.
    "SERIALIZER": "django_durable.serialization.JSONSerializer",
    # Coalesce concurrent storage calls from executor threads into one statement.
    "STORAGE_BATCHING": True,
    # How long the batcher gathers calls (0..0.1 s); 0 flushes once the previous batch committed.
    "STORAGE_BATCHING_INTERVAL": 0.0,
    # Retries of a storage call that failed with a database error (0..10).
    "STORAGE_MAX_RETRIES": 1,
    # Count storage calls and their durations, for stats and metrics.
    "STORAGE_STATS": True,
    # Rows that one pass of a sweeper handles (1..1000).
    "SWEEP_BATCH_SIZE": 100,
    # Lease on a parent while its finished children are processed or it is closed (+ EXPIRE_LEEWAY).
    "LEASE_DURATION": 120,
    # How long a stopping worker waits for its running executions.
    "SHUTDOWN_TIMEOUT": 15,
    # Closed executions older than this are purged by the sweeper; None keeps them.
    "RETENTION": None,
    # Worker heartbeat period; a worker silent for 3 periods is taken as dead.
    "HEARTBEAT_INTERVAL": 5,
    # Wake workers across processes: LISTEN/NOTIFY on PostgreSQL, PRAGMA data_version on
    # SQLite (polling stays as the fallback).
    "LISTEN_NOTIFY": True,
    # Who runs claimed executions: "worker" (manage.py durable_worker) or "celery".
    "DISPATCH": "worker",
    # With DISPATCH "celery": a due ready execution waiting longer than this is published again.
    "CELERY_REDISPATCH_AFTER": 60,
    # Periodic enqueues: {name: {schedule options}}.
    "SCHEDULES": {},
    # DRF permission classes (dotted paths) that guard the HTTP API.
    "API_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    # Lifetime of a signed wake-up token (7 days).
    "WAKEUP_TOKEN_MAX_AGE": 7 * 24 * 60 * 60,
    # Level set on the "django_durable" logger ("DEBUG", "INFO", ...); None leaves it alone.
    "LOG_LEVEL": None,
}

#: Settings given as dotted paths, imported when they are first read.
IMPORT_STRINGS: frozenset[str] = frozenset({"SERIALIZER", "API_PERMISSION_CLASSES"})


class InvalidDurableSettingError(ImproperlyConfigured, ValueError):
    """A ``DURABLE`` setting (or an executor override) has a value it cannot take."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class UnknownDurableSettingError(ImproperlyConfigured, TypeError):
    """``DURABLE`` (or the overrides given to an executor) names a setting that does not exist."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class _Invalid(ValueError):
    """Raised by a validator with the description of what it expects."""


Validator = Callable[[Any, bool], Any]


def _number(value: float) -> str:
    return f"{value:_}" if isinstance(value, int) else f"{value:g}"


def _describe_range(low: float | None, high: float | None, *, low_inclusive: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_inclusive else '>'} {_number(low)}")
    if high is not None:
        parts.append(f"<= {_number(high)}")
    return " and ".join(parts)


def _seconds(
    low: float | None = 0.0,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    allow_none: bool = False,
) -> Validator:
    bounds = _describe_range(low, high, low_inclusive=low_inclusive)
    expected = "a number of seconds (int, float or datetime.timedelta)"
    if bounds:
        expected += f" {bounds}"
    if allow_none:
        expected = f"None or {expected}"

    def validate(value: Any, import_strings: bool) -> float | None:
        if value is None and allow_none:
            return None
        if isinstance(value, datetime.timedelta):
            seconds = value.total_seconds()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            raise _Invalid(expected)
        if not math.isfinite(seconds):
            raise _Invalid(expected)
        if low is not None and (seconds < low or (seconds == low and not low_inclusive)):
            raise _Invalid(expected)
        if high is not None and seconds > high:
            raise _Invalid(expected)
        return seconds

    return validate


def _integer(low: int, high: int | None = None) -> Validator:
    expected = "an int " + _describe_range(low, high, low_inclusive=True)

    def validate(value: Any, import_strings: bool) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _Invalid(expected)
        if value < low or (high is not None and value > high):
            raise _Invalid(expected)
        return int(value)

    return validate


def _boolean(value: Any, import_strings: bool) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("True or False")
    return value


def _choice(*choices: str) -> Validator:
    expected = "one of " + ", ".join(repr(choice) for choice in choices)

    def validate(value: Any, import_strings: bool) -> str:
        if value not in choices or not isinstance(value, str):
            raise _Invalid(expected)
        return str(value)

    return validate


def _serializer(value: Any, import_strings: bool) -> Any:
    expected = (
        "a dotted path (or a class) to a serializer class with serialize(value) -> str "
        "and deserialize(str) -> value"
    )
    if isinstance(value, str):
        if not value or not import_strings:
            if not value:
                raise _Invalid(expected)
            return value
        try:
            value = import_string(value)
        except ImportError as exc:
            raise _Invalid(f"{expected}; it cannot be imported ({exc})")
    if not isinstance(value, type) or not all(
        callable(getattr(value, name, None)) for name in ("serialize", "deserialize")
    ):
        raise _Invalid(expected)
    return value


def _dotted_paths(value: Any, import_strings: bool) -> tuple[Any, ...]:
    expected = "a list of dotted paths (or classes)"
    if not isinstance(value, list | tuple):
        raise _Invalid(expected)
    for item in value:
        if not (isinstance(item, str) and item) and not isinstance(item, type):
            raise _Invalid(expected)
    return tuple(value)


def _schedules(value: Any, import_strings: bool) -> dict[str, dict[str, Any]]:
    expected = "a dict of schedule name (str) -> dict of schedule options"
    if not isinstance(value, Mapping):
        raise _Invalid(expected)
    for name, options in value.items():
        if not isinstance(name, str) or not name or not isinstance(options, Mapping):
            raise _Invalid(expected)
    return {name: dict(options) for name, options in value.items()}


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: Any, import_strings: bool) -> str | int | None:
    expected = "None, an int level or one of " + ", ".join(repr(name) for name in _LOG_LEVELS)
    if value is None:
        return None
    if isinstance(value, str) and value.upper() in _LOG_LEVELS:
        return value.upper()
    if isinstance(value, int) and not isinstance(value, bool) and value >= logging.NOTSET:
        return value
    raise _Invalid(expected)


VALIDATORS: dict[str, Validator] = {
    "EXPIRE_LEEWAY": _seconds(0.0),
    "POLL_INTERVAL": _seconds(0.0, 60.0, low_inclusive=False),
    "MAX_CONCURRENT_EXECUTIONS": _integer(1),
    "MAX_EXECUTIONS_PER_BATCH": _integer(1, 1000),
    "MAX_CHILDREN_PER_EXECUTION": _integer(1),
    "MAX_INPUT_SIZE": _integer(1024, 104_857_600),
    "MAX_OUTPUT_SIZE": _integer(1024, 104_857_600),
    "SERIALIZER": _serializer,
    "STORAGE_BATCHING": _boolean,
    "STORAGE_BATCHING_INTERVAL": _seconds(0.0, 0.1),
    "STORAGE_MAX_RETRIES": _integer(0, 10),
    "STORAGE_STATS": _boolean,
    "SWEEP_BATCH_SIZE": _integer(1, 1000),
    "LEASE_DURATION": _seconds(0.0, low_inclusive=False),
    "SHUTDOWN_TIMEOUT": _seconds(0.0),
    "RETENTION": _seconds(0.0, low_inclusive=False, allow_none=True),
    "HEARTBEAT_INTERVAL": _seconds(0.0, low_inclusive=False),
    "LISTEN_NOTIFY": _boolean,
    "DISPATCH": _choice("worker", "celery"),
    "CELERY_REDISPATCH_AFTER": _seconds(0.0, low_inclusive=False),
    "SCHEDULES": _schedules,
    "API_PERMISSION_CLASSES": _dotted_paths,
    "WAKEUP_TOKEN_MAX_AGE": _seconds(0.0, low_inclusive=False),
    "LOG_LEVEL": _log_level,
}


def _setting_label(key: str) -> str:
    return f"DURABLE[{key!r}]"


def _option_label(key: str) -> str:
    return f"option {key.lower()!r}"


def _validate_one(key: str, value: Any, *, label: str, import_strings: bool) -> Any:
    try:
        return VALIDATORS[key](value, import_strings)
    except _Invalid as exc:
        raise InvalidDurableSettingError(
            f"{label} = {value!r} is invalid: expected {exc}.", key=key
        ) from None


def _unknown(key: str, valid: list[str], *, what: str) -> UnknownDurableSettingError:
    matches = difflib.get_close_matches(key.upper(), [name.upper() for name in valid], n=1)
    message = f"Unknown {what} {key!r}."
    if matches:
        suggestion = next(name for name in valid if name.upper() == matches[0])
        message += f" Did you mean {suggestion!r}?"
    message += " Valid names: " + ", ".join(valid) + "."
    return UnknownDurableSettingError(message, key=key)


def validate_settings(
    user_settings: Mapping[str, Any], *, import_strings: bool = True
) -> dict[str, Any]:
    """Validate a ``DURABLE`` dict and return every setting, defaults included, normalized.

    Times become float seconds, lists become tuples, and with ``import_strings`` the serializer
    path is imported (the API permission classes never are: DRF is optional). Raises
    :class:`InvalidDurableSettingError` or :class:`UnknownDurableSettingError`, both
    ``ImproperlyConfigured``, naming the key.
    """
    if not isinstance(user_settings, Mapping):
        raise InvalidDurableSettingError(
            f"DURABLE = {user_settings!r} is invalid: expected a dict of settings.", key="DURABLE"
        )
    for key in user_settings:
        if key not in DEFAULTS:
            raise _unknown(str(key), list(DEFAULTS), what="DURABLE setting")
    return {
        key: _validate_one(
            key,
            user_settings.get(key, default),
            label=_setting_label(key),
            import_strings=import_strings,
        )
        for key, default in DEFAULTS.items()
    }


def import_setting(key: str, value: Any) -> Any:
    """Import a dotted-path setting (or each of a list of them), naming ``key`` if that fails."""
    if isinstance(value, list | tuple):
        return [import_setting(key, item) for item in value]
    if not isinstance(value, str):
        return value
    try:
        return import_string(value)
    except ImportError as exc:
        raise InvalidDurableSettingError(
            f"{_setting_label(key)}: could not import {value!r}: {exc}.", key=key
        ) from exc


_reload_hooks: list[Callable[[], None]] = []


def register_reload_hook(hook: Callable[[], None]) -> None:
    """Call ``hook()`` whenever the settings are reloaded, to drop caches built from them."""
    if hook not in _reload_hooks:
        _reload_hooks.append(hook)


class DurableSettings:
    """The ``DURABLE`` settings, read lazily from Django's settings, validated and cached.

    ``durable_settings.POLL_INTERVAL`` returns the validated value (times as float seconds);
    dotted-path settings return the imported objects. The cache is dropped when the ``DURABLE``
    setting changes (``override_settings`` in tests).
    """

    EXPIRE_LEEWAY: float
    POLL_INTERVAL: float
    MAX_CONCURRENT_EXECUTIONS: int
    MAX_EXECUTIONS_PER_BATCH: int
    MAX_CHILDREN_PER_EXECUTION: int
    MAX_INPUT_SIZE: int
    MAX_OUTPUT_SIZE: int
    SERIALIZER: type[Serializer]
    STORAGE_BATCHING: bool
    STORAGE_BATCHING_INTERVAL: float
    STORAGE_MAX_RETRIES: int
    STORAGE_STATS: bool
    SWEEP_BATCH_SIZE: int
    LEASE_DURATION: float
    SHUTDOWN_TIMEOUT: float
    RETENTION: float | None
    HEARTBEAT_INTERVAL: float
    LISTEN_NOTIFY: bool
    DISPATCH: str
    CELERY_REDISPATCH_AFTER: float
    SCHEDULES: dict[str, dict[str, Any]]
    API_PERMISSION_CLASSES: list[type]
    WAKEUP_TOKEN_MAX_AGE: float
    LOG_LEVEL: str | int | None

    def __init__(self, user_settings: Mapping[str, Any] | None = None) -> None:
        self._explicit_user_settings = user_settings
        self._values: dict[str, Any] | None = None
        self._cached_attrs: set[str] = set()

    @property
    def user_settings(self) -> Mapping[str, Any]:
        """The raw ``DURABLE`` dict (``{}`` when the project sets none)."""
        if self._explicit_user_settings is not None:
            return self._explicit_user_settings
        user_settings = getattr(settings, "DURABLE", None)
        return {} if user_settings is None else user_settings

    def validated(self) -> dict[str, Any]:
        """Every setting, validated and normalized; dotted paths not imported yet."""
        if self._values is None:
            self._values = validate_settings(self.user_settings, import_strings=False)
        return self._values

    def __getattr__(self, attr: str) -> Any:
        if attr not in DEFAULTS:
            raise AttributeError(f"Invalid DURABLE setting: {attr!r}")
        value = self.validated()[attr]
        if attr == "SERIALIZER":
            value = _validate_one(attr, value, label=_setting_label(attr), import_strings=True)
        elif attr in IMPORT_STRINGS:
            value = import_setting(attr, value)
        self._cached_attrs.add(attr)
        setattr(self, attr, value)
        return value

    def reload(self) -> None:
        """Drop every cached value (and the caches registered with ``register_reload_hook``)."""
        for attr in self._cached_attrs:
            delattr(self, attr)
        self._cached_attrs.clear()
        self._values = None
        for hook in list(_reload_hooks):
            hook()


#: The settings object that the whole app reads.
durable_settings = DurableSettings()


@dataclasses.dataclass(frozen=True)
class DurableSettingsSnapshot:
    """An immutable, validated copy of the settings with an executor's overrides applied.

    Attribute names are the setting names in lower case; times are float seconds;
    ``serializer`` is the imported class; ``api_permission_classes`` stays as given (dotted
    paths are imported by the API, which needs DRF).
    """

    expire_leeway: float
    poll_interval: float
    max_concurrent_executions: int
    max_executions_per_batch: int
    max_children_per_execution: int
    max_input_size: int
    max_output_size: int
    serializer: type[Serializer]
    storage_batching: bool
    storage_batching_interval: float
    storage_max_retries: int
    storage_stats: bool
    sweep_batch_size: int
    lease_duration: float
    shutdown_timeout: float
    retention: float | None
    heartbeat_interval: float
    listen_notify: bool
    dispatch: str
    celery_redispatch_after: float
    schedules: Mapping[str, Mapping[str, Any]]
    api_permission_classes: tuple[str | type, ...]
    wakeup_token_max_age: float
    log_level: str | int | None


def resolve(overrides: Mapping[str, Any] | None = None) -> DurableSettingsSnapshot:
    """The settings with ``overrides`` (lower-case names, e.g. ``poll_interval=0.05``) applied.

    ``None`` is taken literally (``retention=None`` turns purging off), so pass only the
    overrides that were given. Raises ``ImproperlyConfigured`` naming the key for an unknown
    name or an invalid value.
    """
    values = dict(durable_settings.validated())
    lower_names = [key.lower() for key in DEFAULTS]
    for name, value in (overrides or {}).items():
        key = str(name).upper()
        if name != key.lower() or key not in DEFAULTS:
            raise _unknown(str(name), lower_names, what="option")
        values[key] = _validate_one(key, value, label=_option_label(key), import_strings=True)
    if isinstance(values["SERIALIZER"], str):
        values["SERIALIZER"] = _validate_one(
            "SERIALIZER",
            values["SERIALIZER"],
            label=_setting_label("SERIALIZER"),
            import_strings=True,
        )
    return DurableSettingsSnapshot(**{key.lower(): value for key, value in values.items()})


def reload_durable_settings(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: drop the cached settings when ``DURABLE`` changes."""
    if setting == "DURABLE":
        durable_settings.reload()


def connect_signals() -> None:
    """Connect the receivers that keep ``durable_settings`` in step with Django's settings."""
    setting_changed.connect(reload_durable_settings, dispatch_uid="django_durable.conf.reload")
