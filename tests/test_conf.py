"""Tests of the ``DURABLE`` settings: defaults, validation, reload and executor overrides."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_durable.conf import (
    DEFAULTS,
    VALIDATORS,
    DurableSettings,
    DurableSettingsSnapshot,
    InvalidDurableSettingError,
    UnknownDurableSettingError,
    durable_settings,
    resolve,
    validate_settings,
)
from django_durable.serialization import JSONSerializer


class UpperSerializer:
    """A serializer for the tests: any object with serialize and deserialize."""

    def serialize(self, value: Any) -> str:
        return str(value).upper()

    def deserialize(self, data: str) -> Any:
        return data.lower()


class NotASerializer:
    pass


def test_every_setting_has_a_validator_and_a_snapshot_field() -> None:
    assert VALIDATORS.keys() == DEFAULTS.keys()
    fields = [field.name for field in dataclasses.fields(DurableSettingsSnapshot)]
    assert fields == [key.lower() for key in DEFAULTS]
    assert list(DurableSettings.__annotations__) == list(DEFAULTS)


@override_settings(DURABLE={})
def test_defaults() -> None:
    assert durable_settings.EXPIRE_LEEWAY == 300.0
    assert isinstance(durable_settings.EXPIRE_LEEWAY, float)
    assert durable_settings.POLL_INTERVAL == 0.5
    assert durable_settings.MAX_CONCURRENT_EXECUTIONS == 1000
    assert durable_settings.MAX_EXECUTIONS_PER_BATCH == 100
    assert durable_settings.MAX_CHILDREN_PER_EXECUTION == 1000
    assert durable_settings.MAX_INPUT_SIZE == 1_048_576
    assert durable_settings.MAX_OUTPUT_SIZE == 1_048_576
    assert durable_settings.SERIALIZER is JSONSerializer
    assert durable_settings.STORAGE_BATCHING is True
    assert durable_settings.STORAGE_BATCHING_INTERVAL == 0.0
    assert durable_settings.STORAGE_MAX_RETRIES == 1
    assert durable_settings.STORAGE_STATS is True
    assert durable_settings.SWEEP_BATCH_SIZE == 100
    assert durable_settings.LEASE_DURATION == 120.0
    assert durable_settings.SHUTDOWN_TIMEOUT == 15.0
    assert durable_settings.RETENTION is None
    assert durable_settings.HEARTBEAT_INTERVAL == 5.0
    assert durable_settings.LISTEN_NOTIFY is True
    assert durable_settings.DISPATCH == "worker"
    assert durable_settings.SCHEDULES == {}
    assert durable_settings.WAKEUP_TOKEN_MAX_AGE == 7 * 24 * 3600
    assert durable_settings.LOG_LEVEL is None


def test_absent_durable_setting_means_defaults() -> None:
    with override_settings():
        del django_settings.DURABLE
        assert DurableSettings().POLL_INTERVAL == 0.5


def test_test_settings_are_read() -> None:
    assert durable_settings.POLL_INTERVAL == 0.05


@override_settings(DURABLE={"POLL_INTERVAL": 2, "DISPATCH": "celery", "LOG_LEVEL": "info"})
def test_values_from_settings() -> None:
    assert durable_settings.POLL_INTERVAL == 2.0
    assert isinstance(durable_settings.POLL_INTERVAL, float)
    assert durable_settings.DISPATCH == "celery"
    assert durable_settings.LOG_LEVEL == "INFO"
    assert durable_settings.MAX_EXECUTIONS_PER_BATCH == 100


@override_settings(
    DURABLE={
        "RETENTION": datetime.timedelta(days=30),
        "EXPIRE_LEEWAY": datetime.timedelta(minutes=1),
        "STORAGE_BATCHING_INTERVAL": datetime.timedelta(milliseconds=5),
    }
)
def test_timedelta_values_become_float_seconds() -> None:
    assert durable_settings.RETENTION == 30 * 24 * 3600.0
    assert durable_settings.EXPIRE_LEEWAY == 60.0
    assert pytest.approx(0.005) == durable_settings.STORAGE_BATCHING_INTERVAL


@override_settings(
    DURABLE={"API_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"]},
)
def test_dotted_paths_are_imported_when_read() -> None:
    from rest_framework.permissions import AllowAny

    assert [AllowAny] == durable_settings.API_PERMISSION_CLASSES


@override_settings(DURABLE={"SERIALIZER": "tests.test_conf.UpperSerializer"})
def test_serializer_path_is_imported() -> None:
    assert durable_settings.SERIALIZER is UpperSerializer


@override_settings(DURABLE={"SERIALIZER": UpperSerializer})
def test_serializer_may_be_a_class() -> None:
    assert durable_settings.SERIALIZER is UpperSerializer


def test_setting_change_drops_the_cache() -> None:
    assert durable_settings.POLL_INTERVAL == 0.05
    with override_settings(DURABLE={"POLL_INTERVAL": 1}):
        assert durable_settings.POLL_INTERVAL == 1.0
    assert durable_settings.POLL_INTERVAL == 0.05


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NOT_A_SETTING"):
        durable_settings.NOT_A_SETTING  # noqa: B018


BAD_VALUES = [
    ("EXPIRE_LEEWAY", -1),
    ("EXPIRE_LEEWAY", "300"),
    ("POLL_INTERVAL", 0),
    ("POLL_INTERVAL", 61),
    ("POLL_INTERVAL", float("nan")),
    ("POLL_INTERVAL", True),
    ("MAX_CONCURRENT_EXECUTIONS", 0),
    ("MAX_CONCURRENT_EXECUTIONS", 10.0),
    ("MAX_EXECUTIONS_PER_BATCH", 1001),
    ("MAX_CHILDREN_PER_EXECUTION", 0),
    ("MAX_INPUT_SIZE", 1023),
    ("MAX_OUTPUT_SIZE", 104_857_601),
    ("SERIALIZER", ""),
    ("SERIALIZER", 42),
    ("SERIALIZER", NotASerializer),
    ("STORAGE_BATCHING", 1),
    ("STORAGE_BATCHING_INTERVAL", 0.2),
    ("STORAGE_MAX_RETRIES", 11),
    ("STORAGE_STATS", "yes"),
    ("SWEEP_BATCH_SIZE", 0),
    ("LEASE_DURATION", 0),
    ("SHUTDOWN_TIMEOUT", datetime.timedelta(seconds=-1)),
    ("RETENTION", 0),
    ("HEARTBEAT_INTERVAL", 0),
    ("LISTEN_NOTIFY", None),
    ("DISPATCH", "threads"),
    ("CELERY_REDISPATCH_AFTER", 0),
    ("CELERY_REDISPATCH_AFTER", "60"),
    ("SCHEDULES", []),
    ("SCHEDULES", {"nightly": "0 3 * * *"}),
    ("API_PERMISSION_CLASSES", "rest_framework.permissions.AllowAny"),
    ("API_PERMISSION_CLASSES", [42]),
    ("WAKEUP_TOKEN_MAX_AGE", 0),
    ("LOG_LEVEL", "LOUD"),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES, ids=lambda item: repr(item))
def test_bad_value_names_key_value_and_expectation(key: str, value: Any) -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        validate_settings({key: value})
    message = str(info.value)
    assert isinstance(info.value, InvalidDurableSettingError)
    assert info.value.key == key
    assert f"DURABLE[{key!r}]" in message
    assert repr(value) in message
    assert "expected" in message


def test_bad_value_is_reported_when_a_setting_is_read() -> None:
    with (
        override_settings(DURABLE={"POLL_INTERVAL": -1}),
        pytest.raises(ImproperlyConfigured, match="POLL_INTERVAL"),
    ):
        durable_settings.MAX_INPUT_SIZE  # noqa: B018


def test_unimportable_serializer_is_reported_when_read() -> None:
    with (
        override_settings(DURABLE={"SERIALIZER": "tests.nowhere.Serializer"}),
        pytest.raises(ImproperlyConfigured, match=r"SERIALIZER.*cannot be imported"),
    ):
        durable_settings.SERIALIZER  # noqa: B018


def test_unimportable_serializer_passes_validation_without_imports() -> None:
    values = validate_settings({"SERIALIZER": "tests.nowhere.Serializer"}, import_strings=False)
    assert values["SERIALIZER"] == "tests.nowhere.Serializer"


def test_unknown_key_suggests_the_closest_name() -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        validate_settings({"POLL_INTERVALL": 1})
    assert isinstance(info.value, UnknownDurableSettingError)
    assert "'POLL_INTERVALL'" in str(info.value)
    assert "Did you mean 'POLL_INTERVAL'?" in str(info.value)


def test_lower_case_key_suggests_the_upper_case_name() -> None:
    with pytest.raises(ImproperlyConfigured, match="Did you mean 'RETENTION'"):
        validate_settings({"retention": 10})


def test_durable_must_be_a_dict() -> None:
    with pytest.raises(ImproperlyConfigured, match="DURABLE"):
        validate_settings([("POLL_INTERVAL", 1)])  # type: ignore[arg-type]


class TestResolve:
    """``resolve``: the settings with an executor's lower-case overrides."""

    def test_without_overrides_matches_the_settings(self) -> None:
        snapshot = resolve()
        assert snapshot.poll_interval == 0.05
        assert snapshot.max_executions_per_batch == 100
        assert snapshot.serializer is JSONSerializer
        assert snapshot.api_permission_classes == ("rest_framework.permissions.IsAdminUser",)

    def test_overrides_win_and_are_normalized(self) -> None:
        snapshot = resolve(
            {
                "poll_interval": datetime.timedelta(milliseconds=20),
                "max_concurrent_executions": 4,
                "retention": None,
                "serializer": "tests.test_conf.UpperSerializer",
            }
        )
        assert snapshot.poll_interval == pytest.approx(0.02)
        assert snapshot.max_concurrent_executions == 4
        assert snapshot.retention is None
        assert snapshot.serializer is UpperSerializer
        assert durable_settings.POLL_INTERVAL == 0.05

    def test_snapshot_is_immutable(self) -> None:
        snapshot = resolve()
        with pytest.raises(dataclasses.FrozenInstanceError):
            snapshot.poll_interval = 1.0  # type: ignore[misc]

    def test_bad_override_names_the_option(self) -> None:
        with pytest.raises(ImproperlyConfigured) as info:
            resolve({"poll_interval": -1})
        assert "'poll_interval'" in str(info.value)
        assert "-1" in str(info.value)

    def test_unknown_override_is_a_type_error_with_suggestion(self) -> None:
        with pytest.raises(TypeError) as info:
            resolve({"pol_interval": 1})
        assert isinstance(info.value, ImproperlyConfigured)
        assert "'pol_interval'" in str(info.value)
        assert "Did you mean 'poll_interval'?" in str(info.value)

    def test_upper_case_override_is_unknown(self) -> None:
        with pytest.raises(ImproperlyConfigured, match="Did you mean 'poll_interval'"):
            resolve({"POLL_INTERVAL": 1})

    @override_settings(DURABLE={"POLL_INTERVAL": 0})
    def test_bad_settings_fail_even_with_overrides(self) -> None:
        with pytest.raises(ImproperlyConfigured, match="POLL_INTERVAL"):
            resolve({"poll_interval": 1})
