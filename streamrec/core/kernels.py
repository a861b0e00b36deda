"""Compiled kernels for the per-list hot path (numba, nopython, cached on disk).

A list is ranked for every event, and the state it reads changes with every
event, so its steps cannot be shared across a batch without making lists
depend on batch boundaries. What costs is not arithmetic but the number of
numpy calls per list (each 2-10 us here): a step that took 15-40 of them is
one kernel call here. Every kernel adds and multiplies in the same order as
the numpy code it replaced, so lists are identical to the last bit (the
equivalence tests in `tests/unit/test_kernels.py` hold them to that).

Kernels take a caller-owned `slot` scratch array over item rows, filled with
-1, and leave it so: a dense "row -> group" map without allocating one per
list.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def covisit_merge(
    rows_all: np.ndarray,
    w_all: np.ndarray,
    sizes: np.ndarray,
    factor: np.ndarray,
    recency: np.ndarray,
    anchors: np.ndarray,
    mass: np.ndarray,
    cosine: bool,
    slot: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sums of the anchors' neighbour weights per row.

    `rows_all`/`w_all`: the anchors' neighbours concatenated, newest anchor
    first, `sizes[a]` of them for anchor `a`. Each weight counts times
    `factor[a]`; with `cosine`, also `w / sqrt(mass[anchor] * mass[row]) *
    recency[a]` in a second sum. Returns (rows sorted, sums, the first anchor
    that led to each row, cosine sums; empty without `cosine`), sums not yet
    normalised.
    """
    n = rows_all.shape[0]
    uniq = np.empty(n, dtype=np.int64)
    sums = np.zeros(n, dtype=np.float64)
    cos = np.zeros(n if cosine else 0, dtype=np.float64)
    first = np.empty(n, dtype=np.int64)
    k = 0
    i = 0
    for a in range(sizes.shape[0]):
        f = factor[a]
        rec = recency[a]
        ar = anchors[a]
        for _ in range(sizes[a]):
            r = rows_all[i]
            g = slot[r]
            if g < 0:
                g = k
                slot[r] = k
                uniq[k] = r
                first[k] = ar
                k += 1
            w = w_all[i]
            sums[g] += w * f
            if cosine:
                cos[g] += w / math.sqrt(mass[ar] * mass[r] + 1e-12) * rec
            i += 1
    for j in range(k):
        slot[uniq[j]] = -1
    order = np.argsort(uniq[:k])
    out_cos = cos[:k][order] if cosine else cos
    return uniq[:k][order], sums[:k][order], first[:k][order], out_cos
