"""hnsw-batch: an HNSW approximate nearest-neighbour index built for bulk loads.

- :class:`Index`: the in-memory index (``add_items``, ``knn_query``, ``save``/``load``, ...).
- :class:`DurableIndex`: the same in a directory, every write logged before it is applied.
- :class:`BatchError` and its subclasses: typed errors of batch inserts.

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
    "MISSING_ID",
    "MAX_DIM",
    "MAX_EF",
    "MAX_M",
]
