"""Metadata, filters and expiry from Python: on insert, filtered search, count, bulk operations by
filter with dry runs and guards, expiry and purge, on both index classes."""

import numpy as np
import pytest

import hnsw_batch as hb

LANGS = ["en", "fr", "de"]


def meta_of(i):
    m = {"lang": LANGS[i % 3], "year": 1990 + i % 30, "score": i / 8}
    if i % 5 == 0:
        m["tags"] = ["a", "b"]
    if i % 7 == 0:
        m["draft"] = True
    return m


def matches(m, lang=None, min_year=None):
    return (lang is None or m["lang"] == lang) and (min_year is None or m["year"] >= min_year)


def make(kind, tmp_path, dim=4):
    if kind == "plain":
        return hb.Index("l2", dim, M=8, ef_construction=40)
    return hb.DurableIndex(tmp_path / "db", "l2", dim, M=8, ef_construction=40)


@pytest.fixture(params=["plain", "durable"])
def kind(request):
    return request.param


def filled(kind, tmp_path, rng, n=300):
    index = make(kind, tmp_path)
    X = rng.random((n, 4), dtype=np.float32)
    report = index.add_items(X, ids=np.arange(n), metadata=[meta_of(i) for i in range(n)])
    assert report.inserted == n and report.dry_run is False
    assert report.ids.tolist() == list(range(n))
    return index, X


def test_metadata_round_trips_and_is_typed(kind, tmp_path, rng):
    index, _ = filled(kind, tmp_path, rng)
    for i in [0, 1, 7, 35, 299]:
        got = index.get_metadata(i)
        assert got == meta_of(i)
        assert type(got["year"]) is int and type(got["score"]) is float
    assert 0 in index and index.get_metadata(0)["tags"] == ["a", "b"]
    with pytest.raises(KeyError):
        index.get_metadata(10_000)
    # Rows without metadata read back an empty dict; None in the list means none.
    index.add_items(np.zeros((2, 4)), ids=[500, 501], metadata=[None, {"lang": "en"}])
    assert index.get_metadata(500) == {} and index.get_metadata(501) == {"lang": "en"}
    # Patches: set and remove keys.
    index.update_metadata(1, {"reviewed": True, "score": None})
    want = dict(meta_of(1), reviewed=True)
    del want["score"]
    assert index.get_metadata(1) == want


def test_bad_metadata_is_refused_and_changes_nothing(kind, tmp_path, rng):
    index, _ = filled(kind, tmp_path, rng, n=10)
    X = rng.random((3, 4), dtype=np.float32)
    for bad, exc in [
        ({"$reserved": 1}, hb.InvalidVectorError),  # the index refuses the row
        ({"big": "x" * 100_000}, hb.InvalidVectorError),  # over the index's limits
        ({"nested": {"a": 1}}, TypeError),  # not metadata at all
        ({"mixed": ["a", 1]}, TypeError),
        ({"big": 2**70}, ValueError),  # refused while converting
        ({"x": float("nan")}, ValueError),
        ({1: "int key"}, TypeError),
        ({"obj": object()}, TypeError),
    ]:
        with pytest.raises(exc):
            index.add_items(X, ids=[20, 21, 22], metadata=[{"ok": 1}, bad, None])
        assert len(index) == 10 and 20 not in index, bad
    with pytest.raises(ValueError):
        index.add_items(X, ids=[20, 21, 22], metadata=[{"ok": 1}])  # one per row
    with pytest.raises(TypeError):
        index.add_items(X, ids=[20, 21, 22], metadata={"lang": "en"})  # not a list
    # Best effort: the bad row alone is reported.
    report = index.add_items(X, ids=[20, 21, 22], metadata=[{"ok": 1}, {"$x": 1}, None], mode="best_effort")
    assert report.inserted == 2 and [f[:2] for f in report.failures] == [(1, 21)]
    assert isinstance(report.failures[0][2], hb.InvalidVectorError)
    with pytest.raises(ValueError):
        index.update_metadata(20, {"blob": "x" * 100_000})
    assert index.get_metadata(20) == {"ok": 1}


def test_filtered_search_returns_the_nearest_matching(kind, tmp_path, rng):
    index, X = filled(kind, tmp_path, rng)
    Q = rng.random((20, 4), dtype=np.float32)
    for flt, pred in [
        ({"lang": "en"}, lambda m: m["lang"] == "en"),
        ({"lang": "fr", "year": {"$gte": 2010}}, lambda m: matches(m, "fr", 2010)),
        ('{"$or": [{"draft": true}, {"tags": "a"}]}', lambda m: m.get("draft") or "tags" in m),
    ]:
        keep = np.array([i for i in range(len(X)) if pred(meta_of(i))])
        got, dist = index.knn_query(Q, k=5, ef=200, filter=flt)
        # Exact answer among the matching rows (small sets are scanned exactly).
        d = ((Q[:, None, :] - X[keep][None, :, :]) ** 2).sum(-1)
        want = keep[np.argsort(d, axis=1)[:, :5]]
        assert set(got.ravel().tolist()) <= set(keep.tolist()), flt
        hits = sum(len(set(g) & set(w)) for g, w in zip(got.tolist(), want.tolist()))
        assert hits >= 0.95 * want.size, (flt, hits)
        assert index.count(flt) == len(keep), flt
    with pytest.raises(ValueError, match=r"year\.\$gte"):
        index.knn_query(Q, k=5, filter={"year": {"$gte": "2000"}})
    with pytest.raises(TypeError):
        index.knn_query(Q, k=5, filter=["lang", "en"])
    # A field index changes nothing in the answers.
    before = index.knn_query(Q, k=5, ef=200, filter={"lang": "de"})[0]
    index.create_field_index("lang")
    assert (index.knn_query(Q, k=5, ef=200, filter={"lang": "de"})[0] == before).all()


def test_delete_where_dry_run_guards_and_report(kind, tmp_path, rng):
    index, _ = filled(kind, tmp_path, rng)
    flt = {"lang": "de", "year": {"$lt": 2000}}
    doomed = [i for i in range(300) if meta_of(i)["lang"] == "de" and meta_of(i)["year"] < 2000]
    assert len(doomed) > 5
    plan = index.delete_where(flt, dry_run=True)
    assert plan.dry_run is True and plan.ids.tolist() == doomed
    assert (plan.total, plan.deleted, plan.not_found) == (len(doomed), len(doomed), 0)
    assert len(index) == 300
    with pytest.raises(hb.RefusedError) as info:
        index.delete_where(flt, confirm_count=len(doomed) - 1)
    assert (info.value.found, info.value.expected, info.value.limit) == (len(doomed), len(doomed) - 1, None)
    with pytest.raises(hb.RefusedError) as info:
        index.delete_where(flt, max_affected=3)
    assert (info.value.found, info.value.limit) == (len(doomed), 3)
    assert len(index) == 300
    done = index.delete_where(flt, confirm_count=plan.deleted, batch_size=4)
    assert done.dry_run is False and done.ids.tolist() == doomed and done.deleted == len(doomed)
    assert len(index) == 300 - len(doomed) and index.count(flt) == 0
    assert all(i not in index for i in doomed)
    # update_where: the same report shape, counted in `updated`.
    plan = index.update_where({"lang": "en"}, {"seen": True}, dry_run=True)
    assert plan.dry_run and plan.updated == plan.total == index.count({"lang": "en"})
    assert index.count({"seen": True}) == 0
    done = index.update_where({"lang": "en"}, {"seen": True, "score": None})
    assert done.updated == plan.updated and (done.ids == plan.ids).all()
    assert index.count({"seen": True}) == plan.updated
    assert "score" not in index.get_metadata(int(done.ids[0]))


def test_expiry_hides_and_purges(kind, tmp_path, rng):
    index = make(kind, tmp_path)
    index.set_clock(1_000)
    X = rng.random((40, 4), dtype=np.float32)
    expires = [2_000 + i if i % 4 == 0 else None for i in range(40)]
    index.add_items(X, ids=np.arange(40), expires_at=expires)
    index.add_items(X[:5] + 1, ids=np.arange(100, 105), expires_at=5_000)  # one time for all rows
    assert index.get_expiry(0) == 2_000 and index.get_expiry(1) is None and index.get_expiry(104) == 5_000
    assert index.get_metadata(0) == {}
    index.set_expiry(1, 1_500)
    index.set_clock(2_004)  # ids 0, 1 and 4 have expired
    for gone in [0, 1, 4]:
        with pytest.raises(KeyError):
            index.get_metadata(gone)
        with pytest.raises(KeyError):
            index.get_expiry(gone)
    got, _ = index.knn_query(X[[0, 1, 4]], k=1)
    assert not set(got.ravel().tolist()) & {0, 1, 4}
    plan = index.purge_expired(dry_run=True)
    assert plan.dry_run and plan.ids.tolist() == [0, 1, 4]
    with pytest.raises(hb.RefusedError):
        index.purge_expired(max_affected=2)
    done = index.purge_expired(batch_size=2)
    assert (done.deleted, done.ids.tolist()) == (3, [0, 1, 4])
    assert len(index) == 42
    with pytest.raises((TypeError, ValueError)):
        index.add_items(X[:1], ids=[200], expires_at=-5)
    with pytest.raises(TypeError):
        index.add_items(X[:1], ids=[200], expires_at=1.5)
    with pytest.raises(ValueError):
        index.add_items(X[:2], ids=[200, 201], expires_at=[1])
    assert 200 not in index


def test_durable_metadata_survives_reopen(tmp_path, rng):
    path = tmp_path / "db"
    X = rng.random((50, 4), dtype=np.float32)
    with hb.DurableIndex(path, "l2", 4) as d:
        d.set_clock(0)
        d.add_items(X, ids=np.arange(50), metadata=[meta_of(i) for i in range(50)],
                    expires_at=[10**13 if i % 2 else None for i in range(50)])
        d.create_field_index("lang")
        d.update_where({"lang": "en"}, {"seen": True}, batch_size=3)
        d.delete_where({"lang": "fr"})
        d.update_metadata(2, {"note": "hi"})
        d.set_expiry(3, None)
        want = {i: d.get_metadata(i) for i in d.ids().tolist()}
        assert len(want) == 50 - len([i for i in range(50) if i % 3 == 1])
    with hb.DurableIndex(path, "l2", 4) as d:
        assert {i: d.get_metadata(i) for i in d.ids().tolist()} == want
        assert d.get_metadata(2)["note"] == "hi" and d.get_expiry(3) is None and d.get_expiry(5) == 10**13
        assert d.count({"seen": True}) == len([i for i in want if i % 3 == 0])


def test_report_repr_and_ids():
    index = hb.Index("l2", 2)
    r = index.add_items(np.eye(2), ids=[7, 9], metadata=[{"a": 1}, {"a": 2}])
    assert r.ids.dtype == np.uint64 and r.ids.tolist() == [7, 9]
    assert "dry_run=False" in repr(index.delete_where({"a": 1}, dry_run=False))
    assert "dry_run=True" in repr(index.delete_where({"a": 2}, dry_run=True))
