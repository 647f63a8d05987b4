"""Tests of the database helpers: backend detection and SQLite connection tuning."""

from __future__ import annotations

import pytest
from django.db import connection

from django_durable.db import is_postgresql, is_sqlite


def test_backend_detection_matches_the_vendor() -> None:
    assert is_sqlite() == (connection.vendor == "sqlite")
    assert is_postgresql() == (connection.vendor == "postgresql")
    assert is_sqlite("default") == is_sqlite(connection)
    assert is_sqlite() != is_postgresql()


@pytest.mark.django_db
def test_sqlite_connections_use_wal_normal_sync_and_busy_timeout() -> None:
    if not is_sqlite():
        pytest.skip("SQLite only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0].lower() == "wal"
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 1  # NORMAL
        cursor.execute("PRAGMA busy_timeout")
        timeout = connection.settings_dict["OPTIONS"].get("timeout", 30)
        assert cursor.fetchone()[0] == round(timeout * 1000)


@pytest.mark.django_db
def test_in_memory_sqlite_keeps_its_journal_mode() -> None:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.sqlite3.base import DatabaseWrapper

    wrapper = DatabaseWrapper(
        {**connection.settings_dict, "NAME": ":memory:", "OPTIONS": {"timeout": 2}},
        alias="durable_memory",
    )
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0].lower() == "memory"
            cursor.execute("PRAGMA busy_timeout")
            assert cursor.fetchone()[0] == 2000
    finally:
        # SQLite's wrapper ignores close() for in-memory databases: close the base way.
        BaseDatabaseWrapper.close(wrapper)
