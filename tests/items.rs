//! Metadata, expiry, field indexes, filtered search and bulk operations wired into `Index`.

mod common;

use hnsw_batch::items::{FilterPlan, Item, MetaPatch};
use hnsw_batch::{
    BatchError, BatchMode, BatchOptions, DeleteError, DeleteOptions, Expiry, Filter, Index, IndexConfig,
    IndexError, InvalidReason, ManualClock, MetaError, MetaLimits, Metadata, Metric,
};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

fn meta(pairs: &[(&str, hnsw_batch::MetaValue)]) -> Metadata {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

/// A seed from `SEED`, else from the time; printed so a failure can be replayed.
fn seed() -> u64 {
    let seed = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    println!("seed {seed} (replay with SEED={seed})");
    seed
}

fn small() -> Index {
    let index = Index::new(IndexConfig::new(2, Metric::L2).m(8).ef_construction(32)).unwrap();
    for i in 0..100u64 {
        let m = meta(&[("lang", if i % 4 == 0 { "en" } else { "fr" }.into()), ("n", (i as i64).into())]);
        index.insert_with(i, &[i as f32, (i % 10) as f32], Some(m), Expiry::Never).unwrap();
    }
    index
}

#[test]
fn metadata_follows_insert_patch_update_and_delete() {
    let index = small();
    assert_eq!(index.get_metadata(4).unwrap()["lang"], "en".into());
    index.set_metadata(4, &MetaPatch::new().set("year", 2001).remove("lang")).unwrap();
    assert_eq!(index.get_metadata(4).unwrap(), meta(&[("n", 4i64.into()), ("year", 2001.into())]));
    // A vector change keeps the metadata unless new metadata is given.
    index.update(4, &[50.0, 50.0]).unwrap();
    assert_eq!(index.get_metadata(4).unwrap()["year"], 2001.into());
    index.update_with(4, &[51.0, 50.0], Some(meta(&[("lang", "de".into())]))).unwrap();
    assert_eq!(index.get_metadata(4).unwrap(), meta(&[("lang", "de".into())]));
    index.delete(4).unwrap();
    assert_eq!(index.get_metadata(4), None);
    assert_eq!(index.set_metadata(4, &MetaPatch::new()), Err(IndexError::NotFound { id: 4 }));
    // Slots of deleted vectors are reused: new plain vectors must not inherit metadata.
    for i in 0..50u64 {
        index.delete(i + 50).unwrap();
    }
    index.compact();
    for i in 1000..1100u64 {
        index.insert(i, &[i as f32, 0.0]).unwrap();
        assert_eq!(index.get_metadata(i), Some(Metadata::new()), "id {i} inherited metadata");
    }
    assert!(index.slot_stats().allocated < 200 + 100, "{:?}", index.slot_stats());
    assert_eq!(index.count(&Filter::exists("n")).unwrap(), 49);
}

#[test]
fn bad_metadata_changes_nothing() {
    let index = small();
    let bad = meta(&[("$where", 1.into())]);
    let err = index.insert_with(500, &[0.0, 0.0], Some(bad.clone()), Expiry::Never).unwrap_err();
    assert!(matches!(err, IndexError::InvalidMetadata(MetaError::ReservedKey { .. })), "{err}");
    assert!(!index.contains(500));
    index.set_meta_limits(MetaLimits::default().max_key_len(3));
    let err = index.set_metadata(1, &MetaPatch::new().set("long", 1)).unwrap_err();
    assert!(matches!(err, IndexError::InvalidMetadata(MetaError::KeyTooLong { .. })), "{err}");
    assert_eq!(index.get_metadata(1).unwrap()["lang"], "fr".into());
    index.set_meta_limits(MetaLimits::default());

    let items: Vec<Item<Vec<f32>>> = (0..5u64)
        .map(|i| {
            Item::new(600 + i, vec![i as f32, 1.0]).metadata(if i == 3 {
                bad.clone()
            } else {
                Metadata::new()
            })
        })
        .collect();
    let err = index.insert_items(&items, &BatchOptions::new()).unwrap_err();
    assert!(
        matches!(err, BatchError::InvalidVector { index: 3, id: 603, reason: InvalidReason::Metadata(_) }),
        "{err}"
    );
    assert_eq!(index.len(), 100);
    let report = index.insert_items(&items, &BatchOptions::new().mode(BatchMode::BestEffort)).unwrap();
    assert_eq!((report.inserted, report.failures.len(), report.failures[0].index), (4, 1, 3));
    assert!(!index.contains(603) && index.contains(604));

    let bad_filter = Filter::and([]);
    assert!(matches!(index.count(&bad_filter), Err(IndexError::InvalidFilter(_))));
    assert!(matches!(index.search_where(&[0.0, 0.0], 1, 8, &bad_filter), Err(IndexError::InvalidFilter(_))));
}

#[test]
fn delete_where_filter_dry_run_matches_the_real_run_and_refusals_change_nothing() {
    let index = small();
    index.create_field_index("lang").unwrap();
    let en = Filter::eq("lang", "en");
    let dry = index.delete_where_filter(&en, &DeleteOptions { dry_run: true, ..Default::default() }).unwrap();
    assert_eq!((dry.total, dry.ids.len(), dry.deleted, dry.dry_run), (25, 25, 25, true));
    assert!(dry.ids.windows(2).all(|w| w[0] < w[1]), "ids ascending");
    let refused =
        index.delete_where_filter(&en, &DeleteOptions { confirm_count: Some(24), ..Default::default() });
    assert_eq!(
        refused.unwrap_err(),
        IndexError::Refused(DeleteError::CountMismatch { expected: 24, found: 25 })
    );
    let refused =
        index.delete_where_filter(&en, &DeleteOptions { max_affected: Some(10), ..Default::default() });
    assert_eq!(refused.unwrap_err(), IndexError::Refused(DeleteError::TooMany { limit: 10, found: 25 }));
    assert_eq!((index.len(), index.count(&en).unwrap()), (100, 25));
    let real = index
        .delete_where_filter(&en, &DeleteOptions { confirm_count: Some(25), ..Default::default() })
        .unwrap();
    assert_eq!(real.ids, dry.ids);
    assert_eq!((real.total, real.deleted, real.not_found, real.dry_run), (25, 25, 0, false));
    assert_eq!((index.len(), index.count(&en).unwrap()), (75, 0));
    for id in dry.ids {
        assert!(!index.contains(id));
    }
    // `ne` also matches vectors without the field (MongoDB semantics), indexed or not.
    index.insert(1000, &[0.5, 0.5]).unwrap();
    assert_eq!(index.count(&Filter::ne("lang", "fr")).unwrap(), 1);
    assert_eq!(index.count(&Filter::ne("n", 3)).unwrap(), 75);
}

#[test]
fn update_where_patches_matching_items_only() {
    let index = small();
    let fr_low = Filter::and([Filter::eq("lang", "fr"), Filter::lt("n", 10)]);
    let opts = DeleteOptions { dry_run: true, ..Default::default() };
    let dry = index.update_where(&fr_low, &MetaPatch::new().set("flag", true), &opts).unwrap();
    assert_eq!((dry.total, dry.updated, dry.deleted, dry.dry_run), (7, 7, 0, true));
    assert_eq!(index.count(&Filter::exists("flag")).unwrap(), 0);
    let done =
        index.update_where(&fr_low, &MetaPatch::new().set("flag", true), &DeleteOptions::default()).unwrap();
    assert_eq!((&done.ids, done.updated, done.dry_run), (&dry.ids, 7, false));
    index.create_field_index("flag").unwrap();
    assert_eq!(index.ids_where(&Filter::eq("flag", true)).unwrap(), [1, 2, 3, 5, 6, 7, 9]);
    // A patch that would break a limit for any match refuses the whole call.
    index.set_meta_limits(MetaLimits::default().max_key_len(4));
    let err = index.update_where(&fr_low, &MetaPatch::new().set("toolong", 1), &DeleteOptions::default());
    assert!(matches!(err, Err(IndexError::InvalidMetadata(_))));
    assert_eq!(index.count(&Filter::exists("toolong")).unwrap(), 0);
}

#[test]
fn field_index_agrees_with_evaluation_under_churn() {
    let seed = seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let index = Index::new(IndexConfig::new(2, Metric::L2).m(8).ef_construction(32)).unwrap();
    let plain = Index::new(IndexConfig::new(2, Metric::L2).m(8).ef_construction(32)).unwrap();
    index.create_field_index("a").unwrap();
    index.create_field_index("b").unwrap();
    let rand_meta = |rng: &mut rand::rngs::StdRng| {
        let mut m = Metadata::new();
        if rng.random_bool(0.8) {
            m.insert("a".into(), rng.random_range(0..5i64).into());
        }
        if rng.random_bool(0.5) {
            m.insert("b".into(), ["x", "y"][rng.random_range(0..2)].into());
        }
        (rng.random_bool(0.9)).then_some(m)
    };
    for step in 0..2000u64 {
        let id = rng.random_range(0..300u64);
        let v = [rng.random::<f32>(), rng.random::<f32>()];
        match rng.random_range(0..4) {
            0 | 1 => {
                let m = rand_meta(&mut rng);
                let r1 = index.insert_with(id, &v, m.clone(), Expiry::Never);
                let r2 = plain.insert_with(id, &v, m, Expiry::Never);
                assert_eq!(r1.is_ok(), r2.is_ok());
            }
            2 => assert_eq!(index.delete(id).is_ok(), plain.delete(id).is_ok()),
            _ => {
                let p = MetaPatch::new().set("a", rng.random_range(0..5i64)).remove("b");
                let m = rand_meta(&mut rng);
                if step % 2 == 0 {
                    assert_eq!(index.set_metadata(id, &p).is_ok(), plain.set_metadata(id, &p).is_ok());
                } else {
                    assert_eq!(
                        index.update_with(id, &v, m.clone()).is_ok(),
                        plain.update_with(id, &v, m).is_ok()
                    );
                }
            }
        }
    }
    let filters = [
        Filter::eq("a", 1),
        Filter::ne("a", 1),
        Filter::nin("b", ["x"]),
        Filter::not(Filter::exists("b")),
        Filter::or([Filter::gte("a", 3), Filter::eq("b", "y")]),
        Filter::and([Filter::lt("a", 4), Filter::ne("b", "x")]),
    ];
    for f in &filters {
        assert_eq!(index.ids_where(f).unwrap(), plain.ids_where(f).unwrap(), "{f} (seed {seed})");
        let q = [0.5, 0.5];
        let a = index.search_where(&q, 5, 32, f).unwrap();
        let b = plain.search_exact(&q, 5, |id| plain.ids_where(f).unwrap().contains(&id)).unwrap();
        assert_eq!(
            a.iter().map(|n| n.id).collect::<Vec<_>>(),
            b.iter().map(|n| n.id).collect::<Vec<_>>(),
            "{f}"
        );
    }
}

/// Both plans of a filtered search skip expired items, with the filter answered by a field
/// index (the bitmap path) and without one (metadata read per node). The expiry test runs
/// last and only while something can expire, so a walk or scan that dropped it would return
/// the expired nearest items here.
#[test]
fn both_filter_plans_skip_expired_items_with_and_without_a_field_index() {
    let clock = Arc::new(ManualClock::new(1_000));
    let index = Index::new(IndexConfig::new(2, Metric::L2).seed(3)).unwrap();
    index.set_clock(clock.clone());
    for i in 0..400u64 {
        // The 40 items nearest the origin expire at 2 000; every other item has tag "x" too.
        let e = if i < 40 { Expiry::At(2_000) } else { Expiry::Never };
        let tag = if i % 2 == 0 { "x" } else { "y" };
        index.insert_with(i, &[i as f32, 0.0], Some(meta(&[("tag", tag.into())])), e).unwrap();
    }
    let f = Filter::eq("tag", "x");
    clock.set(2_000);
    for indexed in [false, true] {
        if indexed {
            index.create_field_index("tag").unwrap();
        }
        for plan in [FilterPlan::Graph, FilterPlan::Exact] {
            let (hits, _) = index.search_where_with(&[0.0, 0.0], 5, 64, &f, plan).unwrap();
            let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
            assert_eq!(ids, [40, 42, 44, 46, 48], "field index {indexed}, plan {plan:?}");
        }
    }
}

#[test]
fn expiry_hides_items_and_purge_deletes_them() {
    let clock = Arc::new(ManualClock::new(1_000));
    let index = Index::new(IndexConfig::new(1, Metric::L2)).unwrap();
    index.set_clock(clock.clone());
    for i in 0..20u64 {
        let e = if i < 5 { Expiry::At(2_000) } else { Expiry::Never };
        index.insert_with(i, &[i as f32], Some(meta(&[("i", (i as i64).into())])), e).unwrap();
    }
    index.insert_with(20, &[20.0], None, Expiry::At(3_000)).unwrap();
    let all = Filter::exists("i");
    assert_eq!((index.count(&all).unwrap(), index.ids().len()), (20, 21));
    clock.set(2_000);
    assert!(index.get(0).is_none() && !index.contains(4) && index.get_metadata(4).is_none());
    assert!(index.get(5).is_some());
    assert_eq!(index.search(&[0.0], 3, 8).unwrap().iter().map(|n| n.id).collect::<Vec<_>>(), [5, 6, 7]);
    assert_eq!(index.search_where(&[0.0], 1, 8, &all).unwrap()[0].id, 5);
    assert_eq!((index.count(&all).unwrap(), index.ids().len()), (15, 16));
    // Expiry can be moved; an expired item cannot be revived by a patch.
    index.set_expiry(20, Expiry::Never).unwrap();
    assert_eq!(index.set_expiry(0, Expiry::Never), Err(IndexError::NotFound { id: 0 }));
    clock.set(5_000);
    assert!(index.contains(20));
    let dry = index.purge_expired(&DeleteOptions { dry_run: true, ..Default::default() }).unwrap();
    assert_eq!((dry.ids.as_slice(), dry.deleted, dry.dry_run), (&[0, 1, 2, 3, 4][..], 5, true));
    assert_eq!(index.len(), 21);
    let refused = index.purge_expired(&DeleteOptions { max_affected: Some(4), ..Default::default() });
    assert!(matches!(refused, Err(IndexError::Refused(_))));
    let done = index.purge_expired(&DeleteOptions::default()).unwrap();
    assert_eq!((done.deleted, &done.ids, index.len()), (5, &dry.ids, 16));
    // Going back in time after a purge does not bring anything back.
    clock.set(0);
    assert!(index.get(0).is_none());
}

/// 20 000 clustered vectors; attribute `r` uniform in 0..10 000, so `r < t` selects `t / 10 000`.
#[test]
fn filtered_search_recall_at_several_selectivities() {
    let seed = seed();
    let (n, dim, k) = (20_000usize, 16usize, 10usize);
    let base = common::clustered(n, dim, seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let attrs: Vec<i64> = (0..n).map(|_| rng.random_range(0..10_000)).collect();
    let items: Vec<Item<&[f32]>> = (0..n)
        .map(|i| Item::new(i as u64, base[i].as_slice()).metadata(meta(&[("r", attrs[i].into())])))
        .collect();
    let index = Index::new(IndexConfig::new(dim, Metric::L2).m(16).ef_construction(100)).unwrap();
    index.insert_items(&items, &BatchOptions::new()).unwrap();
    let queries = common::clustered(40, dim, seed.wrapping_add(1));
    for indexed in [false, true] {
        if indexed {
            index.create_field_index("r").unwrap();
        }
        for &t in &[5_000i64, 1_000, 100, 10] {
            let lo = rng.random_range(0..10_000 - t);
            let f = Filter::range("r", lo..lo + t);
            for plan in [FilterPlan::Auto, FilterPlan::Graph] {
                let (mut hit, mut total, mut dists) = (0usize, 0usize, 0u64);
                for q in &queries {
                    let (found, stats) = index.search_where_with(q, k, 64, &f, plan).unwrap();
                    dists += stats.distance_computations;
                    let truth =
                        index.search_exact(q, k, |id| (lo..lo + t).contains(&attrs[id as usize])).unwrap();
                    total += truth.len();
                    hit += found.iter().filter(|x| truth.iter().any(|y| y.id == x.id)).count();
                }
                let recall = hit as f64 / total as f64;
                println!(
                    "indexed {indexed} selectivity {:.3} {plan:?}: recall {recall:.3}, {} distances/query",
                    t as f64 / 10_000.0,
                    dists / queries.len() as u64
                );
                assert!(
                    recall >= 0.95,
                    "recall {recall} at {t}/10000, {plan:?}, indexed {indexed} (seed {seed})"
                );
            }
        }
    }
}

#[test]
fn metadata_expiry_limits_and_field_names_survive_save_and_load() {
    let index = small();
    index.create_field_index("lang").unwrap();
    index.set_meta_limits(MetaLimits::default().max_list_len(7));
    index.set_expiry(3, Expiry::At(u64::MAX - 1)).unwrap();
    // Already expired by the system clock: saved, and still expired after the load.
    index.insert_with(500, &[0.0, 0.0], None, Expiry::At(42)).unwrap();
    index.delete(10).unwrap();
    let bytes = hnsw_batch::persist::save_to_bytes(&index);
    let loaded = hnsw_batch::persist::load_from_bytes(&bytes).unwrap();
    assert_eq!(hnsw_batch::persist::save_to_bytes(&loaded), bytes, "canonical after a round trip");
    for id in (0..100u64).filter(|&i| i != 10) {
        assert_eq!(loaded.get_metadata(id), index.get_metadata(id), "id {id}");
    }
    assert_eq!(loaded.get_expiry(3), Some(Expiry::At(u64::MAX - 1)));
    assert!(!loaded.contains(500) && loaded.get_metadata(10).is_none());
    assert_eq!(loaded.field_indexes(), ["lang"]);
    assert_eq!(loaded.meta_limits(), MetaLimits::default().max_list_len(7));
    let en = Filter::eq("lang", "en");
    assert_eq!(loaded.ids_where(&en).unwrap(), index.ids_where(&en).unwrap());
    let q = [40.0, 1.0];
    assert_eq!(loaded.search_where(&q, 5, 32, &en).unwrap(), index.search_where(&q, 5, 32, &en).unwrap());
    // The rebuilt field index keeps following changes.
    loaded.set_metadata(1, &MetaPatch::new().set("lang", "en")).unwrap();
    assert_eq!(loaded.count(&en).unwrap(), index.count(&en).unwrap() + 1);
}
