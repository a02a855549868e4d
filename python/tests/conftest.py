import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def brute_force(base, ids, queries, k, space="l2"):
    """Exact k nearest ids of each query (ties broken by id), like the index's distances."""
    base = np.asarray(base, np.float64)
    queries = np.asarray(queries, np.float64)
    if space == "l2":
        d = ((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1)
    elif space == "cosine":
        b = base / np.linalg.norm(base, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        d = 1.0 - q @ b.T
    else:
        d = 1.0 - queries @ base.T
    ids = np.asarray(ids)
    order = np.lexsort((np.broadcast_to(ids, d.shape), d), axis=1)[:, :k]
    return ids[order], np.take_along_axis(d, order, axis=1)
