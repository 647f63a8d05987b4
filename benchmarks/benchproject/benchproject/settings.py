"""Settings of the benchmark project: django_durable with its defaults, and the benchmark tasks.

``DATABASE_URL`` picks the database: ``postgres://user@host:port/name`` or
``sqlite:////absolute/path.sqlite3`` (default: a file in the system's temporary directory).
Nothing else is configured: the benchmarks measure what a user gets out of the box.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

SECRET_KEY = "django-durable-benchmarks"  # a throwaway project
DEBUG = False  # DEBUG=True would keep every query in memory
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS: list[str] = []

INSTALLED_APPS = [
    "django_durable",
    "benchapp",
]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def database_from_url(url: str) -> dict[str, Any]:
    """Django's ``DATABASES['default']`` for a ``postgres://`` or ``sqlite:///`` URL."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    if parts.scheme == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            # sqlite:////tmp/x.sqlite3 -> /tmp/x.sqlite3
            "NAME": unquote(parts.path),
            # Writers queue for the write lock up front instead of failing on upgrade (the
            # documented SQLite setup), waiting up to 30 s for it.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
        }
    raise ValueError(f"Unsupported DATABASE_URL scheme: {url!r}")


DATABASES = {
    "default": database_from_url(
        os.environ.get(
            "DATABASE_URL",
            f"sqlite:///{Path(tempfile.gettempdir()) / 'django_durable_bench.sqlite3'}",
        )
    )
}

# django_durable's defaults throughout (POLL_INTERVAL 0.5 s, LISTEN/NOTIFY on PostgreSQL, ...).
DURABLE: dict[str, Any] = {}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    # The worker command sets this logger's level (--log-level); no second handler.
    "loggers": {"django_durable": {"handlers": ["console"], "propagate": False}},
}
