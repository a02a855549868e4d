//! Churn: an index under deletes, updates and inserts (issue 9).
//!
//! A synthetic, seeded set of 20 000 clustered 64-dimensional vectors (plus 5 000 held out) is
//! built once per group; every iteration then mutates that same index, so the figures are those
//! of an index in steady churn rather than of a fresh one:
//!
//! - `churn/round`: one round of `delete_batch`, `update_batch` and `insert_batch` of 5 % of the
//!   live ids each (1 000 + 1 000 + 1 000 items); updates and inserts take held-out vectors, and
//!   the vectors deleted or replaced go back to the held-out pool.
//! - `churn/batch/insert_batch` against `churn/batch/update_batch`: 1 000 items each, as elements
//!   per second. An insert iteration deletes its 1 000 new ids again afterwards, untimed, so the
//!   live set does not grow.
//!
//! `cargo bench --bench churn`; the `bench --churn` command of the CLI measures the same on real
//! datasets, with recall and QPS after every round.
#![allow(missing_docs)] // criterion_group! generates undocumented public items.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hnsw_batch::{BatchInsertable, BatchOptions, Index, IndexConfig, Metric};
use std::time::{Duration, Instant};

const DIM: usize = 64;
const LIVE: usize = 20_000;
const HELD: usize = 5_000;
const CLUSTERS: usize = 64;
/// 5 % of the live set.
const BATCH: usize = LIVE / 20;

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Approximately normal (sum of four uniforms, centred).
    fn normal(&mut self) -> f32 {
        (self.unit() + self.unit() + self.unit() + self.unit() - 2.0) * 1.7
    }
    fn take<T>(&mut self, v: &mut Vec<T>, count: usize) -> Vec<T> {
        (0..count.min(v.len())).map(|_| v.swap_remove(self.below(v.len()))).collect()
    }
}

/// `n` vectors around `CLUSTERS` seeded centres.
fn clustered(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng(seed);
    let centres: Vec<Vec<f32>> =
        (0..CLUSTERS).map(|_| (0..DIM).map(|_| rng.unit() * 10.0).collect()).collect();
    (0..n)
        .map(|_| {
            let c = &centres[rng.below(CLUSTERS)];
            c.iter().map(|&x| x + rng.normal() * 0.6).collect()
        })
        .collect()
}

/// An index under churn: which base rows are live under which ids, and which are held out.
struct Churn {
    index: Index,
    data: Vec<Vec<f32>>,
    live: Vec<(u64, usize)>,
    pool: Vec<usize>,
    next_id: u64,
    rng: Rng,
}

impl Churn {
    fn new() -> Self {
        let data = clustered(LIVE + HELD, 42);
        let cfg = IndexConfig::new(DIM, Metric::L2).m(16).ef_construction(200).seed(1);
        let index = Index::new(cfg).unwrap();
        let items: Vec<(u64, &[f32])> = (0..LIVE).map(|i| (i as u64, data[i].as_slice())).collect();
        index.insert_batch(&items, &BatchOptions::new()).unwrap();
        Churn {
            index,
            live: (0..LIVE).map(|i| (i as u64, i)).collect(),
            pool: (LIVE..LIVE + HELD).collect(),
            next_id: (LIVE + HELD) as u64,
            data,
            rng: Rng(7),
        }
    }

    /// Times `delete_batch` of `n` random live ids.
    fn delete(&mut self, n: usize) -> Duration {
        let gone = self.rng.take(&mut self.live, n);
        let ids: Vec<u64> = gone.iter().map(|&(id, _)| id).collect();
        let t = Instant::now();
        let r = self.index.delete_batch(&ids, &BatchOptions::new()).unwrap();
        let e = t.elapsed();
        assert_eq!(r.deleted, n);
        self.pool.extend(gone.iter().map(|&(_, row)| row));
        e
    }

    /// Times `update_batch` of `n` random live ids to held-out vectors.
    fn update(&mut self, n: usize) -> Duration {
        let mut chosen = self.rng.take(&mut self.live, n);
        let rows = self.rng.take(&mut self.pool, n);
        let items: Vec<(u64, &[f32])> =
            chosen.iter().zip(&rows).map(|(&(id, _), &r)| (id, self.data[r].as_slice())).collect();
        let t = Instant::now();
        let rep = self.index.update_batch(&items, &BatchOptions::new()).unwrap();
        let e = t.elapsed();
        assert_eq!(rep.updated, n);
        for (c, r) in chosen.iter_mut().zip(rows) {
            self.pool.push(c.1);
            c.1 = r;
        }
        self.live.extend(chosen);
        e
    }

    /// Times `insert_batch` of `n` new ids with held-out vectors; returns the new ids too.
    fn insert(&mut self, n: usize) -> (Duration, Vec<u64>) {
        let rows = self.rng.take(&mut self.pool, n);
        let ids: Vec<u64> = (0..n as u64).map(|i| self.next_id + i).collect();
        self.next_id += n as u64;
        let items: Vec<(u64, &[f32])> =
            ids.iter().zip(&rows).map(|(&id, &r)| (id, self.data[r].as_slice())).collect();
        let t = Instant::now();
        let rep = self.index.insert_batch(&items, &BatchOptions::new()).unwrap();
        let e = t.elapsed();
        assert_eq!(rep.inserted, n);
        self.live.extend(ids.iter().copied().zip(rows));
        (e, ids)
    }
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("churn");
    g.sample_size(10).measurement_time(Duration::from_secs(10)).warm_up_time(Duration::from_millis(500));
    let mut st = Churn::new();
    g.throughput(Throughput::Elements(3 * BATCH as u64));
    g.bench_function("round", |b| {
        b.iter_custom(|iters| {
            (0..iters).map(|_| st.delete(BATCH) + st.update(BATCH) + st.insert(BATCH).0).sum()
        })
    });
    g.finish();
    eprintln!("churn/round: after the rounds, {:?}", st.index.slot_stats());

    let mut g = c.benchmark_group("churn/batch");
    g.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut st = Churn::new();
    g.bench_function("insert_batch", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (e, ids) = st.insert(BATCH);
                total += e;
                // Untimed: back to LIVE vectors.
                let gone: Vec<u64> = ids;
                st.index.delete_batch(&gone, &BatchOptions::new()).unwrap();
                st.live.retain(|(id, row)| {
                    let keep = !gone.contains(id);
                    if !keep {
                        st.pool.push(*row);
                    }
                    keep
                });
            }
            total
        })
    });
    g.bench_function("update_batch", |b| b.iter_custom(|iters| (0..iters).map(|_| st.update(BATCH)).sum()));
    g.bench_function("delete_batch", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += st.delete(BATCH);
                st.insert(BATCH); // untimed: back to LIVE vectors
            }
            total
        })
    });
    g.finish();
}

criterion_group!(churn, benches);
criterion_main!(churn);
