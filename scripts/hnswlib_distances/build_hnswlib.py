"""Builds an hnswlib index (M 16, ef_construction 200, 2 threads) from an .fvecs file and saves it.

usage: build_hnswlib.py BASE.fvecs OUT SEED l2|cosine
"""
import sys

import hnswlib
import numpy as np


def read_fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:, 1:].view(np.float32).copy()


def main():
    base, out, seed, space = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    x = read_fvecs(base)
    index = hnswlib.Index(space=space, dim=x.shape[1])
    index.init_index(max_elements=len(x), M=16, ef_construction=200, random_seed=seed)
    index.add_items(x, np.arange(len(x)), num_threads=2)
    index.save_index(out)


if __name__ == "__main__":
    main()
