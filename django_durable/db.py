"""Database helpers: which backend a connection is, and SQLite tuning for workers beside web."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

__all__ = ["DEFAULT_SQLITE_BUSY_TIMEOUT", "connect_signals", "is_postgresql", "is_sqlite"]

logger = logging.getLogger(__name__)

#: Seconds a SQLite connection waits for a lock when its ``OPTIONS`` set no ``timeout``.
DEFAULT_SQLITE_BUSY_TIMEOUT = 30.0


def _wrapper(connection: BaseDatabaseWrapper | str | None) -> BaseDatabaseWrapper:
    if connection is None:
        return connections[DEFAULT_DB_ALIAS]
    if isinstance(connection, str):
        return connections[connection]
    return connection


def is_postgresql(connection: BaseDatabaseWrapper | str | None = None) -> bool:
    """Whether ``connection`` (a wrapper or an alias; default: the default one) is PostgreSQL."""
    return _wrapper(connection).vendor == "postgresql"


def is_sqlite(connection: BaseDatabaseWrapper | str | None = None) -> bool:
    """Whether ``connection`` (a wrapper or an alias; default: the default one) is SQLite."""
    return _wrapper(connection).vendor == "sqlite"


def configure_sqlite_connection(
    *, sender: Any = None, connection: BaseDatabaseWrapper, **kwargs: Any
) -> None:
    """``connection_created`` receiver: WAL, ``synchronous=NORMAL`` and a busy timeout on SQLite.

    WAL lets web processes read while a worker writes; the busy timeout makes a writer wait for
    the lock instead of failing with "database is locked".
    """
    if connection.vendor != "sqlite":
        return
    timeout = connection.settings_dict.get("OPTIONS", {}).get("timeout")
    busy_timeout_ms = round(
        1000 * (DEFAULT_SQLITE_BUSY_TIMEOUT if timeout is None else float(timeout))
    )
    raw = connection.connection
    raw.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
    # journal_mode is stored in the database file: switch only once, as switching needs a lock.
    # In-memory databases cannot use WAL.
    if not connection.is_in_memory_db():  # type: ignore[attr-defined]
        (mode,) = raw.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() != "wal":
            raw.execute("PRAGMA journal_mode = WAL")
    raw.execute("PRAGMA synchronous = NORMAL")


def connect_signals() -> None:
    """Connect :func:`configure_sqlite_connection` to ``connection_created``."""
    connection_created.connect(
        configure_sqlite_connection, dispatch_uid="django_durable.db.configure_sqlite"
    )
