"""Smoke tests of the test set-up: Django starts, the app is installed, the database answers."""

from __future__ import annotations

import os

import django
import pytest
from django.apps import apps
from django.db import connection


def test_django_setup_installs_the_durable_app() -> None:
    django.setup()  # already done by pytest-django; calling it again must be harmless
    assert apps.is_installed("django_durable")
    assert apps.get_app_config("django_durable").name == "django_durable"


@pytest.mark.django_db
def test_database_is_the_one_named_by_database_url() -> None:
    url = os.environ.get("DATABASE_URL", "")
    expected = "postgresql" if url.startswith(("postgres:", "postgresql:")) else "sqlite"
    assert connection.vendor == expected
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
