"""Type stubs of the extension module ``hnsw_batch._hnsw_batch`` (re-exported by ``hnsw_batch``)."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, Callable, Literal, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from ._errors import BatchError

MISSING_ID: int
"""The id (``2**64 - 1``) that pads ``knn_query`` rows when fewer than ``k`` neighbours exist;
its distance is ``inf``."""
MAX_DIM: int
"""Largest vector dimension."""
MAX_EF: int
"""Largest beam width (``ef``, ``ef_construction``, and so ``k``)."""
MAX_M: int
"""Largest ``M``."""

Space = Literal["l2", "cosine", "ip"]
StorageName = Literal["f32", "float32", "u8", "uint8", "f16", "float16", "sq8"]
Mode = Literal["all_or_nothing", "best_effort"]
Vectors = npt.ArrayLike
"""A 2-D array ``(n, dim)`` or one 1-D vector; C-contiguous float32 is read without a copy."""
Ids = Union[int, Sequence[int], npt.NDArray[np.integer[Any]]]
Progress = Union[None, bool, Callable[["ProgressEvent"], object]]
PathLike = Union[str, "os.PathLike[str]"]
KnnResult = tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]
MetaValue = Union[str, int, float, bool, list[str]]
Metadata = dict[str, MetaValue]
"""Per-vector metadata: str keys (not empty, not starting with ``$``) to str, int, float, bool or
a list of str."""
Filter = Union[dict[str, Any], str]
"""A filter in the JSON query shape of the CLI, as a dict or its JSON text:
``{"lang": "en", "year": {"$gte": 2000}}``, ``{"$or": [...]}``, ``$in``, ``$ne``, ``$exists``..."""
ExpiresAt = Union[None, int, Sequence[Optional[int]]]
"""Unix milliseconds from which a row is expired: one int for every row, or one (or None) per row."""

class ProgressEvent:
    """A progress event: ``done`` of ``total`` items handled. A callback sees ``done == 0`` first
    and ``done == total`` last (unless the batch stops early), at most every 1 % in between."""

    @property
    def done(self) -> int:
        """Items handled so far."""
    @property
    def total(self) -> int:
        """Items in the batch."""
    @property
    def fraction(self) -> float:
        """``done / total`` (1.0 for an empty batch)."""

class BatchReport:
    """Outcome of ``add_items`` and of the bulk operations by filter (``delete_where``,
    ``update_where``, ``purge_expired``)."""

    @property
    def total(self) -> int:
        """Items in the input (for an operation by filter: the items that matched)."""
    @property
    def ids(self) -> npt.NDArray[np.uint64]:
        """The ids the call changed (ascending for an operation by filter); in a dry run, the ids
        the real call would change."""
    @property
    def dry_run(self) -> bool:
        """Whether nothing was changed: the counts and ``ids`` say what the call would do."""
    @property
    def inserted(self) -> int:
        """Items inserted."""
    @property
    def updated(self) -> int:
        """Items whose vector was replaced."""
    @property
    def deleted(self) -> int:
        """Items deleted."""
    @property
    def not_found(self) -> int:
        """Ids that were not present (by filter: matched, but changed by another thread first)."""
    @property
    def elapsed(self) -> float:
        """Wall-clock time of the call in seconds."""
    @property
    def failures(self) -> list[tuple[int, int, BatchError]]:
        """Rejected items of a best-effort batch, in input order: ``(position, id, error)``."""

class Index:
    """An HNSW index held in memory.

    ``space``: "l2" (squared Euclidean), "cosine" (1 - cosine similarity; vectors are
    normalised), "ip" (1 - inner product). ``storage="u8"`` keeps vectors as bytes (components
    must be integers 0..255; not with "cosine"); ``storage="f16"`` keeps them as half floats (2
    bytes per component, rounded; magnitudes above 65504 are rejected except under "cosine").
    Thread-safe; inserts and searches release the GIL. ``max_elements`` caps the live vectors;
    a cap of at most 8 388 608 also stores links in 3 bytes instead of 4 (32 bytes less per
    vector at M=16).
    """

    def __init__(
        self,
        space: Space,
        dim: int,
        M: int = 16,
        ef_construction: int = 200,
        storage: StorageName = "f32",
        seed: int = 0,
        max_elements: Optional[int] = None,
    ) -> None: ...
    def add_items(
        self,
        data: Vectors,
        ids: Optional[Ids] = None,
        num_threads: int = -1,
        mode: Mode = "all_or_nothing",
        progress: Progress = None,
        metadata: Optional[Sequence[Optional[Metadata]]] = None,
        expires_at: ExpiresAt = None,
        coded_walk: bool = False,
    ) -> BatchReport:
        """Inserts the rows of ``data`` under ``ids`` (default: consecutive after the largest id).
        ``coded_walk=True`` (f32/f16 storage, at least 1 024 rows): candidates are found on
        temporary 8-bit codes, about a third faster for float embeddings with the same recall,
        for ``dim + 5`` bytes per vector more during the call.

        "all_or_nothing" raises the first bad item's ``BatchError`` and inserts nothing;
        "best_effort" inserts the valid items and reports the others in ``failures``.
        ``progress=True`` shows a bar (tqdm if installed); a callable receives ``ProgressEvent``s.
        Ctrl-C or an exception in the callback stops the batch, keeps what was inserted, and
        is raised. ``metadata``: one dict (or None) per row; a row whose metadata breaks the
        index's rules is that row's ``InvalidVectorError``. ``expires_at``: see ``ExpiresAt``.
        """
    def knn_query(
        self,
        data: Vectors,
        k: int = 10,
        ef: Optional[int] = None,
        num_threads: int = -1,
        filter: Optional[Filter] = None,
    ) -> KnnResult:
        """``(ids, distances)`` of shape ``(n, k)``, nearest first; rows are padded with
        ``MISSING_ID`` / ``inf`` when fewer than ``k`` vectors exist. ``ef`` defaults to
        ``self.ef`` and is raised to ``k`` when smaller. With ``filter``, only vectors whose
        metadata matches it (``ValueError`` naming the path of a bad filter)."""
    def get_metadata(self, id: int) -> Metadata:
        """The metadata of ``id`` (``{}`` when it has none); ``KeyError`` if absent or expired."""
    def update_metadata(self, id: int, values: dict[str, Optional[MetaValue]]) -> None:
        """Sets the keys of ``values`` on ``id``'s metadata; a key set to None is removed.
        ``ValueError`` (nothing changed) if the result breaks the index's limits."""
    def get_expiry(self, id: int) -> Optional[int]:
        """Expiry time of ``id`` in unix ms, or None; ``KeyError`` if absent or expired."""
    def set_expiry(self, id: int, expires_at: Optional[int]) -> None:
        """Sets (None: clears) the expiry time of ``id``; ``KeyError`` if absent."""
    def set_clock(self, now_ms: Optional[int] = None) -> None:
        """Reads expiry against the fixed time ``now_ms``; None: the system clock."""
    def count(self, filter: Filter) -> int:
        """Live, unexpired vectors whose metadata matches ``filter``."""
    def delete_where(
        self,
        filter: Filter,
        *,
        dry_run: bool = False,
        confirm_count: Optional[int] = None,
        max_affected: Optional[int] = None,
        batch_size: int = 0,
    ) -> BatchReport:
        """Deletes the vectors matching ``filter``. ``dry_run`` returns the report of the real
        call and changes nothing; ``confirm_count`` / ``max_affected`` raise ``RefusedError``
        (nothing changed) unless exactly that many / at most that many match. Never deletes
        more than a dry run on the same state reports."""
    def update_where(
        self,
        filter: Filter,
        values: dict[str, Optional[MetaValue]],
        *,
        dry_run: bool = False,
        confirm_count: Optional[int] = None,
        max_affected: Optional[int] = None,
        batch_size: int = 0,
    ) -> BatchReport:
        """Sets (None: removes) the keys of ``values`` on every vector matching ``filter``, with
        the options of ``delete_where``."""
    def purge_expired(
        self,
        *,
        dry_run: bool = False,
        confirm_count: Optional[int] = None,
        max_affected: Optional[int] = None,
        batch_size: int = 0,
    ) -> BatchReport:
        """Deletes the vectors whose expiry time has passed, with the options of
        ``delete_where``."""
    def create_field_index(self, field: str) -> None:
        """Indexes a metadata field, so filters on it are sized exactly and faster."""
    def delete(self, ids: Ids, missing_ok: bool = False) -> int:
        """Deletes ``ids``; returns how many were deleted. ``KeyError`` (and nothing deleted) if
        one is absent, unless ``missing_ok``."""
    def update(self, data: Vectors, ids: Ids, num_threads: int = -1) -> None:
        """Replaces the vectors of ``ids``; all-or-nothing (``KeyError`` for an absent id)."""
    def get(self, id: int) -> npt.NDArray[np.float32]:
        """The stored vector of ``id`` (normalised under "cosine"); ``KeyError`` if absent."""
    def get_items(self, ids: Ids) -> npt.NDArray[np.float32]:
        """The stored vectors of ``ids``, shape ``(n, dim)``; ``KeyError`` if one is absent."""
    def ids(self) -> npt.NDArray[np.uint64]:
        """The ids present (in no particular order)."""
    def set_ef(self, ef: int) -> None:
        """Sets the default ``ef`` of ``knn_query`` (kept in this object, not saved)."""
    @property
    def ef(self) -> int:
        """Default ``ef`` of ``knn_query`` (initially 64)."""
    def save(self, path: PathLike) -> None:
        """Writes a snapshot file atomically."""
    @staticmethod
    def load(path: PathLike) -> Index:
        """Reads a snapshot written by ``save``. ``FileNotFoundError``/``OSError`` for I/O
        errors, ``ValueError`` for a damaged or foreign file."""
    def to_storage(self, storage: str) -> Index:
        """A new index with the same graph, ids, metadata and expiry times, its vectors stored
        as ``storage`` ("f32", "u8", "f16" or "sq8"); this one is unchanged. ``ValueError`` if a
        vector cannot be stored that way (``u8`` holds integers 0..=255)."""
    @property
    def dim(self) -> int:
        """Vector dimension."""
    @property
    def space(self) -> Space:
        """Distance name."""
    @property
    def M(self) -> int:
        """Links per node on the upper levels (level 0 has ``2 * M``)."""
    @property
    def ef_construction(self) -> int:
        """Beam width while inserting."""
    @property
    def storage(self) -> StorageName:
        """Element type of stored vectors."""
    @property
    def max_elements(self) -> Optional[int]:
        """Cap on live vectors, or None."""
    @property
    def memory_bytes(self) -> int:
        """Approximate heap memory in bytes."""
    def __len__(self) -> int:
        """Number of vectors present."""
    def __contains__(self, id: object) -> bool:
        """Whether ``id`` is present."""

class DurableIndex:
    """An index in directory ``path`` whose writes are logged (and synced, by default) before
    they are applied; reopening recovers every acknowledged write. An existing directory keeps
    its parameters (``space``, ``dim`` and ``storage`` must match). One open object per directory;
    ``close()`` or a ``with`` block releases it."""

    def __init__(
        self,
        path: PathLike,
        space: Space,
        dim: int,
        M: int = 16,
        ef_construction: int = 200,
        storage: StorageName = "f32",
        seed: int = 0,
        max_elements: Optional[int] = None,
        sync: Literal["every_batch", "interval", "never"] = "every_batch",
        sync_interval_ms: Optional[int] = None,
        checkpoint_log_bytes: Optional[int] = 268435456,
    ) -> None: ...
    def add_items(
        self,
        data: Vectors,
        ids: Optional[Ids] = None,
        num_threads: int = -1,
        mode: Mode = "all_or_nothing",
        progress: Progress = None,
        metadata: Optional[Sequence[Optional[Metadata]]] = None,
        expires_at: ExpiresAt = None,
        coded_walk: bool = False,
    ) -> BatchReport:
        """Like ``Index.add_items``; the batch (with its metadata and expiry) is logged with one
        append and one sync first. Once logged it is applied whole: Ctrl-C is raised after it."""
    def knn_query(
        self,
        data: Vectors,
        k: int = 10,
        ef: Optional[int] = None,
        num_threads: int = -1,
        filter: Optional[Filter] = None,
    ) -> KnnResult:
        """Like ``Index.knn_query``."""
    def get_metadata(self, id: int) -> Metadata:
        """The metadata of ``id`` (``{}`` when it has none); ``KeyError`` if absent or expired."""
    def update_metadata(self, id: int, values: dict[str, Optional[MetaValue]]) -> None:
        """Sets the keys of ``values`` on ``id``'s metadata; a key set to None is removed.
        ``ValueError`` (nothing changed) if the result breaks the index's limits."""
    def get_expiry(self, id: int) -> Optional[int]:
        """Expiry time of ``id`` in unix ms, or None; ``KeyError`` if absent or expired."""
    def set_expiry(self, id: int, expires_at: Optional[int]) -> None:
        """Sets (None: clears) the expiry time of ``id``; ``KeyError`` if absent."""
    def set_clock(self, now_ms: Optional[int] = None) -> None:
        """Reads expiry against the fixed time ``now_ms``; None: the system clock."""
    def count(self, filter: Filter) -> int:
        """Live, unexpired vectors whose metadata matches ``filter``."""
    def delete_where(
        self,
        filter: Filter,
        *,
        dry_run: bool = False,
        confirm_count: Optional[int] = None,
        max_affected: Optional[int] = None,
        batch_size: int = 0,
    ) -> BatchReport:
        """Deletes the vectors matching ``filter``, logged ``batch_size`` ids per append and sync
        (0: all at once; an I/O error after the first batch carries ``committed``, the report of
        the batches done). ``dry_run`` returns the report of the real call and changes nothing;
        ``confirm_count`` / ``max_affected`` raise ``RefusedError`` (nothing changed) unless
        exactly that many / at most that many match. Never deletes more than a dry run on the
        same state reports."""
    def update_where(
        self,
        filter: Filter,
        values: dict[str, Optional[MetaValue]],
        *,
        dry_run: bool = False,
        confirm_count: Optional[int] = None,
        max_affected: Optional[int] = None,
        batch_size: int = 0,
    ) -> BatchReport:
        """Sets (None: removes) the keys of ``values`` on every vector matching ``filter``, with
        the options of ``delete_where``."""
    def purge_expired(
        self,
        *,
        dry_run: bool = False,
        confirm_count: Optional[int] = None,
        max_affected: Optional[int] = None,
        batch_size: int = 0,
    ) -> BatchReport:
        """Deletes the vectors whose expiry time has passed, with the options of
        ``delete_where``."""
    def create_field_index(self, field: str) -> None:
        """Indexes a metadata field, so filters on it are sized exactly and faster."""
    def delete(self, ids: Ids, missing_ok: bool = False) -> int:
        """Like ``Index.delete``, with one log record."""
    def update(self, data: Vectors, ids: Ids) -> None:
        """Replaces vectors; every row and id is checked before the first change."""
    def get(self, id: int) -> npt.NDArray[np.float32]:
        """Like ``Index.get``."""
    def get_items(self, ids: Ids) -> npt.NDArray[np.float32]:
        """Like ``Index.get_items``."""
    def ids(self) -> npt.NDArray[np.uint64]:
        """The ids present."""
    def checkpoint(self) -> None:
        """Writes a snapshot and starts a new, empty log."""
    def sync(self) -> None:
        """Makes every acknowledged write durable (for ``sync="interval"``/``"never"``)."""
    def save(self, path: PathLike) -> None:
        """Writes a standalone snapshot file that ``Index.load`` reads."""
    def close(self) -> None:
        """Releases the directory; later calls raise ``ValueError``."""
    def recovery_report(self) -> dict[str, Any]:
        """What opening the directory found and replayed."""
    def set_ef(self, ef: int) -> None:
        """Sets the default ``ef`` of ``knn_query``."""
    @property
    def ef(self) -> int:
        """Default ``ef`` of ``knn_query``."""
    @property
    def path(self) -> "os.PathLike[str]":
        """The directory (a pathlib.Path)."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    @property
    def dim(self) -> int:
        """Vector dimension."""
    @property
    def space(self) -> Space:
        """Distance name."""
    @property
    def M(self) -> int:
        """Links per node on the upper levels."""
    @property
    def ef_construction(self) -> int:
        """Beam width while inserting."""
    @property
    def storage(self) -> StorageName:
        """Element type of stored vectors."""
    def __len__(self) -> int:
        """Number of vectors present."""
    def __contains__(self, id: object) -> bool:
        """Whether ``id`` is present."""
    def __enter__(self) -> DurableIndex: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
