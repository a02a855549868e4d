#!/usr/bin/env python3
"""Time a peer's index build (the add call only: data already in memory), so rounds can alternate
with `hnsw-batch build` on the same machine state.
usage: peers_build.py DATASET LIB THREADS   (LIB: hnswlib, faiss or usearch; M=16, ef_construction=200)
Prints `LIB build S s (wall), C s (CPU)`. Needs numpy, the peer and ../shared/tools/bench_peers.py."""
import sys, os, time, json
import numpy as np
sys.path.insert(0, os.environ.get("BENCH_PEERS_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tools")))
from bench_peers import read_vecs
ds, lib, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
meta = json.load(open(os.path.join(ds, "meta.json")))
cosine = meta["metric"].lower() not in ("l2", "euclidean")
X = read_vecs(ds, "base").astype(np.float32)
if cosine:
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
t, c = time.perf_counter(), time.process_time()
if lib == "hnswlib":
    import hnswlib
    ix = hnswlib.Index(space="cosine" if cosine else "l2", dim=X.shape[1])
    ix.init_index(max_elements=len(X), M=16, ef_construction=200, random_seed=100)
    ix.add_items(X, np.arange(len(X)), num_threads=threads)
elif lib == "usearch":
    from usearch.index import Index
    ix = Index(ndim=X.shape[1], metric="cos" if cosine else "l2sq", dtype="f32", connectivity=16, expansion_add=200)
    ix.add(np.arange(len(X), dtype=np.uint64), X, threads=threads)
else:
    import faiss
    faiss.omp_set_num_threads(threads)
    ix = faiss.IndexHNSWFlat(X.shape[1], 16, faiss.METRIC_INNER_PRODUCT if cosine else faiss.METRIC_L2)
    ix.hnsw.efConstruction = 200
    ix.add(X)
print(f"{lib} build {time.perf_counter() - t:.2f} s (wall), {time.process_time() - c:.2f} s (CPU)")
