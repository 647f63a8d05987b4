"""Pagination of ``GET executions/``: a cursor on the primary key, newest first.

A cursor page is one indexed range scan whatever the table's size: no ``COUNT(*)`` and no
growing ``OFFSET``.
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request

__all__ = ["ExecutionCursorPagination"]


class ExecutionCursorPagination(CursorPagination):
    """Newest executions first; ``?page_size=`` (1..500, default 50) and an opaque ``?cursor=``
    taken from the ``next`` / ``previous`` links."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    invalid_cursor_message = "Invalid cursor: use the next or previous link of a page."

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            cursor: Cursor | None = super().decode_cursor(request)
        except NotFound as exc:  # DRF's answer to a malformed cursor
            raise ValidationError({"cursor": [self.invalid_cursor_message]}) from exc
        position: Any = None if cursor is None else cursor.position
        if position is not None and not (
            isinstance(position, str)
            and position.isascii()
            and position.isdigit()
            and int(position) < 2**63
        ):
            # A forged position would reach the query as an invalid id and fail there.
            raise ValidationError({"cursor": [self.invalid_cursor_message]})
        return cursor
