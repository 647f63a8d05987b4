"""The API's operations live in :mod:`django_durable.operations` (the admin shares them)."""

from __future__ import annotations

from ..operations import (
    RetryConflictError,
    RetryResult,
    retry_execution,
    retry_idempotency_key,
)

__all__ = ["RetryConflictError", "RetryResult", "retry_execution", "retry_idempotency_key"]
