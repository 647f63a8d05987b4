"""PostgreSQL storage: the ORM storage with claims done in one ``UPDATE … RETURNING``."""

from __future__ import annotations

from .orm import OrmStorage


class PostgresStorage(OrmStorage):
    """:class:`OrmStorage` for PostgreSQL (the raw-SQL fast paths live here)."""
