"""Tests of the JSON serializer, the serializer setting and the size limits."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import json
import math
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st

from django_durable.errors import DurableExecutionError
from django_durable.serialization import (
    TAG,
    JSONSerializer,
    Serializer,
    deserialize,
    get_serializer,
    serialize,
)

json_serializer = JSONSerializer()


def canonical(value: Any) -> Any:
    """A comparable form of ``value`` that tells apart types (1, 1.0, True) and set orders."""
    kind = type(value).__name__
    if isinstance(value, list | tuple):
        return (kind, [canonical(item) for item in value])
    if isinstance(value, set | frozenset):
        return (kind, sorted(repr(canonical(item)) for item in value))
    if isinstance(value, dict):
        return (kind, [(canonical(key), canonical(item)) for key, item in value.items()])
    if isinstance(value, float | decimal.Decimal | datetime.date | datetime.time):
        return (kind, repr(value) if isinstance(value, float) else str(value))
    return (kind, value)


def round_trip(value: Any) -> Any:
    return json_serializer.deserialize(json_serializer.serialize(value))


def assert_round_trips(value: Any) -> None:
    assert canonical(round_trip(value)) == canonical(value)


UTC_PLUS_2 = datetime.timezone(datetime.timedelta(hours=2))
ODD_OFFSET = datetime.timezone(datetime.timedelta(hours=-5, minutes=-30, seconds=-15))


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**80,
        1.5,
        -0.0,
        1e300,
        math.inf,
        -math.inf,
        "",
        "héllo ✓ 𝄞",
        [],
        {},
        [1, "a", None, [2.5, [True]]],
        {"a": {"b": [1, 2, {"c": None}]}},
        datetime.datetime(2024, 5, 1, 12, 0, 0, 1),
        datetime.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC),
        datetime.datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=UTC_PLUS_2),
        datetime.datetime(1, 1, 1, tzinfo=ODD_OFFSET),
        datetime.date(2024, 2, 29),
        datetime.time(23, 59, 59, 999999),
        datetime.time(8, 30, tzinfo=UTC_PLUS_2),
        datetime.timedelta(days=-3, seconds=5, microseconds=7),
        datetime.timedelta(0),
        decimal.Decimal("1.10"),
        decimal.Decimal("-0"),
        decimal.Decimal("1E+30"),
        decimal.Decimal("Infinity"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        b"",
        b"\x00\xffbytes",
        (),
        (1, (2, "three"), [4]),
        set(),
        {3, 1, 2},
        frozenset({"b", "a"}),
        {frozenset({1, 2}), (1, "a"), None, "x", 3},
        {1: "one", 2.5: "two and a half", None: "none", False: "no"},
        {(1, 2): "tuple key", frozenset({"a"}): [1], datetime.date(2024, 1, 1): b"x"},
        {"a": 1, 7: 2},
    ],
    ids=repr,
)
def test_supported_values_round_trip_with_their_types(value: Any) -> None:
    assert_round_trips(value)


def test_nested_mix_round_trips() -> None:
    value = {
        "when": [datetime.datetime(2024, 1, 1, tzinfo=UTC_PLUS_2), datetime.date(2024, 1, 2)],
        "amounts": {decimal.Decimal("0.1"), decimal.Decimal("2")},
        "ids": (uuid.uuid4(), uuid.uuid4()),
        "matrix": {(0, 0): 1.0, (0, 1): math.inf},
        "blob": {"data": b"\x01\x02", "sizes": frozenset({1, 2, 3})},
    }
    assert_round_trips(value)


def test_nan_round_trips_as_a_float() -> None:
    result = round_trip([math.nan])
    assert isinstance(result[0], float)
    assert math.isnan(result[0])


@pytest.mark.parametrize(
    "value",
    [
        {TAG: "datetime", "value": "2024-01-01T00:00:00"},
        {TAG: "object", "value": {"a": 1}},
        {TAG: "dict", "value": [[1, 2]]},
        {TAG: 1},
        {TAG: {TAG: "set", "value": []}},
        {"outer": {TAG: "uuid", "value": "not a uuid"}},
        [{TAG: "bytes", "value": "!!"}],
        {TAG: "x", 1: "non-str key too"},
        {"value": 1, TAG: None, "other": [TAG]},
    ],
    ids=repr,
)
def test_user_dicts_with_the_tag_key_round_trip(value: Any) -> None:
    assert_round_trips(value)


def test_plain_json_values_are_written_as_plain_json() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": {}}}
    assert json_serializer.serialize(value) == json.dumps(
        value, separators=(",", ":"), ensure_ascii=False
    )
    assert json_serializer.serialize("é") == '"é"'
    assert json_serializer.serialize(None) == "null"
    assert json_serializer.serialize(3) == "3"


def test_output_is_deterministic_for_sets() -> None:
    words = ["pear", "apple", "fig", "kiwi", "banana", "cherry"]
    first = json_serializer.serialize({"s": set(words), "f": frozenset(reversed(words))})
    second = json_serializer.serialize({"s": set(reversed(words)), "f": frozenset(words)})
    assert first == second
    assert json_serializer.serialize({10, 2, 1}) == '{"$type":"set","value":[1,2,10]}'
    mixed = [(2, "b"), "a", None, frozenset({1}), 3]
    assert json_serializer.serialize(set(mixed)) == json_serializer.serialize(set(reversed(mixed)))


def test_subclasses_of_json_types_are_written_as_their_base_type() -> None:
    class Colour(enum.StrEnum):
        RED = "red"

    class Size(enum.IntEnum):
        LARGE = 3

    value = {
        "colour": Colour.RED,
        "size": Size.LARGE,
        "ordered": collections.OrderedDict(b=1),
    }
    result = round_trip(value)
    assert canonical(result) == canonical({"colour": "red", "size": 3, "ordered": {"b": 1}})


class Foo:
    pass


def generator() -> Any:
    yield 1


@pytest.mark.parametrize(
    ("value", "type_name", "path"),
    [
        (Foo(), "Foo", "input"),
        ({"a": [1, 2, Foo()]}, "Foo", 'input["a"][2]'),
        ((1, {"k": print}), "builtin_function_or_method", 'input[1]["k"]'),
        ([generator()], "generator", "input[0]"),
        ({"user": User(username="x")}, "User", 'input["user"]'),
        ({5: [object()]}, "object", "input[5][0]"),
        ({1, Foo()}, "Foo", "input{...}"),
        ({Foo(): 1}, "Foo", "input<key"),
        (bytearray(b"x"), "bytearray", "input"),
        (enum.Enum("Plain", "A").A, "Plain", "input"),  # type: ignore[attr-defined]
    ],
    ids=repr,
)
def test_unsupported_values_fail_with_type_and_path(value: Any, type_name: str, path: str) -> None:
    with pytest.raises(DurableExecutionError) as info:
        serialize(value, max_size=None, label="input")
    message = str(info.value)
    assert f"Value of type {type_name!r} at {path}" in message
    assert "is not serializable (supported: " in message
    assert info.value.is_retryable is False


def test_reference_cycle_fails_clearly() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(DurableExecutionError, match="reference cycle") as info:
        json_serializer.serialize(cycle)
    assert info.value.is_retryable is False


@pytest.mark.parametrize(
    "data",
    [
        "{",
        "",
        '{"$type":"nope","value":1}',
        '{"$type":"datetime","value":"yesterday"}',
        '{"$type":"set"}',
        '{"$type":"bytes","value":"!!"}',
        '{"$type":"dict","value":[[[1],2]]}',
    ],
)
def test_bad_data_fails_to_deserialize_non_retryable(data: str) -> None:
    with pytest.raises(DurableExecutionError, match="Cannot deserialize") as info:
        deserialize(data)
    assert info.value.is_retryable is False


hashables = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.uuids()
    | st.dates()
    | st.decimals(allow_nan=False),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=5,
)
offsets = st.timedeltas(
    min_value=datetime.timedelta(hours=-23, minutes=-59),
    max_value=datetime.timedelta(hours=23, minutes=59),
).map(datetime.timezone)
scalars = (
    hashables
    | st.datetimes()
    | st.datetimes(timezones=offsets)
    | st.times()
    | st.times(timezones=offsets)
    | st.timedeltas()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.sets(hashables, max_size=4)
        | st.dictionaries(st.text() | st.just(TAG) | st.just("value"), inner, max_size=4)
        | st.dictionaries(hashables, inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_every_supported_value_round_trips(value: Any) -> None:
    data = json_serializer.serialize(value)
    assert canonical(json_serializer.deserialize(data)) == canonical(value)
    # Deterministic: the value read back is written the same way.
    assert json_serializer.serialize(json_serializer.deserialize(data)) == data


class TestSizeLimit:
    """``serialize(max_size=...)`` counts UTF-8 bytes (seed tests F3, F4)."""

    def test_too_large_value_fails(self) -> None:
        with pytest.raises(DurableExecutionError) as info:
            serialize("x" * 1000, max_size=100)
        assert "exceeds maximum allowed size" in str(info.value)
        assert "[serializedDataSize=1002B] [maxSerializedDataSize=100B]" in str(info.value)
        assert info.value.is_retryable is False

    def test_limit_is_in_bytes_not_characters(self) -> None:
        value = "a" * 100
        unlimited = serialize(value, max_size=None)
        limit = math.floor(len(unlimited) * 2.5)
        assert 4 * len(unlimited) > limit
        assert serialize(value, max_size=limit) == unlimited

    def test_multibyte_characters_count_as_bytes(self) -> None:
        value = "é" * 100  # 102 characters, 202 bytes once serialized
        assert serialize(value, max_size=202) == json.dumps(value, ensure_ascii=False)
        with pytest.raises(DurableExecutionError, match=r"serializedDataSize=202B"):
            serialize(value, max_size=201)

    def test_no_limit_accepts_anything(self) -> None:
        assert serialize("x" * 1000, max_size=None) == json.dumps("x" * 1000)


class UpperSerializer:
    """A custom serializer for the tests."""

    def serialize(self, value: Any) -> str:
        return "UP:" + json.dumps(value)

    def deserialize(self, data: str) -> Any:
        return json.loads(data.removeprefix("UP:"))


class FailingSerializer:
    """A serializer whose calls fail with the exception given to it."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def serialize(self, value: Any) -> str:
        raise self.error

    def deserialize(self, data: str) -> Any:
        raise self.error


class TestSerializerSetting:
    """The ``SERIALIZER`` setting and errors of custom serializers (seed test F5)."""

    def test_default_is_the_json_serializer(self) -> None:
        assert isinstance(get_serializer(), JSONSerializer)
        assert get_serializer() is get_serializer()
        assert isinstance(get_serializer(), Serializer)

    def test_custom_serializer_from_settings(self) -> None:
        with override_settings(DURABLE={"SERIALIZER": "tests.test_serialization.UpperSerializer"}):
            assert isinstance(get_serializer(), UpperSerializer)
            assert serialize([1], max_size=None) == "UP:[1]"
            assert deserialize("UP:[1]") == [1]
        assert isinstance(get_serializer(), JSONSerializer)

    @pytest.mark.parametrize("message", ["serialize error", "Serialization failed"])
    def test_serializer_exception_message_surfaces_non_retryable(self, message: str) -> None:
        cause = RuntimeError(message)
        with pytest.raises(DurableExecutionError) as info:
            serialize(1, max_size=None, serializer=FailingSerializer(cause))
        assert str(info.value) == message
        assert info.value.is_retryable is False
        assert info.value.cause is cause

    @pytest.mark.parametrize("message", ["deserialize error", "Deserialization failed"])
    def test_deserializer_exception_message_surfaces_non_retryable(self, message: str) -> None:
        with pytest.raises(DurableExecutionError) as info:
            deserialize("1", serializer=FailingSerializer(ValueError(message)))
        assert str(info.value) == message
        assert info.value.is_retryable is False

    def test_durable_execution_error_from_serializer_is_the_same_object(self) -> None:
        error = DurableExecutionError.retryable("custom")
        failing = FailingSerializer(error)
        with pytest.raises(DurableExecutionError) as info:
            serialize(1, max_size=None, serializer=failing)
        assert info.value is error
        with pytest.raises(DurableExecutionError) as info:
            deserialize("1", serializer=failing)
        assert info.value is error

    def test_serializer_returning_non_text_fails(self) -> None:
        class BytesSerializer(UpperSerializer):
            def serialize(self, value: Any) -> str:
                return b"x"  # type: ignore[return-value]

        with pytest.raises(DurableExecutionError, match="returned bytes, expected str"):
            serialize(1, max_size=None, serializer=BytesSerializer())
