"""Exceptions of hnsw_batch: one class per error of a batch insert."""

from __future__ import annotations

from typing import Optional

__all__ = [
    "BatchError",
    "DimensionMismatchError",
    "InvalidVectorError",
    "DuplicateIdError",
    "CapacityExceededError",
    "CancelledError",
    "RefusedError",
]


class BatchError(ValueError):
    """Base class of the batch errors.

    ``position`` is the row of the input the error concerns and ``id`` that row's id; either is
    None where it does not apply (for example a whole matrix of the wrong width, or a query).
    """

    def __init__(self, message: str, position: Optional[int] = None, id: Optional[int] = None) -> None:
        super().__init__(message)
        self.position = position
        self.id = id


class DimensionMismatchError(BatchError):
    """A vector's length differs from the index dimension (``expected``, ``actual``)."""

    expected: Optional[int] = None
    actual: Optional[int] = None


class InvalidVectorError(BatchError):
    """A vector holds NaN or infinity, has zero norm under "cosine", or does not fit "u8"
    storage (``reason`` says which)."""

    reason: Optional[str] = None


class DuplicateIdError(BatchError):
    """An id appears twice in the batch (``first_position`` is the earlier row) or is already in
    the index (``first_position`` is None)."""

    first_position: Optional[int] = None


class CapacityExceededError(BatchError):
    """Inserting would exceed ``max_elements`` (``limit``)."""

    limit: Optional[int] = None


class CancelledError(BatchError):
    """The batch was cancelled; ``inserted`` items were inserted and are searchable."""

    inserted: Optional[int] = None


class RefusedError(ValueError):
    """A bulk operation by filter (``delete_where``, ``update_where``, ``purge_expired``) refused
    to run and changed nothing: ``found`` items matched, where ``confirm_count`` expected
    ``expected`` or ``max_affected`` allows ``limit`` (the other one is None)."""

    found: Optional[int] = None
    expected: Optional[int] = None
    limit: Optional[int] = None

    def __init__(self, message: str, position: Optional[int] = None, id: Optional[int] = None) -> None:
        super().__init__(message)
