"""The API's request parser: JSON only, and every malformed body is a 400, never a 500."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

__all__ = ["DurableJSONParser"]


class DurableJSONParser(JSONParser):
    """DRF's strict JSON parser (no ``NaN``/``Infinity``) that also turns an unknown charset
    and a document nested too deeply for Python's parser into a 400."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except LookupError as exc:  # codecs.getreader() of an unknown "charset=" parameter
            raise ParseError(f"JSON parse error - unknown charset: {exc}")
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply")
