"""Round trips against brute force, bad inputs, reports, save/load."""

import threading

import numpy as np
import pytest

import hnsw_batch as hb
from conftest import brute_force


@pytest.mark.parametrize("space", ["l2", "cosine", "ip"])
def test_round_trip_matches_brute_force(rng, space):
    n, dim, k = 2000, 16, 10
    X = rng.standard_normal((n, dim)).astype(np.float32)
    if space == "ip":
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    Q = rng.standard_normal((50, dim)).astype(np.float32)
    ids = np.arange(n, dtype=np.uint64) * 3 + 7
    index = hb.Index(space, dim, M=16, ef_construction=100)
    report = index.add_items(X, ids)
    assert (report.total, report.inserted, report.failures) == (n, n, [])
    assert len(index) == n
    got, dist = index.knn_query(Q, k=k, ef=200)
    assert got.shape == (50, k) and got.dtype == np.uint64
    assert dist.shape == (50, k) and dist.dtype == np.float32
    want, want_d = brute_force(X, ids, Q, k, space)
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(got.tolist(), want.tolist())])
    assert recall >= 0.95
    # Distances are the index's own: nearest first, close to the exact ones.
    assert np.all(np.diff(dist, axis=1) >= 0)
    hit = got[:, 0] == want[:, 0]
    np.testing.assert_allclose(dist[hit, 0], want_d[hit, 0], rtol=1e-4, atol=1e-4)


def test_exact_on_small_index_and_single_vector_query(rng):
    X = rng.random((50, 8), dtype=np.float32)
    index = hb.Index("l2", 8)
    index.add_items(X)
    want, _ = brute_force(X, np.arange(50), X[:5], 5)
    got, _ = index.knn_query(X[:5], k=5)
    np.testing.assert_array_equal(got, want)
    one, d = index.knn_query(X[3], k=1)  # a 1-D vector is one query
    assert one.shape == (1, 1) and one[0, 0] == 3 and d[0, 0] == 0.0


def test_other_dtypes_and_layouts_are_converted(rng):
    X = rng.random((40, 6))  # float64
    index = hb.Index("l2", 6)
    index.add_items(X)
    index.add_items(np.asfortranarray(X), ids=np.arange(100, 140))
    index.add_items((X * 100).astype(np.int32), ids=range(200, 240))
    index.add_items(X[:, ::-1].tolist(), ids=list(range(300, 340)))
    assert len(index) == 160
    np.testing.assert_allclose(index.get(5), X[5].astype(np.float32))
    np.testing.assert_allclose(index.get(305), X[5, ::-1].astype(np.float32))
    got, _ = index.knn_query(X[::2][:3], k=1)  # non-contiguous queries
    assert set(got[:, 0]) <= set(range(400))


def test_u8_storage_reads_uint8(rng):
    X = rng.integers(0, 256, (300, 12), dtype=np.uint8)
    index = hb.Index("l2", 12, storage="u8")
    assert index.storage == "u8"
    index.add_items(X)
    np.testing.assert_array_equal(index.get(7), X[7].astype(np.float32))
    got, _ = index.knn_query(X[:4], k=1)
    np.testing.assert_array_equal(got[:, 0], [0, 1, 2, 3])
    with pytest.raises(hb.InvalidVectorError):
        index.add_items(np.full((1, 12), 0.5, np.float32), ids=[1000])


def test_f16_storage_rounds_and_rejects_out_of_range(rng):
    X = rng.standard_normal((300, 12)).astype(np.float32)
    index = hb.Index("l2", 12, storage="f16")
    assert index.storage == "f16"
    index.add_items(X)
    np.testing.assert_array_equal(index.get(7), X[7].astype(np.float16).astype(np.float32))
    got, _ = index.knn_query(X[:4], k=1)
    np.testing.assert_array_equal(got[:, 0], [0, 1, 2, 3])
    with pytest.raises(hb.InvalidVectorError):
        index.add_items(np.full((1, 12), 70000.0, np.float32), ids=[1000])
    assert len(index) == 300


def test_sq8_storage_keeps_originals_and_rescores_exactly(rng):
    X = rng.standard_normal((400, 16)).astype(np.float32)
    index = hb.Index("l2", 16, storage="sq8")
    assert index.storage == "sq8"
    index.add_items(X)  # the first batch trains the 8-bit codes
    np.testing.assert_array_equal(index.get(7), X[7])  # the f32 original, not a decoded code
    got, d = index.knn_query(X[:4], k=1)
    np.testing.assert_array_equal(got[:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(d[:, 0], 0.0)  # re-scored with the exact vectors


def test_to_storage_keeps_the_graph_and_gives_exact_f32(rng):
    X = rng.standard_normal((500, 16)).astype(np.float32)
    sq8 = hb.Index("cosine", 16, storage="sq8")
    sq8.add_items(X)
    f32 = sq8.to_storage("f32")
    assert (f32.storage, sq8.storage, len(f32)) == ("f32", "sq8", 500)
    np.testing.assert_allclose(f32.get(9), X[9] / np.linalg.norm(X[9]), rtol=1e-6)
    got, _ = f32.knn_query(X[:20], k=1, ef=64)
    np.testing.assert_array_equal(got[:, 0], np.arange(20))
    with pytest.raises(ValueError):
        f32.to_storage("u8")  # normalised floats are not bytes
    with pytest.raises(ValueError):
        f32.to_storage("f64")


def test_coded_walk_batch_stores_exact_vectors_and_recalls(rng):
    X = rng.standard_normal((3000, 16)).astype(np.float32)
    Q = rng.standard_normal((40, 16)).astype(np.float32)
    index = hb.Index("l2", 16)
    report = index.add_items(X, coded_walk=True)
    assert report.inserted == 3000
    np.testing.assert_array_equal(index.get(11), X[11])
    got, _ = index.knn_query(Q, k=10, ef=128)
    truth, _ = brute_force(X, np.arange(3000), Q, 10)
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)])
    assert recall >= 0.9, recall


def test_padding_when_fewer_than_k():
    index = hb.Index("l2", 2)
    ids, d = index.knn_query(np.zeros((2, 2), np.float32), k=3)
    assert (ids == hb.MISSING_ID).all() and np.isinf(d).all()
    index.add_items(np.array([[0, 0], [1, 1]], np.float32), ids=[5, 6])
    ids, d = index.knn_query([0.0, 0.0], k=3)
    assert ids.tolist() == [[5, 6, 2**64 - 1]]
    assert d[0, 2] == np.inf


def test_properties_ef_and_repr():
    index = hb.Index("cosine", 5, M=8, ef_construction=40, max_elements=10)
    assert (index.dim, index.space, index.M, index.ef_construction) == (5, "cosine", 8, 40)
    assert index.max_elements == 10 and index.ef == 64
    index.set_ef(7)
    assert index.ef == 7
    assert "cosine" in repr(index)
    with pytest.raises(ValueError):
        index.set_ef(0)


def test_auto_ids_continue_after_largest():
    index = hb.Index("l2", 2)
    index.add_items(np.ones((2, 2)), ids=[10, 3])
    index.add_items(np.zeros((2, 2)))
    assert sorted(index.ids().tolist()) == [3, 10, 11, 12]


def test_contains_get_delete_update():
    index = hb.Index("l2", 3)
    index.add_items(np.arange(12, dtype=np.float32).reshape(4, 3), ids=[1, 2, 3, 4])
    assert 2 in index and 9 not in index and -1 not in index and "x" not in index
    np.testing.assert_array_equal(index.get_items([4, 1]), [[9, 10, 11], [0, 1, 2]])
    with pytest.raises(KeyError):
        index.get(9)
    with pytest.raises(KeyError):
        index.get(-1)
    with pytest.raises(KeyError):
        index.get(2**70)
    with pytest.raises(TypeError):
        index.get("2")
    with pytest.raises(KeyError):
        index.get_items([1, 9])
    with pytest.raises(KeyError):
        index.delete([1, 9])
    assert len(index) == 4  # nothing deleted
    assert index.delete([1, 9], missing_ok=True) == 1
    assert index.delete(2) == 1 and 2 not in index and len(index) == 2
    index.update(np.array([[5, 5, 5]]), [3])
    np.testing.assert_array_equal(index.get(3), [5, 5, 5])
    with pytest.raises(KeyError):
        index.update(np.zeros((1, 3)), [2])
    with pytest.raises(hb.InvalidVectorError):
        index.update(np.array([[np.nan, 0, 0], [1, 1, 1]]), [3, 4])
    np.testing.assert_array_equal(index.get(4), [9, 10, 11])  # all-or-nothing
    got, _ = index.knn_query([5, 5, 5], k=1)
    assert got[0, 0] == 3


def test_save_load(tmp_path, rng):
    X = rng.random((500, 8), dtype=np.float32)
    index = hb.Index("ip", 8, M=12, ef_construction=60)
    index.add_items(X)
    index.delete([0, 1])
    path = tmp_path / "index.hnsw"
    index.save(path)
    loaded = hb.Index.load(str(path))
    assert (len(loaded), loaded.space, loaded.M, loaded.dim) == (498, "ip", 12, 8)
    a = index.knn_query(X[:20], k=5)
    b = loaded.knn_query(X[:20], k=5)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(FileNotFoundError):
        hb.Index.load(tmp_path / "missing")
    (tmp_path / "junk").write_bytes(b"not an index at all")
    with pytest.raises(ValueError):
        hb.Index.load(tmp_path / "junk")


def test_best_effort_report(rng):
    index = hb.Index("l2", 4, max_elements=6)
    index.add_items(np.ones((1, 4)), ids=[99])
    X = rng.random((8, 4)).astype(np.float32)
    X[1, 0] = np.inf
    ids = [0, 1, 2, 2, 99, 5, 6, 7]
    report = index.add_items(X, ids, mode="best_effort")
    assert report.total == 8
    pos = [(p, i, type(e)) for p, i, e in report.failures]
    assert pos[:3] == [
        (1, 1, hb.InvalidVectorError),
        (3, 2, hb.DuplicateIdError),
        (4, 99, hb.DuplicateIdError),
    ]
    # 6 slots, 1 used: 5 of the 5 valid items fit exactly.
    assert report.inserted == 5 and len(index) == 6
    assert pos[3:] == []
    p, i, err = report.failures[1]
    assert err.position == 3 and err.id == 2 and err.first_position == 2
    assert report.failures[2][2].first_position is None
    assert "BatchReport(total=8" in repr(report)
    more = index.add_items(rng.random((2, 4)), ids=[50, 51], mode="best_effort")
    assert more.inserted == 0 and all(isinstance(e, hb.CapacityExceededError) for _, _, e in more.failures)
    with pytest.raises(hb.CapacityExceededError) as info:
        index.add_items(rng.random((2, 4)), ids=[50, 51])
    assert info.value.position == 0 and info.value.id == 50


def test_bad_inputs(rng):
    index = hb.Index("cosine", 4)
    good = rng.random((3, 4))
    with pytest.raises(hb.DimensionMismatchError) as info:
        index.add_items(rng.random((3, 5)))
    assert info.value.expected == 4 and info.value.actual == 5
    with pytest.raises(hb.DimensionMismatchError):
        index.knn_query(rng.random((3, 5)))
    for bad in (np.zeros((2, 2, 4)), np.zeros(()), np.zeros((1, 4), complex), np.array([["a"] * 4]),
                np.array([[object()] * 4]), np.array([[True] * 4]), [[1, 2], [3]]):
        with pytest.raises(ValueError):
            index.add_items(bad)
        with pytest.raises(ValueError):
            index.knn_query(bad)
    nan = good.copy()
    nan[2, 1] = np.nan
    with pytest.raises(hb.InvalidVectorError) as info:
        index.add_items(nan, ids=[0, 1, 2])
    assert (info.value.position, info.value.id) == (2, 2) and len(index) == 0
    with pytest.raises(hb.InvalidVectorError):
        index.add_items(np.zeros((1, 4)), ids=[9])  # zero vector under cosine
    with pytest.raises(hb.DuplicateIdError) as info:
        index.add_items(good, ids=[1, 2, 1])
    assert (info.value.position, info.value.id, info.value.first_position) == (2, 1, 0)
    index.add_items(good, ids=[1, 2, 3])
    with pytest.raises(hb.DuplicateIdError) as info:
        index.add_items(good[:1], ids=[3])
    assert info.value.first_position is None
    with pytest.raises(ValueError):
        index.add_items(good, ids=[1, 2])  # wrong count
    with pytest.raises(ValueError):
        index.add_items(good, ids=[-1, 5, 6])
    with pytest.raises(ValueError):
        index.add_items(good, ids=[1.5, 5, 6])
    with pytest.raises(ValueError):
        index.add_items(good, ids=[4, 5, 6], mode="sometimes")
    with pytest.raises(ValueError):
        index.add_items(good, ids=[4, 5, 6], progress=42)
    with pytest.raises(hb.InvalidVectorError) as info:
        index.knn_query(np.array([[1, 1, 1, 1], [np.inf, 0, 0, 0]]))
    assert info.value.position == 1
    for kwargs in ({"k": 0}, {"k": -3}, {"ef": 0}, {"k": 10**9}, {"num_threads": 0},
                   {"num_threads": -5}, {"num_threads": 10**6}):
        with pytest.raises(ValueError):
            index.knn_query(good, **kwargs)
    assert len(index) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dim": 0}, {"dim": -1}, {"dim": 10**9}, {"M": 1}, {"M": -16}, {"M": 10**6},
        {"ef_construction": 1}, {"max_elements": 0}, {"max_elements": -2}, {"space": "hamming"},
        {"storage": "f64"}, {"space": "cosine", "storage": "u8"},
    ],
)
def test_absurd_parameters(kwargs):
    args = {"space": "l2", "dim": 8, **kwargs}
    with pytest.raises(ValueError):
        hb.Index(**args)


def test_search_while_inserting(rng):
    dim = 8
    first = rng.random((500, dim), dtype=np.float32)
    index = hb.Index("l2", dim, ef_construction=40)
    index.add_items(first)
    rest = rng.random((20000, dim), dtype=np.float32)
    errors = []
    done = threading.Event()

    def searcher():
        try:
            while not done.is_set():
                ids, d = index.knn_query(first[:20], k=5, num_threads=1)
                assert ids.shape == (20, 5)
                assert (ids < 20500).all()
                assert np.all(np.diff(d, axis=1) >= 0)
                assert (ids[:, 0] == np.arange(20)).all()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        report = index.add_items(rest, ids=np.arange(500, 20500), num_threads=2)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert errors == []
    assert report.inserted == 20000 and len(index) == 20500


def test_num_threads_give_the_same_results(rng):
    X = rng.random((3000, 8), dtype=np.float32)
    index = hb.Index("l2", 8, ef_construction=50)
    index.add_items(X, num_threads=1)
    a = index.knn_query(X[:200], k=5, num_threads=1)
    b = index.knn_query(X[:200], k=5, num_threads=-1)
    c = index.knn_query(X[:200], k=5, num_threads=3)
    for x in (b, c):
        np.testing.assert_array_equal(a[0], x[0])
        np.testing.assert_array_equal(a[1], x[1])
