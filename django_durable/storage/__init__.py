"""Storage of task executions: the interface, the ORM implementation and the batching layer."""

from typing import TYPE_CHECKING

from .base import (
    Filters,
    GetByIdRequest,
    SettleRequest,
    SettleResult,
    TaskExecutionsStorage,
    Update,
    UpdateByIdAndInsertChildrenRequest,
    UpdateByIdRequest,
    UpdateByParentRequest,
)

__all__ = [
    "Filters",
    "GetByIdRequest",
    "SettleRequest",
    "SettleResult",
    "TaskExecutionsStorage",
    "Update",
    "UpdateByIdAndInsertChildrenRequest",
    "UpdateByIdRequest",
    "UpdateByParentRequest",
    "get_storage",
]


def get_storage() -> "StorageLayer":
    """The process-wide :class:`StorageLayer`, built from the settings on first use.

    It is rebuilt when the ``DURABLE`` settings change and after a fork (batch threads do not
    survive one).
    """
    from .default import get_storage as _get_storage

    return _get_storage()


if TYPE_CHECKING:
    from .layer import StorageLayer
