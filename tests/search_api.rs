//! The search API around the graph walk: the default beam width (`set_ef`, `ef = None`), the
//! flat batch search against per-query `search`, and the read-only view a durable index lends.

mod common;
use common::*;
use hnsw_batch::persist::{DurableIndex, DurableOptions, MemBackend};
use hnsw_batch::*;
use std::sync::Arc;

const DIM: usize = 8;

fn built(n: usize, seed: u64) -> (Index, Vec<Vec<f32>>) {
    let base = clustered(n, DIM, seed);
    let index = Index::new(IndexConfig::new(DIM, Metric::L2).m(8).ef_construction(64).ef_search(24)).unwrap();
    let items: Vec<(u64, &[f32])> = base.iter().enumerate().map(|(i, v)| (i as u64, v.as_slice())).collect();
    index.insert_batch(&items, &BatchOptions::new()).unwrap();
    (index, base)
}

/// The default starts at `IndexConfig::ef_search`, and a search given `None` walks with exactly
/// the default (same results and the same work as passing it), raised to `k` when smaller.
/// Catches `None` meaning `k` (or the config's value after `set_ef`), and a default that is not
/// raised to `k` (an error for `k` above it).
#[test]
fn searches_without_ef_use_the_default() {
    let (index, base) = built(3000, 1);
    assert_eq!(index.ef(), 24, "not initialised from ef_search");
    let q = &base[17];
    let work = |ef: Option<usize>| index.search_with_stats(q, 5, ef).unwrap();
    assert_eq!(work(None), work(Some(24)));
    index.set_ef(200).unwrap();
    assert_eq!(index.ef(), 200);
    assert_eq!(work(None), work(Some(200)));
    assert_ne!(work(None).1, work(Some(5)).1, "ef 200 and ef 5 did the same work");
    assert_eq!(index.search(q, 5, None).unwrap(), work(Some(200)).0);
    // k above the default: the beam is raised to k instead of failing.
    index.set_ef(3).unwrap();
    let (hits, stats) = index.search_with_stats(q, 40, None).unwrap();
    assert_eq!(hits.len(), 40);
    assert_eq!((hits.clone(), stats), index.search_with_stats(q, 40, 40).unwrap());
    // The batch forms and the filtered ones take the default too.
    index.set_ef(64).unwrap();
    let rows = &base[..20];
    let want: Vec<Vec<Neighbour>> = rows.iter().map(|r| index.search(r, 3, 64).unwrap()).collect();
    assert_eq!(index.search_batch(rows, 3, None).unwrap(), want);
    assert_eq!(index.search_filtered(q, 3, None, |_| true).unwrap(), want[17]);
    assert_eq!(index.search_where(q, 3, None, &Filter::not(Filter::exists("absent"))).unwrap(), want[17]);
}

/// `set_ef` refuses 0 and more than `MAX_EF` with a typed error and keeps the old default.
/// Catches a missing check (either bound) or one that changes the value before refusing.
#[test]
fn set_ef_is_validated() {
    let index = Index::new(IndexConfig::new(2, Metric::L2)).unwrap();
    assert_eq!(index.ef(), 64);
    for bad in [0, MAX_EF + 1, usize::MAX] {
        let e = index.set_ef(bad).unwrap_err();
        assert!(matches!(e, IndexError::InvalidParameter { name: "ef", .. }), "{bad}: {e}");
        assert_eq!(index.ef(), 64, "{bad} changed the default");
    }
    assert_eq!(
        index.set_ef(0).unwrap_err().to_string(),
        format!("invalid parameter `ef`: must be in 1..={MAX_EF}, got 0")
    );
    index.set_ef(MAX_EF).unwrap();
    index.set_ef(1).unwrap();
    assert_eq!(index.ef(), 1);
    // A given ef is still checked against k.
    assert!(matches!(index.search(&[0.0, 0.0], 5, 4), Err(IndexError::InvalidParameter { name: "ef", .. })));
}

/// Every row of the flat batch search holds what `search` returns for that row, padded to `k`
/// with `MISSING_ID` and infinity; `found` counts the real results. Run on two threads over a
/// mix of query counts. Catches rows written out of order, a wrong stride, and padding that
/// is missing or overwrites results.
#[test]
fn flat_batch_search_matches_per_query_search() {
    let (index, base) = built(2000, 2);
    let queries = clustered(37, DIM, 99);
    let flat: Vec<f32> = queries.iter().flatten().copied().collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for (k, ef) in [(1, Some(16)), (10, None), (25, Some(40))] {
        let r = pool.install(|| index.search_batch_flat(&flat, k, ef)).unwrap();
        assert_eq!((r.k, r.len(), r.ids.len(), r.distances.len()), (k, 37, 37 * k, 37 * k));
        for (i, q) in queries.iter().enumerate() {
            let want = index.search(q, k, ef).unwrap();
            assert_eq!(r.found[i], k);
            let ids: Vec<u64> = want.iter().map(|n| n.id).collect();
            let dists: Vec<f32> = want.iter().map(|n| n.distance).collect();
            assert_eq!(&r.ids[i * k..(i + 1) * k], ids.as_slice(), "row {i}, k {k}");
            assert_eq!(&r.distances[i * k..(i + 1) * k], dists.as_slice(), "row {i}, k {k}");
            assert_eq!(r.row(i), Some((ids.as_slice(), dists.as_slice())));
        }
        assert_eq!(r.row(37), None);
        // The list form gives the same rows.
        let lists = pool.install(|| index.search_batch(&queries, k, ef)).unwrap();
        let from_lists: Vec<u64> = lists.iter().flatten().map(|n| n.id).collect();
        assert_eq!(from_lists, r.ids);
    }
    // Fewer live vectors than k: real results first, then padding.
    let small = Index::new(IndexConfig::new(DIM, Metric::L2)).unwrap();
    small.insert(41, &base[0]).unwrap();
    small.insert(42, &base[1]).unwrap();
    let r = small.search_batch_flat(&flat[..2 * DIM], 4, None).unwrap();
    assert_eq!(r.found, [2, 2]);
    for (i, q) in queries.iter().take(2).enumerate() {
        let want = small.search(q, 4, None).unwrap();
        assert_eq!(r.ids[i * 4..i * 4 + 2], [want[0].id, want[1].id]);
        assert_eq!(r.ids[i * 4 + 2..i * 4 + 4], [MISSING_ID; 2]);
        assert_eq!(r.distances[i * 4 + 2..i * 4 + 4], [f32::INFINITY; 2]);
        assert!(r.distances[i * 4..i * 4 + 2].iter().all(|d| d.is_finite()));
    }
    // An empty index pads everything; no queries give no rows.
    let empty = Index::new(IndexConfig::new(DIM, Metric::L2)).unwrap();
    let r = empty.search_batch_flat(&flat[..DIM], 3, None).unwrap();
    assert_eq!((r.ids, r.found), (vec![MISSING_ID; 3], vec![0]));
    let r = index.search_batch_flat(&[], 3, None).unwrap();
    assert!(r.is_empty() && r.ids.is_empty() && r.distances.is_empty());
}

/// Bad input to the batch searches: a length that is not a whole number of rows is its own
/// typed error; bad rows report the first bad row's error (whichever thread meets which first),
/// and bad `k`/`ef` are refused before any row is searched.
#[test]
fn batch_search_errors_are_typed_and_first() {
    let index = Index::new(IndexConfig::new(3, Metric::Cosine)).unwrap();
    for i in 0..50 {
        index.insert(i, &[1.0, i as f32, 2.0]).unwrap();
    }
    let e = index.search_batch_flat(&[1.0; 7], 1, None).unwrap_err();
    assert_eq!(e, IndexError::MatrixLength { len: 7, dim: 3 });
    assert_eq!(e.to_string(), "a matrix of 7 values is not a whole number of rows of dimension 3");
    // Row 40 holds NaN, rows 41.. are zero vectors (refused under cosine): NaN comes first.
    let mut rows = vec![vec![1.0f32, 2.0, 3.0]; 200];
    rows[40][1] = f32::NAN;
    for r in &mut rows[41..] {
        *r = vec![0.0; 3];
    }
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for _ in 0..5 {
        let nan = IndexError::NonFiniteValue { component: 1, value: f32::NAN };
        let e = pool.install(|| index.search_batch_flat(&flat, 2, None)).unwrap_err();
        assert!(matches!(e, IndexError::NonFiniteValue { component: 1, .. }), "{e} (want {nan})");
        let e = pool.install(|| index.search_batch(&rows, 2, None)).unwrap_err();
        assert!(matches!(e, IndexError::NonFiniteValue { component: 1, .. }), "{e}");
    }
    let ok = vec![1.0f32; 6];
    assert!(matches!(
        index.search_batch_flat(&ok, 0, None),
        Err(IndexError::InvalidParameter { name: "k", .. })
    ));
    assert!(matches!(
        index.search_batch_flat(&ok, 5, 2),
        Err(IndexError::InvalidParameter { name: "ef", .. })
    ));
}

/// A durable index lends its reads as an `IndexView` and dereferences to it: reads through the
/// view, through the deref and through the plain index built the same way agree, and the
/// default ef is settable on the durable index. Catches a view that reads another index, or a
/// durable `set_ef` that does not reach its searches.
#[test]
fn durable_index_lends_a_view() {
    let base = clustered(500, DIM, 3);
    let items: Vec<(u64, Vec<f32>)> = base.iter().enumerate().map(|(i, v)| (i as u64, v.clone())).collect();
    let cfg = IndexConfig::new(DIM, Metric::L2).m(8).ef_construction(64).seed(5);
    let db = DurableIndex::open_with(Arc::new(MemBackend::new()), "db", cfg, DurableOptions::new()).unwrap();
    db.insert_batch(&items, &BatchOptions::new()).unwrap();
    db.delete(7).unwrap();
    let view: &IndexView = db.view();
    assert_eq!((view.len(), db.len(), view.dim()), (499, 499, DIM));
    assert!(!view.contains(7) && view.contains(8) && !db.contains(7));
    assert_eq!(view.get(8), Some(base[8].clone()));
    let mut ids = view.ids();
    ids.sort_unstable();
    assert_eq!(ids, (0..500).filter(|&i| i != 7).collect::<Vec<u64>>());
    let q = &base[100];
    assert_eq!(view.search(q, 5, 32).unwrap(), db.search(q, 5, 32).unwrap());
    assert_eq!(view.search(q, 1, None).unwrap()[0].id, 100);
    assert_eq!(view.check_integrity().unwrap(), db.check_integrity().unwrap());
    assert_eq!(view.graph_fingerprint(), db.graph_fingerprint());
    // The default ef of a durable index, and its effect on searches through the view.
    assert_eq!(view.ef(), 64);
    db.set_ef(300).unwrap();
    assert_eq!((view.ef(), db.ef()), (300, 300));
    assert_eq!(view.search_with_stats(q, 5, None).unwrap(), view.search_with_stats(q, 5, 300).unwrap());
    assert!(db.set_ef(0).is_err());
    // The plain index's view is the index itself.
    let plain = Index::new(IndexConfig::new(DIM, Metric::L2)).unwrap();
    plain.insert(1, &base[1]).unwrap();
    assert_eq!((plain.view().len(), plain.view().get(1)), (1, Some(base[1].clone())));
}
