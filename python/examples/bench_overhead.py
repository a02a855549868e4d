#!/usr/bin/env python3
"""Overhead of the Python binding: knn_query on one thread versus the same loop in Rust.

    cargo build --release -p hnsw-batch-python --example search_bench
    python examples/bench_overhead.py ../data/siftsmall --rust-bin ../target/release/examples/search_bench

Builds an index on the dataset's base vectors (f32 storage), saves it, and searches 1000 queries
(the dataset's queries, then base vectors with noise) with both the Rust binary (which loads the
saved file) and a fresh Python process that loads the same file with ``Index.load``, in interleaved rounds, so
both walk the same graph from equally fresh processes. Each figure is the fastest of repeated passes over ``--min-time`` seconds. Prints the
load average, since on a shared machine the ratio is only as good as the quietest round.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import hnsw_batch as hb

sys.path.insert(0, os.path.dirname(__file__))
from ann_benchmark import read_vecs  # noqa: E402


def py_qps(index: hb.Index, q: np.ndarray, k: int, ef: int, min_time: float) -> tuple[float, float]:
    """Best queries/s of repeated passes, by wall-clock time and by this thread's CPU time."""
    best = best_cpu = float("inf")
    start = time.perf_counter()
    while True:
        t, c = time.perf_counter(), time.thread_time()
        index.knn_query(q, k=k, ef=ef, num_threads=1)
        best_cpu = min(best_cpu, time.thread_time() - c)
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start >= min_time:
            return len(q) / best, len(q) / best_cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--rust-bin", required=True)
    ap.add_argument("--child", nargs=2, metavar=("INDEX", "QUERIES"), help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()
    if args.child:
        # One fresh process per measurement, like the Rust side: load, search, print.
        index = hb.Index.load(args.child[0])
        raw = np.fromfile(args.child[1], "<f4")
        dim = int(raw[:1].view("<i4")[0])
        q = np.ascontiguousarray(raw.reshape(-1, 1 + dim)[:, 1:])
        print(*py_qps(index, q, args.k, args.ef, args.min_time))
        return 0

    base = np.ascontiguousarray(read_vecs(args.dataset, "base"), np.float32)
    real = np.ascontiguousarray(read_vecs(args.dataset, "query"), np.float32)
    rng = np.random.default_rng(0)
    extra = max(0, args.queries - len(real))
    noisy = base[rng.choice(len(base), extra, replace=False)] + rng.normal(0, 5, (extra, base.shape[1]))
    q = np.ascontiguousarray(np.vstack([real, noisy])[: args.queries], np.float32)

    tmp = tempfile.mkdtemp()
    index_path, query_path = os.path.join(tmp, "index.hnsw"), os.path.join(tmp, "queries.fvecs")
    built = hb.Index("l2", base.shape[1])
    built.add_items(base)
    built.save(index_path)
    rec = np.empty((len(q), 1 + q.shape[1]), np.float32)
    rec[:, 0] = np.array([q.shape[1]], "<i4").view("<f4")[0]
    rec[:, 1:] = q
    rec.tofile(query_path)
    child = [sys.executable, os.path.abspath(__file__), args.dataset, "--rust-bin", args.rust_bin, "-k", str(args.k),
             "--ef", str(args.ef), "--min-time", str(args.min_time), "--child", index_path, query_path]

    print(f"{len(base)} base vectors, {len(q)} queries, k={args.k}, ef={args.ef}, one thread")
    rows = []
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        out = subprocess.check_output(
            [args.rust_bin, index_path, query_path, str(args.k), str(args.ef), str(args.min_time)], text=True)
        rust, rust_cpu = (float(x) for x in out.split())
        py, py_cpu = (float(x) for x in subprocess.check_output(child, text=True).split())
        rows.append((rust, py, rust_cpu, py_cpu))
        print(f"round {r + 1:2}: load {load:5.2f} | wall QPS rust {rust:8,.0f} python {py:8,.0f} ratio {py / rust:.3f}"
              f" | CPU-time QPS rust {rust_cpu:8,.0f} python {py_cpu:8,.0f} ratio {py_cpu / rust_cpu:.3f}")
    a = np.array(rows)
    for name, i in (("wall", 0), ("CPU-time", 2)):
        ratios = a[:, i + 1] / a[:, i]
        print(f"{name:8} ratio python/rust: median {np.median(ratios):.3f} (min {ratios.min():.3f}, max {ratios.max():.3f});"
              f" best of all rounds {a[:, i + 1].max() / a[:, i].max():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
