#!/usr/bin/env python3
"""Summarises interleaved rounds of examples/qps.rs and scripts/peers_qps.py output (headers "ours f32:",
"hnswlib f32:", ...): per library and ef, recall and the fastest round; then the smallest ef reaching recall
0.95 and 0.99 with its QPS. usage: summarise_rounds.py FILE"""
import re, collections, sys
txt=open(sys.argv[1]).read()
cur=None; data=collections.defaultdict(lambda: collections.defaultdict(list)); rec={}
for line in txt.splitlines():
    m=re.match(r'^(ours \w+|hnswlib f32|faiss f32|usearch f32):',line)
    if m: cur=m.group(1); continue
    m=re.match(r'ef=\s*(\d+) recall@10=([0-9.]+) qps=\s*(\d+)',line)
    if m and cur:
        ef=int(m.group(1)); data[cur][ef].append(int(m.group(3))); rec[(cur,ef)]=float(m.group(2))
for lib in data:
    print(f"{lib:12}", ' '.join(f"ef{ef}:{rec[(lib,ef)]:.4f}/{max(v)}" for ef,v in sorted(data[lib].items())))
def at(lib,thr):
    for ef in sorted(data[lib]):
        if rec[(lib,ef)]>=thr: return ef, max(data[lib][ef])
    return None
for thr in (0.95,0.99):
    print(thr, {lib: at(lib,thr) for lib in data})
