"""How much of the true top k the HNSW index returns, and at what cost per query.

    python scripts/hnsw_recall.py                      # 100k random unit vectors
    python scripts/hnsw_recall.py --items 20000 --ef 64,128

Builds FAISS HNSW as `core/retrieval/index.py` does (M 32, efConstruction 80,
inner product) over `rank_bench.synthetic_vectors`, asks 500 interest-like queries
(each the normalised sum of five items' vectors), one at a time on one thread,
and compares with an exact `IndexFlatIP` search. Random vectors are HNSW's worst
case; run it on real item vectors before choosing efSearch (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from streamrec.tools.rank_bench import synthetic_vectors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=60)
    ap.add_argument("--ef", default="32,48,64,96,128", help="efSearch values, comma-separated")
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    x = synthetic_vectors(args.items, 384)
    rng = np.random.default_rng(7)
    q = x[rng.integers(0, args.items, (500, 5))].sum(axis=1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    _, truth = flat.search(q, args.k)
    index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    t0 = time.perf_counter()
    index.add(x)
    print(f"{args.items:,} items, build {time.perf_counter() - t0:.1f} s")
    for ef in (int(e) for e in args.ef.split(",")):
        index.hnsw.efSearch = ef
        t0 = time.perf_counter()
        got = np.vstack([index.search(q[i : i + 1], args.k)[1] for i in range(len(q))])
        ms = (time.perf_counter() - t0) * 1000 / len(q)
        pairs = list(zip(got, truth, strict=True))
        at_k = np.mean([len(set(a) & set(b)) / args.k for a, b in pairs])
        at_10 = np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in pairs])
        print(f"efSearch {ef}: {ms:.3f} ms per query, "
              f"recall@{args.k} {at_k:.3f}, recall@10 {at_10:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
