#!/usr/bin/env python3
"""Build (once, saved) or load hnswlib/faiss indexes of a dataset and time single-thread searches
the way bench_peers.py does (all queries in one call, fastest of N passes).
usage: peers_qps.py DATASET OUTDIR LIB EFS PASSES [SEED]   (LIB: hnswlib, faiss or usearch;
SEED: hnswlib's random_seed, default 100; another seed builds and keeps its own index)
Needs numpy and the peer (pip install numpy hnswlib faiss-cpu usearch) and ../shared/tools/bench_peers.py
(for its readers); the first run builds with M=16, ef_construction=200 on 2 threads and saves the index in
OUTDIR, later runs load it, so rounds can alternate with ours (examples/qps.rs) on the same graphs."""
import sys, os, time, json
import numpy as np
sys.path.insert(0, os.environ.get("BENCH_PEERS_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "tools")))
from bench_peers import read_vecs, recall
ds, outdir, lib, efs, passes = sys.argv[1], sys.argv[2], sys.argv[3], [int(e) for e in sys.argv[4].split(",")], int(sys.argv[5])
meta = json.load(open(os.path.join(ds, "meta.json")))
metric = "l2" if meta["metric"].lower() in ("l2", "euclidean") else "cosine"
Q = read_vecs(ds, "query").astype(np.float32)
G = read_vecs(ds, "gt")
if metric == "cosine":
    Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
name = os.path.basename(os.path.normpath(ds))
seed = int(sys.argv[6]) if len(sys.argv) > 6 else 100
if seed != 100 and lib != "hnswlib":
    sys.exit("SEED is only wired for hnswlib")
path = os.path.join(outdir, f"{name}.{lib}" if seed == 100 else f"{name}.s{seed}.{lib}")
def load_X():
    X = read_vecs(ds, "base").astype(np.float32)
    if metric == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return X
if lib == "hnswlib":
    import hnswlib
    dim = Q.shape[1]
    ix = hnswlib.Index(space="l2" if metric == "l2" else "cosine", dim=dim)
    if os.path.exists(path):
        ix.load_index(path)
    else:
        X = load_X(); ix.init_index(max_elements=len(X), M=16, ef_construction=200, random_seed=seed)
        ix.add_items(X, np.arange(len(X)), num_threads=2); ix.save_index(path)
    def search(ef):
        ix.set_ef(max(ef, 10)); return ix.knn_query(Q, k=10, num_threads=1)[0]
elif lib == "usearch":
    from usearch.index import Index
    if os.path.exists(path):
        ix = Index.restore(path)
    else:
        X = load_X(); ix = Index(ndim=X.shape[1], metric="l2sq" if metric == "l2" else "cos", dtype="f32", connectivity=16, expansion_add=200, expansion_search=64)
        ix.add(np.arange(len(X), dtype=np.uint64), X, threads=2); ix.save(path)
    def search(ef):
        ix.expansion_search = max(ef, 10); return ix.search(Q, 10, threads=1).keys
else:
    import faiss
    faiss.omp_set_num_threads(2)
    if os.path.exists(path):
        ix = faiss.read_index(path)
    else:
        X = load_X(); ix = faiss.IndexHNSWFlat(X.shape[1], 16, faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)
        ix.hnsw.efConstruction = 200; ix.add(X); faiss.write_index(ix, path)
    faiss.omp_set_num_threads(1)
    def search(ef):
        ix.hnsw.efSearch = max(ef, 10); return ix.search(Q, 10)[1]
# Wall time and process CPU time (all threads): on a shared machine CPU time leaves out the
# time the process waited for a core, so rounds taken under load still compare fairly.
for ef in efs:
    best, best_cpu = 1e9, 1e9
    for p in range(passes):
        t, c = time.perf_counter(), time.process_time(); I = search(ef)
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    print(f"ef={ef:4} recall@10={recall(I, G):.4f} qps={len(Q)/best:8.0f} cpu_qps={len(Q)/best_cpu:8.0f}")
