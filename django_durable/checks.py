"""System checks: bad ``DURABLE`` settings (E001), serializer (E002), schedules (E003, W002),
SQLite locking (W001)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS
from django.utils.module_loading import import_string

from .conf import DEFAULTS, durable_settings, validate_settings

__all__ = [
    "check_schedules",
    "check_serializer",
    "check_settings",
    "check_sqlite_transaction_mode",
]

_SQLITE_ENGINES = ("sqlite3", "spatialite")


@register()
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E001: every ``DURABLE`` setting is known and valid."""
    try:
        validate_settings(durable_settings.user_settings, import_strings=False)
    except ImproperlyConfigured as exc:
        return [
            Error(
                f"Invalid DURABLE setting: {exc}",
                hint=(
                    "Fix or remove that key of the DURABLE dict in your settings module; the "
                    "keys and their defaults are listed in django_durable.conf.DEFAULTS."
                ),
                id="django_durable.E001",
            )
        ]
    return []


@register()
def check_serializer(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E002: ``DURABLE["SERIALIZER"]`` imports, and is a class with serialize and deserialize."""
    user_settings = durable_settings.user_settings
    if not isinstance(user_settings, Mapping):
        return []  # reported by E001
    path = user_settings.get("SERIALIZER", DEFAULTS["SERIALIZER"])
    if not isinstance(path, str):
        serializer = path
    else:
        try:
            serializer = import_string(path)
        except ImportError as exc:
            return [
                Error(
                    f"DURABLE['SERIALIZER'] = {path!r} cannot be imported: {exc}",
                    hint=(
                        "Set it to the dotted path of a serializer class, for example "
                        f"{DEFAULTS['SERIALIZER']!r}, and check that its module imports."
                    ),
                    id="django_durable.E002",
                )
            ]
    if isinstance(serializer, type) and all(
        callable(getattr(serializer, name, None)) for name in ("serialize", "deserialize")
    ):
        return []
    if not isinstance(path, str):
        return []  # a non-string that is not a serializer class is reported by E001
    return [
        Error(
            f"DURABLE['SERIALIZER'] = {path!r} is not a serializer class.",
            hint=(
                "A serializer is a class with serialize(value) -> str and "
                "deserialize(str) -> value methods, instantiated without arguments."
            ),
            id="django_durable.E002",
        )
    ]


def sqlite_transaction_mode_warnings(databases: Mapping[str, Any]) -> list[CheckMessage]:
    """W001 for the given ``DATABASES``: a SQLite default database needs IMMEDIATE transactions."""
    database = databases.get(DEFAULT_DB_ALIAS) or {}
    engine = str(database.get("ENGINE", ""))
    if not engine.endswith(_SQLITE_ENGINES):
        return []
    mode = (database.get("OPTIONS") or {}).get("transaction_mode")
    if isinstance(mode, str) and mode.upper() == "IMMEDIATE":
        return []
    return [
        Warning(
            "The default database is SQLite without OPTIONS['transaction_mode'] = 'IMMEDIATE'.",
            hint=(
                'Add "OPTIONS": {"transaction_mode": "IMMEDIATE"} to DATABASES[\'default\']. '
                "SQLite's default deferred transactions take the write lock only at their first "
                "write and then fail at once with 'database is locked' when a durable worker "
                "and a web process write together; IMMEDIATE transactions wait for the lock "
                "(up to OPTIONS['timeout']) instead."
            ),
            id="django_durable.W001",
        )
    ]


@register()
def check_sqlite_transaction_mode(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W001: a SQLite default database should use ``transaction_mode = "IMMEDIATE"``."""
    return sqlite_transaction_mode_warnings(settings.DATABASES)


@register()
def check_schedules(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E003: every schedule is valid; W002: every scheduled task is registered."""
    from .schedules import ScheduleError, all_schedules
    from .tasks import registry

    try:
        schedules = all_schedules()
    except ScheduleError as exc:
        return [
            Error(
                str(exc),
                hint='Fix that entry of DURABLE["SCHEDULES"] (see docs/schedules.md).',
                id="django_durable.E003",
            )
        ]
    except ImproperlyConfigured:
        return []  # another invalid setting: E001 reports it
    return [
        Warning(
            f"Schedule {schedule.name!r} enqueues task {schedule.task_id!r}, which is not "
            "registered: its ticks are skipped.",
            hint="Check the task id, and that its tasks.py module is in an installed app.",
            id="django_durable.W002",
        )
        for schedule in schedules
        if schedule.task_id not in registry
    ]
