"""hnsw-batch: an HNSW approximate nearest-neighbour index built for bulk loads.

- :class:`Index`: the in-memory index (``add_items``, ``knn_query``, ``save``/``load``, ...).
- :class:`DurableIndex`: the same in a directory, every write logged before it is applied.
- :class:`BatchError` and its subclasses: typed errors of batch inserts; :class:`RefusedError`
  for a bulk operation by filter refused by ``confirm_count`` or ``max_affected``.

Both index classes keep optional metadata (a dict per vector) and an expiry time per vector:
``add_items(..., metadata=[...], expires_at=...)``, ``get_metadata``, filtered search
(``knn_query(..., filter={"lang": "en", "year": {"$gte": 2000}})``), ``count``,
``delete_where`` / ``update_where`` / ``purge_expired`` with dry runs and safety limits.

Arrays are numpy arrays; C-contiguous ``float32`` input is read in place. Inserts and searches
release the GIL and run on a rayon thread pool (``num_threads=-1``: all cores).
"""

from ._errors import (
    BatchError,
    CancelledError,
    CapacityExceededError,
    DimensionMismatchError,
    DuplicateIdError,
    InvalidVectorError,
    RefusedError,
)
from ._hnsw_batch import (
    MAX_DIM,
    MAX_EF,
    MAX_M,
    MISSING_ID,
    BatchReport,
    DurableIndex,
    Index,
    ProgressEvent,
)

__version__ = "0.1.0"

__all__ = [
    "Index",
    "DurableIndex",
    "BatchReport",
    "ProgressEvent",
    "BatchError",
    "DimensionMismatchError",
    "InvalidVectorError",
    "DuplicateIdError",
    "CapacityExceededError",
    "CancelledError",
    "RefusedError",
    "MISSING_ID",
    "MAX_DIM",
    "MAX_EF",
    "MAX_M",
]
