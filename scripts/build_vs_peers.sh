#!/bin/bash
# Build times on 2 threads, ours against the peers, in turns: every round builds ours with the
# coded walk (the CLI's default), with --exact-walk and as sq8, then times hnswlib, FAISS and
# USearch (scripts/peers_build.py: their add call only; ours includes reading the file and
# writing the index). Each line is appended to OUT.
#
# usage: scripts/build_vs_peers.sh DATASET_DIR NAME METRIC ROUNDS OUT [PYTHON] [INDEX_DIR]
#   PYTHON: an interpreter with numpy, hnswlib, faiss-cpu and usearch (default python3)
#   INDEX_DIR: where our indexes are written, as NAME_{coded,exact,sq8}.hnsw (default target/)
# Build the CLI first: cargo build --release -p hnsw-batch-cli
set -euo pipefail
cd "$(dirname "$0")/.."
DS=$1; NAME=$2; MET=$3; ROUNDS=$4; OUT=$5; PY=${6:-python3}; DIR=${7:-target}
BIN=target/release/hnsw-batch
TIMES=$(mktemp)
trap 'rm -f "$TIMES"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"
  for v in coded exact sq8; do
    case $v in
      coded) args=(--storage f32) ;;
      exact) args=(--storage f32 --exact-walk) ;;
      sq8) args=(--storage sq8) ;;
    esac
    /usr/bin/time -f "%e s wall %U+%S s CPU %M KB" -o "$TIMES" \
      "$BIN" build "$DS/base.fvecs" -o "$DIR/${NAME}_$v.hnsw" --metric "$MET" "${args[@]}" --threads 2 -q
    echo "ours $v $(cat "$TIMES")" | tee -a "$OUT"
  done
  for lib in hnswlib faiss usearch; do
    "$PY" scripts/peers_build.py "$DS" "$lib" 2 2>&1 | tail -1 | tee -a "$OUT"
  done
done
