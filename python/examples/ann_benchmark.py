#!/usr/bin/env python3
"""The ann-benchmarks procedure on one dataset folder, through the Python package.

    python examples/ann_benchmark.py ../data/siftsmall
    python examples/ann_benchmark.py DIR --ef 10,20,40,80,160 --M 16 --ef-construction 200

DIR holds the TEXMEX layout (see data/README.md): base.fvecs or base.bvecs, query.fvecs or
query.bvecs, gt.ivecs, each possibly gzip'd (.gz), and meta.json with the metric. The script
builds the index on all cores, then for each ef runs every query once untimed for recall@k and
times the query set on one thread (the fastest of repeated passes, as ann-benchmarks does).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time

import numpy as np

import hnsw_batch as hb


def read_vecs(folder: str, stem: str) -> np.ndarray:
    """Reads STEM.fvecs / STEM.bvecs / STEM.ivecs (or the .gz) from folder."""
    for ext, dtype, head in ((".fvecs", "<f4", 1), (".bvecs", np.uint8, 4), (".ivecs", "<i4", 1)):
        for suffix in ("", ".gz"):
            path = os.path.join(folder, stem + ext + suffix)
            if not os.path.exists(path):
                continue
            raw = gzip.open(path, "rb").read() if suffix else open(path, "rb").read()
            dim = int(np.frombuffer(raw[:4], "<i4")[0])
            if dtype == np.uint8:
                return np.frombuffer(raw, np.uint8).reshape(-1, 4 + dim)[:, 4:]
            a = np.frombuffer(raw, "<i4").reshape(-1, 1 + dim)[:, 1:]
            return a.view(dtype) if dtype == "<f4" else a
    raise FileNotFoundError(f"no {stem}.fvecs/.bvecs/.ivecs(.gz) in {folder}")


def recall_at(found: np.ndarray, gt: np.ndarray, k: int) -> float:
    """Mean over queries of |found ∩ gt[:k]| / k (ids as a set, as ann-benchmarks counts)."""
    return float(np.mean([len(set(f.tolist()) & set(g[:k].tolist())) / k for f, g in zip(found, gt)]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--ef", default="10,16,24,32,48,64,96,128,192,256,384,512")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--storage", choices=["auto", "f32", "u8"], default="auto")
    ap.add_argument("--queries", type=int, help="use only the first N queries")
    ap.add_argument("--min-time", type=float, default=0.2, help="least seconds per QPS measurement")
    ap.add_argument("--build-threads", type=int, default=-1)
    args = ap.parse_args()

    meta_path = os.path.join(args.dataset, "meta.json")
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    metric = str(meta.get("metric", "l2")).lower()
    space = {"euclidean": "l2", "l2": "l2", "angular": "cosine", "cosine": "cosine", "ip": "ip"}.get(metric, "l2")
    base = read_vecs(args.dataset, "base")
    queries = read_vecs(args.dataset, "query")
    gt = read_vecs(args.dataset, "gt")
    if args.queries:
        queries, gt = queries[: args.queries], gt[: args.queries]
    storage = args.storage
    if storage == "auto":
        integral = base.dtype == np.uint8 or bool(np.all((base >= 0) & (base <= 255) & (base == np.round(base))))
        storage = "u8" if integral and space != "cosine" else "f32"
    print(f"{args.dataset}: {len(base)} base, {len(queries)} queries, dim {base.shape[1]}, "
          f"{space}, storage {storage}, M {args.M}, ef_construction {args.ef_construction}", file=sys.stderr)

    index = hb.Index(space, base.shape[1], M=args.M, ef_construction=args.ef_construction, storage=storage)
    t = time.perf_counter()
    index.add_items(base, np.arange(len(base)), num_threads=args.build_threads, progress=True)
    build = time.perf_counter() - t
    print(f"build: {build:.2f} s ({len(base) / build:,.0f} vectors/s)", file=sys.stderr)

    q = np.ascontiguousarray(queries, dtype=np.float32)
    print(f"{'ef':>5} {'recall@' + str(args.k):>10} {'QPS (1 thread)':>15}")
    for ef in (int(e) for e in args.ef.split(",")):
        found, _ = index.knn_query(q, k=args.k, ef=ef, num_threads=1)
        r = recall_at(found, gt, args.k)
        best = float("inf")
        start = time.perf_counter()
        while True:
            t = time.perf_counter()
            index.knn_query(q, k=args.k, ef=ef, num_threads=1)
            best = min(best, time.perf_counter() - t)
            if time.perf_counter() - start >= args.min_time:
                break
        print(f"{ef:>5} {r:>10.4f} {len(q) / best:>15,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
