"""Task values to and from text: the serializer interface, the JSON serializer and size limits.

The JSON serializer writes plain JSON for JSON values and tagged objects such as
``{"$type": "datetime", "value": "2024-05-01T12:00:00.000001+02:00"}`` for the other supported
types, so that every supported value reads back equal and of the same type.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import re
import uuid
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .conf import durable_settings, register_reload_hook
from .errors import DurableExecutionError, convert_error

__all__ = [
    "SUPPORTED_TYPES",
    "TAG",
    "JSONSerializer",
    "Serializer",
    "deserialize",
    "get_serializer",
    "serialize",
]

#: The key that marks a tagged object in the JSON serializer's output.
TAG = "$type"

#: What the JSON serializer supports, as named in its errors.
SUPPORTED_TYPES = (
    "None, bool, int, float, str, list, dict, tuple, set, frozenset, datetime, date, time, "
    "timedelta, Decimal, UUID, bytes"
)


@runtime_checkable
class Serializer(Protocol):
    """Turns task values into text and back; must round-trip every value it accepts."""

    def serialize(self, value: Any) -> str:
        """Return ``value`` as text."""
        ...

    def deserialize(self, data: str) -> Any:
        """Return the value that :meth:`serialize` turned into ``data``."""
        ...


class _Unsupported(Exception):
    """A value the JSON serializer cannot write; ``segments`` is its path, innermost last."""

    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value
        self.segments: list[str] = []


def _key_segment(key: Any) -> str:
    if isinstance(key, str):
        return f"[{json.dumps(key, ensure_ascii=False)}]"
    return f"[{key!r}]"


def _encode_float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {TAG: "float", "value": repr(value)}  # "nan", "inf", "-inf": JSON has no such numbers


def _encode_items(items: Any, segment: Callable[[Any], str]) -> list[Any]:
    result = []
    for index, item in enumerate(items):
        try:
            result.append(_encode(item))
        except _Unsupported as exc:
            exc.segments.append(segment(index))
            raise
    return result


def _encode_set(value: set[Any] | frozenset[Any], tag: str) -> dict[str, Any]:
    items = list(value)
    encoded = _encode_items(items, lambda _: "{...}")
    # Set order depends on hashing: sort, naturally for numbers or strings, else by JSON text.
    if all(isinstance(item, str) for item in items) or all(
        isinstance(item, int | float) and math.isfinite(item) for item in items
    ):
        order = sorted(range(len(items)), key=items.__getitem__)
    else:
        texts = [json.dumps(item, ensure_ascii=False, sort_keys=True) for item in encoded]
        order = sorted(range(len(items)), key=texts.__getitem__)
    return {TAG: tag, "value": [encoded[index] for index in order]}


def _encode_dict(value: dict[Any, Any]) -> Any:
    if all(isinstance(key, str) for key in value):
        encoded: dict[str, Any] = {}
        for key, item in value.items():
            try:
                encoded[str.__str__(key)] = _encode(item)
            except _Unsupported as exc:
                exc.segments.append(_key_segment(key))
                raise
        # A user dict that has the tag key is wrapped, so it cannot be read back as a tag.
        return {TAG: "object", "value": encoded} if TAG in encoded else encoded
    pairs = []
    for key, item in value.items():
        try:
            encoded_key = _encode(key)
        except _Unsupported as exc:
            exc.segments.append(f"<key {key!r}>")
            raise
        try:
            pairs.append([encoded_key, _encode(item)])
        except _Unsupported as exc:
            exc.segments.append(_key_segment(key))
            raise
    return {TAG: "dict", "value": pairs}


def _encode(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return _encode_float(value)
    if kind is list:
        return _encode_items(value, lambda index: f"[{index}]")
    if kind is dict:
        return _encode_dict(value)
    # datetime is a date: test it first.
    if isinstance(value, datetime.datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, datetime.date):
        return {TAG: "date", "value": value.isoformat()}
    if isinstance(value, datetime.time):
        return {TAG: "time", "value": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {TAG: "timedelta", "value": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "value": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "value": str(value)}
    if isinstance(value, bytes):
        return {TAG: "bytes", "value": base64.b64encode(value).decode("ascii")}
    if isinstance(value, tuple):
        return {TAG: "tuple", "value": _encode_items(value, lambda index: f"[{index}]")}
    if isinstance(value, frozenset):
        return _encode_set(value, "frozenset")
    if isinstance(value, set):
        return _encode_set(value, "set")
    # Subclasses of JSON types (str and int enums, OrderedDict, ...) are written as their base type.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return _encode_float(float.__float__(value))
    if isinstance(value, list):
        return _encode_items(value, lambda index: f"[{index}]")
    if isinstance(value, dict):
        return _encode_dict(value)
    raise _Unsupported(value)


_UTC_OFFSET = re.compile(r"([+-])(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{6}))?)?$")


def _split_utc_offset(text: str) -> tuple[str, datetime.timezone | None]:
    """Split the ``isoformat()`` UTC offset off ``text`` (Python 3.11 misreads sub-second ones)."""
    match = _UTC_OFFSET.search(text)
    if match is None or match.start() < 8:  # a time is at least "HH:MM:SS"
        return text, None
    sign, hours, minutes, seconds, microseconds = match.groups()
    offset = datetime.timedelta(
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds or 0),
        microseconds=int(microseconds or 0),
    )
    return text[: match.start()], datetime.timezone(-offset if sign == "-" else offset)


def _decode_tagged(tag: Any, value: Any) -> Any:
    if tag == "datetime":
        text, tzinfo = _split_utc_offset(value)
        return datetime.datetime.fromisoformat(text).replace(tzinfo=tzinfo)
    if tag == "date":
        return datetime.date.fromisoformat(value)
    if tag == "time":
        text, tzinfo = _split_utc_offset(value)
        return datetime.time.fromisoformat(text).replace(tzinfo=tzinfo)
    if tag == "timedelta":
        days, seconds, microseconds = value
        return datetime.timedelta(days=days, seconds=seconds, microseconds=microseconds)
    if tag == "decimal":
        return decimal.Decimal(value)
    if tag == "uuid":
        return uuid.UUID(value)
    if tag == "bytes":
        return base64.b64decode(value.encode("ascii"), validate=True)
    if tag == "float":
        return float(value)
    if tag == "tuple":
        return tuple(_decode(item) for item in value)
    if tag == "set":
        return {_decode(item) for item in value}
    if tag == "frozenset":
        return frozenset(_decode(item) for item in value)
    if tag == "object":
        return {key: _decode(item) for key, item in value.items()}
    if tag == "dict":
        return {_decode(key): _decode(item) for key, item in value}
    raise ValueError(f"unknown {TAG} {tag!r}")


def _decode(value: Any) -> Any:
    kind = type(value)
    if kind is list:
        return [_decode(item) for item in value]
    if kind is dict:
        if TAG not in value:
            return {key: _decode(item) for key, item in value.items()}
        if value.keys() != {TAG, "value"}:
            raise ValueError(f"malformed tagged object with keys {sorted(value)}")
        return _decode_tagged(value[TAG], value["value"])
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class JSONSerializer:
    """The default serializer: JSON text, with tagged objects for the non-JSON types it supports.

    Round-trips ``None, bool, int, float`` (``nan`` and infinities too), ``str, list, dict``
    (any hashable supported keys), ``tuple, set, frozenset, datetime, date, time, timedelta,
    Decimal, UUID`` and ``bytes``; subclasses of the JSON types are written as their base type.
    Anything else fails with a non-retryable ``DurableExecutionError`` naming its type and path.
    Aware datetimes and times keep their UTC offset (as a fixed-offset ``timezone``).
    """

    def serialize(self, value: Any, *, label: str = "value") -> str:
        """Return ``value`` as JSON text; ``label`` names the value in errors (``input``)."""
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            return json.dumps(value, ensure_ascii=False)
        if kind is float and math.isfinite(value):
            return json.dumps(value)
        try:
            return _dumps(_encode(value))
        except _Unsupported as exc:
            path = label + "".join(reversed(exc.segments))
            type_name = type(exc.value).__qualname__
            raise DurableExecutionError.non_retryable(
                f"Value of type {type_name!r} at {path} is not serializable "
                f"(supported: {SUPPORTED_TYPES})"
            ) from None
        except RecursionError:
            raise DurableExecutionError.non_retryable(
                f"{label} is nested too deeply or contains a reference cycle, so it cannot be "
                "serialized"
            ) from None

    def deserialize(self, data: str) -> Any:
        """Return the value that :meth:`serialize` wrote as ``data``."""
        try:
            value = json.loads(data)
            # The tag cannot be written any other way, so text without it holds no tagged object.
            if f'"{TAG}"' not in data:
                return value
            return _decode(value)
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            raise DurableExecutionError.non_retryable(
                f"Cannot deserialize data: {exc}", cause=exc
            ) from exc


_serializer: Serializer | None = None


def get_serializer() -> Serializer:
    """The serializer that ``DURABLE["SERIALIZER"]`` names (one instance, rebuilt on change)."""
    global _serializer
    serializer = _serializer
    if serializer is None:
        serializer = _serializer = durable_settings.SERIALIZER()
    return serializer


def _reset_serializer() -> None:
    global _serializer
    _serializer = None


register_reload_hook(_reset_serializer)


def serialize(
    value: Any,
    *,
    max_size: int | None,
    serializer: Serializer | None = None,
    label: str = "value",
) -> str:
    """Serialize ``value``; fail (non-retryable) if its UTF-8 encoding exceeds ``max_size`` bytes.

    ``serializer`` defaults to :func:`get_serializer`; ``label`` names the value in errors of
    the JSON serializer (``"input"``, ``"output"``). A ``DurableExecutionError`` raised by the
    serializer propagates unchanged; any other exception becomes a non-retryable one.
    """
    serializer = serializer or get_serializer()
    try:
        if isinstance(serializer, JSONSerializer):
            data = serializer.serialize(value, label=label)
        else:
            data = serializer.serialize(value)
    except DurableExecutionError:
        raise
    except Exception as exc:
        raise convert_error(exc, is_retryable=False) from exc
    if not isinstance(data, str):
        raise DurableExecutionError.non_retryable(
            f"{type(serializer).__qualname__}.serialize() returned {type(data).__qualname__}, "
            "expected str"
        )
    # A character is at most 4 bytes in UTF-8: short enough strings need no encoding.
    if max_size is not None and 4 * len(data) > max_size:
        size = len(data.encode("utf-8", "surrogatepass"))
        if size > max_size:
            raise DurableExecutionError.non_retryable(
                "Serialized data size exceeds maximum allowed size "
                f"[serializedDataSize={size}B] [maxSerializedDataSize={max_size}B]"
            )
    return data


def deserialize(data: str, *, serializer: Serializer | None = None) -> Any:
    """Deserialize ``data`` with ``serializer`` (default :func:`get_serializer`).

    Errors propagate as in :func:`serialize`.
    """
    serializer = serializer or get_serializer()
    try:
        return serializer.deserialize(data)
    except DurableExecutionError:
        raise
    except Exception as exc:
        raise convert_error(exc, is_retryable=False) from exc
