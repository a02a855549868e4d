#!/usr/bin/env python3
"""Single-thread search QPS of our saved indexes (one per storage) against the peers, in
interleaved rounds, with the ratio at recall@10 >= 0.95 and >= 0.99.

usage: storage_vs_peers.py DATASET --ours f32=IDX [--ours sq8=IDX ...] [--peers hnswlib,faiss]
                           [--efs 16,24,32,48,64,96] [--rounds 3] [--passes 2]
                           [--qps target/release/examples/qps] [--python python3] [--raw FILE]

DATASET holds query.fvecs, gt.ivecs and meta.json (and base.* for the peers' first build).
Ours: `examples/qps.rs` on each saved index (build them with `hnsw-batch build --storage S`).
Peers: `scripts/peers_qps.py` (builds and saves its index in OUTDIR on first use; needs numpy
and the peer). Each round runs every library once, in turn; each figure is the fastest pass of
any round, both by wall time and by CPU time (time on a core: on a shared machine it leaves out
waiting for a core, so it is the fairer figure under load; the two agree on an idle machine).
For each threshold the table takes each library's smallest ef on the grid whose recall reaches
it, and divides by the best peer's QPS at its own smallest such ef. That ratio moves with where
the grid's points fall: a graph reaching 0.9490 at ef 16 is charged ef 18's speed. So a second
summary also gives each library's QPS at exactly the threshold, interpolated between the two
grid points around it (time per query linear in recall; CPU time), which is what the recall/QPS
curves themselves say; a library whose first ef already exceeds the threshold gets that point.

`--from-raw FILE` re-reads a `--raw` file of an earlier run instead of running anything."""
import argparse, collections, os, re, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("dataset")
ap.add_argument("--ours", action="append", default=[], help="NAME=INDEX (NAME: the storage)")
ap.add_argument("--peers", default="hnswlib,faiss")
ap.add_argument("--efs", default="16,24,32,48,64,96")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--passes", type=int, default=2)
ap.add_argument("--qps", default=os.path.join(here, "..", "target", "release", "examples", "qps"))
ap.add_argument("--python", default=sys.executable)
ap.add_argument("--peer-dir", default=os.path.join(here, "..", "target", "peer-indexes"))
ap.add_argument("--raw", help="also write every line of every round here")
ap.add_argument("--from-raw", help="summarise this earlier --raw file; run nothing")
a = ap.parse_args()

ds = a.dataset
os.makedirs(a.peer_dir, exist_ok=True)
runs = []
for spec in a.ours:
    name, idx = spec.split("=", 1)
    runs.append((f"ours {name}", [a.qps, idx, os.path.join(ds, "query.fvecs"), os.path.join(ds, "gt.ivecs"), a.efs, str(a.passes)]))
for p in filter(None, a.peers.split(",")):
    # `hnswlib@101`: hnswlib built with random_seed 101 (its own saved index), to see how far
    # the peer's level draws move its figures, as ours move with `--seed`.
    lib, _, seed = p.partition("@")
    runs.append((f"{p} f32", [a.python, os.path.join(here, "peers_qps.py"), ds, a.peer_dir, lib, a.efs, str(a.passes)] + ([seed] if seed else [])))

line = re.compile(r"ef=\s*(\d+) recall@10=(\S+) qps=\s*(\d+).*?cpu_qps=\s*(\d+)")
wall, cpu, rec = collections.defaultdict(int), collections.defaultdict(int), {}


def note(name, l):
    m = line.search(l)
    if m:
        k = (name, int(m.group(1)))
        rec[k] = float(m.group(2))
        wall[k] = max(wall[k], int(m.group(3)))
        cpu[k] = max(cpu[k], int(m.group(4)))


if a.from_raw:
    names = []
    for l in open(a.from_raw):
        m = re.match(r"round \d+ load \S+ \[([^]]+)\] (.*)", l)
        if m:
            if m.group(1) not in names:
                names.append(m.group(1))
            note(m.group(1), m.group(2))
else:
    raw = open(a.raw, "w") if a.raw else None
    for r in range(a.rounds):
        for name, cmd in runs:
            load = open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            for l in out.splitlines():
                if raw:
                    raw.write(f"round {r + 1} load {load} [{name}] {l}\n")
                note(name, l)
    names = [n for n, _ in runs]
efs = sorted({k[1] for k in rec})
print("recall@10 / QPS by CPU time (wall) per ef:\n")
print("| ef | " + " | ".join(f"{n}" for n in names) + " |")
print("|---:|" + "---|" * len(names))
for ef in efs:
    cells = [f"{rec[(n, ef)]:.4f} / {cpu[(n, ef)]:,} ({wall[(n, ef)]:,})".replace(",", " ") if (n, ef) in rec else "-" for n in names]
    print(f"| {ef} | " + " | ".join(cells) + " |")
print()
for t in (0.95, 0.99):
    first = {}
    for n in names:
        hit = [ef for ef in efs if rec.get((n, ef), 0) >= t]
        if hit:
            first[n] = (hit[0], cpu[(n, hit[0])], wall[(n, hit[0])])
    peers = {n: v for n, v in first.items() if not n.startswith("ours")}
    if not peers:
        continue
    best = max(peers, key=lambda n: peers[n][1])
    bc, bw = peers[best][1], peers[best][2]
    print(f"recall >= {t}: best peer {best} (ef {peers[best][0]}, {bc} QPS CPU time, {bw} wall)")
    for n in names:
        if n.startswith("ours") and n in first:
            ef, c, w = first[n]
            print(f"  {n}: ef {ef}, {c} QPS = {c / bc:.2f}x by CPU time, {w / bw:.2f}x by wall time")


def at_recall(n, t):
    """(QPS by CPU time at recall exactly t, the bracketing efs), or None if never reached."""
    pts = [(ef, rec[(n, ef)], cpu[(n, ef)]) for ef in efs if (n, ef) in rec]
    for i, (ef, r, q) in enumerate(pts):
        if r >= t:
            if i == 0:
                return q, f"ef {ef}"
            ef0, r0, q0 = pts[i - 1]
            f = (t - r0) / (r - r0)
            return 1.0 / (1.0 / q0 + f * (1.0 / q - 1.0 / q0)), f"ef {ef0}-{ef}"
    return None


print()
print("interpolated at the threshold (QPS by CPU time):")
for t in (0.95, 0.99):
    got = {n: at_recall(n, t) for n in names}
    peers = {n: v for n, v in got.items() if v and not n.startswith("ours")}
    if not peers:
        continue
    best = max(peers, key=lambda n: peers[n][0])
    bq = peers[best][0]
    print(f"recall = {t}: best peer {best} ({peers[best][1]}, {bq:.0f} QPS)")
    for n in names:
        if got[n] and n != best:
            q, where = got[n]
            print(f"  {n}: {where}, {q:.0f} QPS = {q / bq:.2f}x")
