//! Recall@10 of a sequentially built index: siftsmall (L2) against its ground truth, and seeded
//! synthetic data under cosine and inner product against brute force.

mod common;
use common::*;
use hnsw_batch::{Index, IndexConfig, Metric};

#[test]
fn siftsmall_l2_recall() {
    let d = sift();
    let index = Index::new(IndexConfig::new(128, Metric::L2).m(16).ef_construction(200)).unwrap();
    for (i, v) in d.base.iter().enumerate() {
        index.insert(i as u64, v).unwrap();
    }
    let stats = index.check_integrity().unwrap();
    assert_eq!(stats.live, 10_000);
    let truth: Vec<Vec<u64>> = d.gt.iter().map(|g| g.iter().map(|&x| x as u64).collect()).collect();
    let r128 = recall_at(&search_all(&index, &d.queries, 10, 128), &truth, 10);
    let r32 = recall_at(&search_all(&index, &d.queries, 10, 32), &truth, 10);
    println!("siftsmall recall@10: ef=32 {r32:.4}, ef=128 {r128:.4}");
    assert!(r128 >= 0.98, "recall@10 at ef=128 is {r128}");
    assert!(r32 >= 0.90, "recall@10 at ef=32 is {r32}");
}

fn synthetic_recall(metric: Metric, seed: u64) {
    println!("seed {seed}");
    let mut base = clustered(4000, 48, seed);
    let queries = clustered(100, 48, seed ^ 0xABCD);
    if metric == Metric::InnerProduct {
        // Dot-product embedding models give norms in a narrow band; plain HNSW (ours and the
        // peers') loses recall when norms vary several-fold, see docs/architecture.md.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for v in &mut base {
            let scale = rng.random_range(0.8f32..1.2) / hnsw_batch::distance::scalar::dot_f32(v, v).sqrt();
            v.iter_mut().for_each(|x| *x *= scale);
        }
    }
    let index = Index::new(IndexConfig::new(48, metric).m(16).ef_construction(200).seed(seed)).unwrap();
    for (i, v) in base.iter().enumerate() {
        index.insert(i as u64, v).unwrap();
    }
    let stats = index.check_integrity().unwrap();
    println!("{metric:?}: {} of {} unreachable on level 0", stats.unreachable, stats.live);
    let truth: Vec<Vec<u64>> = queries.iter().map(|q| brute_force(&base, q, 10, metric)).collect();
    let r128 = recall_at(&search_all(&index, &queries, 10, 128), &truth, 10);
    let r32 = recall_at(&search_all(&index, &queries, 10, 32), &truth, 10);
    println!("{metric:?} recall@10: ef=32 {r32:.4}, ef=128 {r128:.4}");
    assert!(r128 >= 0.98, "{metric:?} recall@10 at ef=128 is {r128}");
    assert!(r32 >= 0.90, "{metric:?} recall@10 at ef=32 is {r32}");
}

#[test]
fn cosine_recall() {
    synthetic_recall(Metric::Cosine, 11);
}

#[test]
fn inner_product_recall() {
    synthetic_recall(Metric::InnerProduct, 12);
}
