//! A search's answer from its walk's results: the `k` nearest distinct ids, nearest first,
//! ties by id.

use crate::index::Neighbour;
use crate::scratch::Cand;

/// Up to this many results are de-duplicated by comparing each with those kept, without
/// hashing: cheaper for the usual `k` and `ef`; a set beyond.
const SMALL_DEDUP: usize = 64;

/// The `k` nearest distinct ids of `sorted` (a walk's results in [`Cand`] order), nearest
/// first, ties by id; `id` maps a node to its id. Looks up the ids of only as many nodes as
/// that takes: each is a random load, and `sorted` holds `ef` of them.
pub(crate) fn nearest_ids(sorted: &[Cand], k: usize, id: impl Fn(u32) -> u64) -> Vec<Neighbour> {
    let mut out = Vec::with_capacity(k.min(sorted.len()));
    let mut next = 0;
    loop {
        // Up to `k`, and on through every node as near as the last one taken: which of the
        // nodes tied at the cut are returned is decided by id, not by node number.
        while let Some(&c) = sorted.get(next) {
            if out.len() >= k && next > 0 && c.d() > sorted[next - 1].d() {
                break;
            }
            out.push(Neighbour { id: id(c.n()), distance: c.d() });
            next += 1;
        }
        sort_dedup(&mut out, k);
        // Short only when two versions of one id were both taken (an update in flight).
        if out.len() >= k || next == sorted.len() {
            return out;
        }
    }
}

/// Sorts `out` nearest first (ties by id), keeps only the nearer of two results with one id
/// (an update in flight can leave two versions of an id live for an instant) and cuts it to `k`.
pub(crate) fn sort_dedup(out: &mut Vec<Neighbour>, k: usize) {
    out.sort_unstable_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
    if out.len() <= SMALL_DEDUP {
        let mut kept = 0;
        for i in 0..out.len() {
            if kept == k {
                break;
            }
            if !out[..kept].iter().any(|m| m.id == out[i].id) {
                out[kept] = out[i];
                kept += 1;
            }
        }
        out.truncate(kept);
    } else {
        let mut seen = std::collections::HashSet::with_capacity(out.len().min(k));
        out.retain(|n| seen.len() < k && seen.insert(n.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: every result sorted by (distance, id), the first of each id, `k` of them.
    fn reference(all: &[(f32, u32)], k: usize, id: impl Fn(u32) -> u64) -> Vec<Neighbour> {
        let mut v: Vec<Neighbour> = all.iter().map(|&(d, n)| Neighbour { id: id(n), distance: d }).collect();
        v.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
        let mut seen = std::collections::HashSet::new();
        v.retain(|x| seen.insert(x.id));
        v.truncate(k);
        v
    }

    fn cands(all: &[(f32, u32)]) -> Vec<Cand> {
        let mut c: Vec<Cand> = all.iter().map(|&(d, n)| Cand::new(d, n)).collect();
        c.sort_unstable();
        c
    }

    /// Random walk results full of exact distance ties and of nodes sharing an id, in sizes on
    /// both sides of `SMALL_DEDUP`, against the definition. Ids run against node order, so
    /// taking tied nodes by node number picks the wrong ones.
    #[test]
    fn nearest_ids_equal_the_definition_under_ties_and_shared_ids() {
        let seed = 0x5EED_0001u64;
        println!("seed {seed:#x}");
        let mut x = seed;
        let mut next = move || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for case in 0..2000 {
            let len = 1 + (next() % 150) as usize;
            let levels = 1 + next() % 8;
            let shared = next() % 3 == 0;
            let all: Vec<(f32, u32)> =
                (0..len as u32).map(|n| ((next() % levels) as f32 * 0.25, n)).collect();
            // Node `n` has id `1000 - n`, or under `shared` one of a few ids many nodes share.
            let id = |n: u32| if shared { u64::from(n % 7) * 3 } else { 1000 - u64::from(n) };
            for k in [1, 2, 5, 10, 64, 100, 200] {
                let got = nearest_ids(&cands(&all), k, id);
                assert_eq!(got, reference(&all, k, id), "case {case}, len {len}, k {k}, shared {shared}");
            }
        }
    }

    #[test]
    fn the_nearer_of_two_versions_of_an_id_is_kept() {
        // Nodes 0 and 3 both carry id 7; the nearer (node 3) must win, and the answer still has k.
        let all = [(0.5, 0u32), (0.1, 1), (0.2, 2), (0.05, 3), (0.9, 4)];
        let id = |n: u32| [7u64, 1, 2, 7, 4][n as usize];
        let got = nearest_ids(&cands(&all), 4, id);
        let want: Vec<(u64, f32)> = vec![(7, 0.05), (1, 0.1), (2, 0.2), (4, 0.9)];
        assert_eq!(got.iter().map(|n| (n.id, n.distance)).collect::<Vec<_>>(), want);
    }

    #[test]
    fn ids_are_looked_up_only_up_to_the_cut() {
        let all: Vec<(f32, u32)> = (0..50).map(|n| (n as f32, n)).collect();
        let looked = std::cell::Cell::new(0);
        let got = nearest_ids(&cands(&all), 10, |n| {
            looked.set(looked.get() + 1);
            u64::from(n)
        });
        assert_eq!(got.len(), 10);
        assert_eq!(looked.get(), 10, "no tie at the cut: exactly k lookups");
    }
}
