"""DurableIndex: writes survive reopening."""

import numpy as np
import pytest

import hnsw_batch as hb


def test_reopen_recovers(tmp_path, rng):
    path = tmp_path / "db"
    X = rng.random((400, 6), dtype=np.float32)
    d = hb.DurableIndex(path, "l2", 6, M=8, ef_construction=40)
    assert d.recovery_report()["created"] is True
    report = d.add_items(X[:300], ids=np.arange(300))
    assert report.inserted == 300
    d.delete([0, 1])
    d.update(np.full((1, 6), 7.0), [5])
    d.close()
    assert d.closed
    with pytest.raises(ValueError):
        len(d)

    d = hb.DurableIndex(path, "l2", 6)
    assert d.recovery_report()["records_replayed"] >= 3
    assert len(d) == 298 and 0 not in d and 2 in d
    np.testing.assert_array_equal(d.get(5), np.full(6, 7.0, np.float32))
    assert d.M == 8  # the parameters it was created with
    d.checkpoint()
    d.add_items(X[300:], ids=np.arange(300, 400))
    got, _ = d.knn_query(X[350:360], k=1)
    assert (got[:, 0] == np.arange(350, 360)).all()
    d.save(tmp_path / "snap.hnsw")
    d.close()

    with hb.DurableIndex(path, "l2", 6) as d:
        assert len(d) == 398
        assert d.recovery_report()["snapshot_generation"] >= 1
    snap = hb.Index.load(tmp_path / "snap.hnsw")
    assert len(snap) == 398


def test_durable_errors(tmp_path, rng):
    path = tmp_path / "db"
    with hb.DurableIndex(path, "cosine", 4) as d:
        with pytest.raises(OSError):
            hb.DurableIndex(path, "cosine", 4)  # locked
        X = rng.random((5, 4))
        X[3] = 0.0
        with pytest.raises(hb.InvalidVectorError) as info:
            d.add_items(X)
        assert info.value.position == 3 and len(d) == 0
        report = d.add_items(X, ids=[1, 2, 3, 4, 5], mode="best_effort")
        assert report.inserted == 4 and report.failures[0][:2] == (3, 4)
        with pytest.raises(hb.DuplicateIdError):
            d.add_items(X[:1], ids=[1])
        with pytest.raises(KeyError):
            d.delete([9])
        with pytest.raises(hb.InvalidVectorError):
            d.update(np.array([[1, 1, 1, 1], [0, 0, 0, 0]]), [1, 2])
        np.testing.assert_allclose(d.get(1), X[0] / np.linalg.norm(X[0]), rtol=1e-5)
        with pytest.raises(KeyError):
            d.update(np.ones((1, 4)), [4])
    with pytest.raises(ValueError):
        hb.DurableIndex(path, "cosine", 5)  # dimension differs from the directory's
    with pytest.raises(ValueError):
        hb.DurableIndex(path, "l2", 4, sync="sometimes")


def test_sync_policies(tmp_path, rng):
    for sync, ms in (("never", None), ("interval", 10)):
        with hb.DurableIndex(tmp_path / sync, "ip", 3, sync=sync, sync_interval_ms=ms) as d:
            d.add_items(rng.random((10, 3)))
            d.sync()
        with hb.DurableIndex(tmp_path / sync, "ip", 3) as d:
            assert len(d) == 10


def test_default_ef_is_the_index_setting(tmp_path, rng):
    X = rng.random((200, 4), dtype=np.float32)
    with hb.DurableIndex(tmp_path / "db", "l2", 4, M=8) as d:
        d.add_items(X, ids=np.arange(200))
        assert d.ef == 64
        d.set_ef(9)
        assert d.ef == 9
        with pytest.raises(ValueError):
            d.set_ef(0)
        with pytest.raises(ValueError):
            d.set_ef(-3)
        assert d.ef == 9
        got, _ = d.knn_query(X[:5], k=1)  # ef 9
        assert (got[:, 0] == np.arange(5)).all()
    with pytest.raises(ValueError):
        d.ef  # closed
