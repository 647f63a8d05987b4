"""The psycopg cursor the engine's PostgreSQL statements run on.

One cursor per connection, kept for the connection's life (creating a psycopg cursor and its
adapters map costs more than a small statement's round trip), which loads ``timestamptz``
columns with :meth:`datetime.fromisoformat` (written in C) instead of the pure-Python loader
Django registers: the claim and the settle return rows of 13 timestamps each, thousands of
times a second.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

import psycopg
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format

_TIMESTAMPTZ_OID = psycopg.postgres.types["timestamptz"].oid


class _FastTimestamptzLoader(Loader):
    """``timestamptz`` text as Django's loader returns it (the value in the session's time zone,
    with ``timezone`` as its ``tzinfo``); what ``fromisoformat`` cannot read (``infinity``,
    BC dates, years past 9999) goes to Django's loader."""

    timezone: tzinfo | None = None
    fallback: type[Loader]

    def load(self, data: Buffer) -> Any:
        try:
            value = datetime.fromisoformat(bytes(data).decode())
        except ValueError:
            # Made only when needed: a result makes one loader per timestamp column.
            return self.fallback(self.oid, self.connection).load(data)
        return value.replace(tzinfo=self.timezone)


_loader_classes: dict[tuple[type[Loader], tzinfo | None], type[Loader]] = {}


def _loader_class(django_loader: type[Loader]) -> type[Loader]:
    """A fast loader standing in for ``django_loader`` (Django's, bound to a time zone)."""
    timezone = getattr(django_loader, "timezone", None)
    key = (django_loader, timezone)
    loader = _loader_classes.get(key)
    if loader is None:
        loader = type(
            "DurableTimestamptzLoader",
            (_FastTimestamptzLoader,),
            {"timezone": timezone, "fallback": django_loader},
        )
        _loader_classes[key] = loader
    return loader


def engine_cursor(connection: Any) -> psycopg.Cursor[Any]:
    """The engine's cursor on ``connection`` (Django's wrapper, connected), made on first use
    and whenever the underlying psycopg connection changed."""
    raw = connection.connection
    cached = getattr(connection, "_durable_cursor", None)
    if cached is not None and cached.connection is raw and not cached.closed:
        return cached
    cursor: psycopg.Cursor[Any] = psycopg.Cursor(raw)
    django_loader = raw.adapters.get_loader(_TIMESTAMPTZ_OID, Format.TEXT)
    if django_loader is not None and not issubclass(django_loader, _FastTimestamptzLoader):
        cursor.adapters.register_loader("timestamptz", _loader_class(django_loader))
    connection._durable_cursor = cursor
    return cursor
