#!/bin/bash
# Counts the distances hnswlib computes per query (level 0 and the levels above) on a saved
# hnswlib index, to set beside ours (`examples/qps.rs` prints dist/q) at equal recall.
#
# usage: scripts/hnswlib_distances/run.sh HNSWLIB_CHECKOUT INDEX QUERIES.fvecs GT.ivecs l2|ip EF...
#   HNSWLIB_CHECKOUT: a clone of github.com/nmslib/hnswlib (its header is copied and patched in a
#   temporary directory; the checkout is not changed). Needs g++ with C++11.
#   INDEX: saved by hnswlib (`build_hnswlib.py` here builds one with M 16, ef_construction 200).
set -euo pipefail
SRC=$1; shift
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cp -r "$SRC/hnswlib" "$WORK/hnswlib"
python3 - "$WORK/hnswlib/hnswalg.h" <<'PY'
import sys
path = sys.argv[1]
s = open(path).read()
# Level 0: count only the neighbours whose distance is computed (not yet visited), not the
# whole list as the built-in metric does.
old = """            if (collect_metrics) {
                metric_hops++;
                metric_distance_computations+=size;
            }
"""
assert s.count(old) == 1, "hnswalg.h changed: level-0 metric block not found"
s = s.replace(old, "")
old = """                if (!(visited_array[candidate_id] == visited_array_tag)) {
                    visited_array[candidate_id] = visited_array_tag;
"""
assert s.count(old) == 1, "hnswalg.h changed: level-0 visit not found"
s = s.replace(old, old + "                    metric_distance_computations++;\n")
# Upper levels of searchKnn: every listed neighbour is measured; count them apart.
knn = s.index("searchKnn(const void *query_data, size_t k, BaseFilterFunctor* isIdAllowed = nullptr) const {")
old = "metric_hops++;\n                metric_distance_computations+=size;"
at = s.index(old, knn)
s = s[:at] + "metric_hops+=size;" + s[at + len(old):]
open(path, "w").write(s)
PY
g++ -O3 -march=native -I"$WORK" -o "$WORK/count" "$HERE/count.cpp"
"$WORK/count" "$@"
