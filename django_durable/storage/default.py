"""The process-wide storage layer, built from the settings (rebuilt on change or fork)."""

from __future__ import annotations

import os
import threading

from django.db import connections

from ..conf import durable_settings, register_reload_hook
from .base import TaskExecutionsStorage
from .layer import StorageLayer
from .orm import OrmStorage

_lock = threading.Lock()
_layer: StorageLayer | None = None
_pid: int | None = None


def make_storage(using: str = "default") -> TaskExecutionsStorage:
    """The fastest storage for the database: raw SQL on PostgreSQL with psycopg 3, the ORM
    elsewhere (SQLite, and PostgreSQL through psycopg2)."""
    if connections[using].vendor == "postgresql":
        from django.db.backends.postgresql.psycopg_any import is_psycopg3

        if is_psycopg3:
            from .postgres import PostgresStorage

            return PostgresStorage(using)
    return OrmStorage(using)


def get_storage() -> StorageLayer:
    global _layer, _pid
    layer = _layer
    if layer is not None and _pid == os.getpid():
        return layer
    with _lock:
        if _layer is None or _pid != os.getpid():
            _layer = StorageLayer(
                make_storage(),
                batching=durable_settings.STORAGE_BATCHING,
                batching_interval=durable_settings.STORAGE_BATCHING_INTERVAL,
                max_retries=durable_settings.STORAGE_MAX_RETRIES,
                stats=durable_settings.STORAGE_STATS,
            )
            _layer.start()
            _pid = os.getpid()
        return _layer


def reset_storage() -> None:
    """Stop and forget the process-wide layer (settings changed, tests)."""
    global _layer
    with _lock:
        layer, _layer = _layer, None
    if layer is not None and _pid == os.getpid():
        layer.shutdown()


register_reload_hook(reset_storage)
