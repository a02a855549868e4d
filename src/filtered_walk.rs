//! Level-0 beam search that stays inside a filter's matching subset (ACORN-style expansion).
//!
//! The plain walk (`Index::search_layer`) scores every unvisited neighbour, matching or not, and
//! keeps going until it holds `ef` matching results, so at selectivity `s` it scores about
//! `ef / s` nodes, most of which it then throws away. This walk scores only matching nodes: a
//! candidate's matching neighbours are scored, and its other neighbours are passed through —
//! their own level-0 lists are read and *their* matching neighbours scored — until the
//! candidate has contributed `M0` nodes to score, the degree the graph was built with. Reading a
//! list is one short read where scoring reads a whole vector, so at 10 % selectivity the walk
//! does a fraction of the plain walk's distance work for the same recall. The idea is ACORN-1's
//! (Patel et al., "ACORN: Performant and Predicate-Agnostic Search Over Vector Embeddings and
//! Structured Data", SIGMOD 2024): expand neighbours' neighbours at search time, on the graph as
//! built.
//!
//! A passed-through node is marked visited only when its list is read, so a node left over when
//! a candidate's quota fills can still be passed through from a later candidate. Tombstones
//! fail the filter (they are not live), so they keep routing the walk without being scored.

use crate::index::{Index, Probe, PREFETCH_AHEAD};
use crate::scratch::{Cand, Scratch};
use std::cmp::Reverse;
use std::sync::atomic::Ordering;

/// Continues a level-0 search seeded by `Index::seed_search`: `s.results` ends with the `ef`
/// nearest nodes found that pass `accept` (which must check liveness).
pub(crate) fn search_level0_within(
    index: &Index,
    q: &Probe<'_>,
    ef: usize,
    s: &mut Scratch,
    accept: &impl Fn(u32) -> bool,
) {
    let quota = index.store.cap(0);
    let mut worst = if s.results.len() >= ef {
        s.results.peek().map_or(f32::INFINITY, |c| c.d)
    } else {
        f32::INFINITY
    };
    while let Some(Reverse(c)) = s.cands.pop() {
        if c.d > worst {
            break;
        }
        s.ids.clear();
        s.through.clear();
        let links = index.store.links(c.n, 0);
        let cnt = (links[0].load(Ordering::Acquire) as usize).min(links.len() - 1);
        for slot in &links[1..=cnt] {
            let nb = slot.load(Ordering::Acquire);
            if s.visited.contains(nb) {
                continue;
            }
            if accept(nb) {
                s.visited.insert(nb);
                s.ids.push(nb);
            } else {
                s.through.push(nb);
            }
        }
        // The lists passed through are random reads that nothing else brings in: ask for all
        // of them before reading the first.
        for &via in &s.through {
            index.store.prefetch_links0(via);
        }
        for t in 0..s.through.len() {
            if s.ids.len() >= quota {
                break;
            }
            let via = s.through[t];
            if !s.visited.insert(via) {
                continue;
            }
            let list = index.store.links(via, 0);
            let cnt = (list[0].load(Ordering::Acquire) as usize).min(list.len() - 1);
            for slot in &list[1..=cnt] {
                if s.ids.len() >= quota {
                    break;
                }
                let nb = slot.load(Ordering::Acquire);
                if !s.visited.contains(nb) && accept(nb) {
                    s.visited.insert(nb);
                    s.ids.push(nb);
                }
            }
        }
        s.dists += s.ids.len() as u64;
        for &nb in s.ids.iter().take(PREFETCH_AHEAD) {
            index.store.prefetch_vector(nb);
        }
        if let Some(Reverse(next)) = s.cands.peek() {
            index.store.prefetch_links0(next.n);
        }
        for j in 0..s.ids.len() {
            if let Some(&next) = s.ids.get(j + PREFETCH_AHEAD) {
                index.store.prefetch_vector(next);
            }
            let nb = s.ids[j];
            let d = index.dist(q, nb);
            if d < worst || s.results.len() < ef {
                s.cands.push(Reverse(Cand { d, n: nb }));
                s.results.push(Cand { d, n: nb });
                if s.results.len() > ef {
                    s.results.pop();
                }
                if s.results.len() >= ef {
                    worst = s.results.peek().map_or(f32::INFINITY, |c| c.d);
                }
            }
        }
    }
}
