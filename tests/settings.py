"""Settings for the test suite: the database comes from ``DATABASE_URL`` (SQLite by default)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "django-durable-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Serves the admin's CSS and JS to the browser tests' live server.
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "django_durable",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def _database_from_url(url: str) -> dict:
    import environ  # django-environ

    return environ.Env.db_url_config(url)


DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": _database_from_url(DATABASE_URL)}
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get(
        "TEST_DATABASE_NAME", "test_django_durable"
    )
else:
    # A file, not ``:memory:``: executor threads and worker subprocesses share it.
    _sqlite_dir = os.environ.get("SQLITE_TEST_DIR") or tempfile.gettempdir()
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(_sqlite_dir, "django_durable.sqlite3"),
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
            "TEST": {
                "NAME": os.environ.get(
                    "TEST_DATABASE_NAME",
                    os.path.join(_sqlite_dir, f"test_django_durable_{os.getpid()}.sqlite3"),
                )
            },
        }
    }

# Worker subprocesses started by the tests (tests/commands) are not under pytest: they connect
# to the test database by its real name, given here.
if os.environ.get("DURABLE_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["DURABLE_TEST_DB_NAME"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"

DURABLE = {
    "POLL_INTERVAL": 0.05,
}
# ... and take their short intervals (heartbeat, expiry leeway) as JSON.
if os.environ.get("DURABLE_TEST_SETTINGS"):
    import json

    DURABLE.update(json.loads(os.environ["DURABLE_TEST_SETTINGS"]))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_durable": {"handlers": ["console"], "level": "WARNING"}},
}
if os.environ.get("DURABLE_TEST_DB_NAME"):
    # Worker subprocesses: timestamps and threads in their logs (the tests keep them as files).
    LOGGING["formatters"] = {
        "worker": {"format": "%(asctime)s %(levelname)s [%(threadName)s] %(name)s %(message)s"}
    }
    LOGGING["handlers"]["console"]["formatter"] = "worker"
