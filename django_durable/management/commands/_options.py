"""Flag types shared by the management commands (validated by ``argparse`` ``type=``)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {number}")
    return number


def non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {number}")
    return number


def duration(value: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h`` or ``7d`` as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = value.strip().lower()
    factor = 1
    if text and text[-1] in units:
        factor = units[text[-1]]
        text = text[:-1]
    try:
        seconds = float(text) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90s, 15m, 12h or 7d, got {value!r}"
        ) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive duration, got {value!r}")
    return seconds


def json_value(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None


def queue_name(value: str) -> str:
    if not value or len(value) > 64:
        raise argparse.ArgumentTypeError(
            f"expected a queue name of 1 to 64 characters, got {value!r}"
        )
    return value
