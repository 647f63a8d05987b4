"""Tests of the system checks ``django_durable.E001``, ``E002`` and ``W001``."""

from __future__ import annotations

from typing import Any

from django.core.checks import run_checks
from django.test import override_settings

from django_durable.checks import (
    check_serializer,
    check_settings,
    check_sqlite_transaction_mode,
    sqlite_transaction_mode_warnings,
)


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


def test_test_settings_pass_every_check() -> None:
    assert check_settings() == []
    assert check_serializer() == []
    assert check_sqlite_transaction_mode() == []
    assert not [m for m in run_checks() if str(m.id).startswith("django_durable.")]


@override_settings(DURABLE={"POLL_INTERVAL": -1})
def test_invalid_setting_is_e001() -> None:
    messages = check_settings()
    assert ids(messages) == ["django_durable.E001"]
    assert "POLL_INTERVAL" in messages[0].msg
    assert "-1" in messages[0].msg
    assert messages[0].hint


@override_settings(DURABLE={"POLL_INTERVALL": 1})
def test_unknown_setting_is_e001_with_suggestion() -> None:
    messages = check_settings()
    assert ids(messages) == ["django_durable.E001"]
    assert "Did you mean 'POLL_INTERVAL'?" in messages[0].msg


@override_settings(DURABLE={"POLL_INTERVAL": -1})
def test_e001_is_registered() -> None:
    assert "django_durable.E001" in ids(run_checks())


@override_settings(DURABLE={"SERIALIZER": "tests.nowhere.Serializer"})
def test_unimportable_serializer_is_e002_only() -> None:
    assert check_settings() == []
    messages = check_serializer()
    assert ids(messages) == ["django_durable.E002"]
    assert "tests.nowhere.Serializer" in messages[0].msg
    assert "django_durable.serialization.JSONSerializer" in messages[0].hint
    assert "django_durable.E002" in ids(run_checks())


@override_settings(DURABLE={"SERIALIZER": "django_durable.conf.DEFAULTS"})
def test_serializer_path_to_a_non_serializer_is_e002() -> None:
    messages = check_serializer()
    assert ids(messages) == ["django_durable.E002"]
    assert "not a serializer class" in messages[0].msg


def test_sqlite_without_immediate_transactions_is_w001() -> None:
    messages = sqlite_transaction_mode_warnings(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
    )
    assert ids(messages) == ["django_durable.W001"]
    assert "IMMEDIATE" in messages[0].hint
    assert "database is locked" in messages[0].hint


def test_sqlite_with_deferred_transactions_is_w001() -> None:
    messages = sqlite_transaction_mode_warnings(
        {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "OPTIONS": {"transaction_mode": "DEFERRED"},
            }
        }
    )
    assert ids(messages) == ["django_durable.W001"]


def test_sqlite_with_immediate_transactions_passes() -> None:
    assert (
        sqlite_transaction_mode_warnings(
            {
                "default": {
                    "ENGINE": "django.db.backends.sqlite3",
                    "OPTIONS": {"transaction_mode": "immediate"},
                }
            }
        )
        == []
    )


def test_postgresql_needs_no_transaction_mode() -> None:
    assert (
        sqlite_transaction_mode_warnings({"default": {"ENGINE": "django.db.backends.postgresql"}})
        == []
    )


@override_settings(DURABLE=[("POLL_INTERVAL", 1)])
def test_durable_that_is_not_a_dict_is_e001() -> None:
    messages = check_settings()
    assert ids(messages) == ["django_durable.E001"]
    assert "expected a dict" in messages[0].msg
    assert check_serializer() == []


def test_schedules_check_reports_a_bad_schedule_and_an_unknown_task() -> None:
    from django.test import override_settings

    from django_durable.checks import check_schedules

    bad = {"s": {"task": "x", "schedule": "nope"}}
    with override_settings(DURABLE={"SCHEDULES": bad}):
        assert [m.id for m in check_schedules()] == ["django_durable.E003"]
    unknown = {"s": {"task": "not.registered", "schedule": "* * * * *"}}
    with override_settings(DURABLE={"SCHEDULES": unknown}):
        [message] = check_schedules()
    assert message.id == "django_durable.W002"
    assert "not.registered" in message.msg
