"""The engine's cursor reads timestamps exactly as Django's cursors do, only faster."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only"),
    pytest.mark.django_db,
]

VALUES = [
    "2026-12-07 08:01:02.123456+00",
    "2026-12-07 08:01:02+00",
    "2026-12-07 10:01:02.5+05:30",
    "1890-01-01 00:00:00+00",
    "0044-03-15 10:00:00+00 BC",
]


def _load(cursor, value):
    cursor.execute("SELECT %s::timestamptz", [value])
    return cursor.fetchall()[0][0]


def test_timestamps_load_like_djangos_loader():
    from django_durable.storage.pg_cursor import engine_cursor

    connection.ensure_connection()
    engine = engine_cursor(connection)
    assert engine_cursor(connection) is engine  # one per connection
    with connection.cursor() as django_cursor:
        for value in VALUES[:-1]:
            ours, theirs = _load(engine, value), _load(django_cursor, value)
            assert ours == theirs
            assert ours.tzinfo == theirs.tzinfo
            assert ours.isoformat() == theirs.isoformat()
        # What fromisoformat cannot read gets Django's loader's answer (here: an error).
        with pytest.raises(Exception) as ours_error:
            _load(engine, VALUES[-1])
        connection.connection.rollback()
        with pytest.raises(Exception) as theirs_error:
            _load(django_cursor.cursor, VALUES[-1])
        assert type(ours_error.value) is type(theirs_error.value)


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_gets_a_new_cursor():
    from django_durable.storage.pg_cursor import engine_cursor

    connection.ensure_connection()
    first = engine_cursor(connection)
    connection.close()
    connection.ensure_connection()
    second = engine_cursor(connection)
    assert second is not first and second.connection is connection.connection
