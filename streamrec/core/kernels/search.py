"""Kernel of the exact vector search: the top k of each query's scores."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `scores` (queries x items, k < items), its `k` best columns, best
    first, equal scores by column: (scores, columns), each queries x k.

    A threshold from a strided sample of the row (its 3k-th best, estimated)
    leaves ~3k columns to sort; a row whose threshold keeps fewer than `k`
    sorts all of them. Exact whatever the threshold.
    """
    nq, n = scores.shape
    out_s = np.empty((nq, k), dtype=scores.dtype)
    out_c = np.empty((nq, k), dtype=np.int64)
    step = max(1, n // (8 * k))
    n_sample = (n + step - 1) // step
    j = min(n_sample, -(-3 * k // step))
    sample = np.empty(n_sample, dtype=scores.dtype)
    buf = np.empty(n, dtype=np.int64)
    for q in range(nq):
        row = scores[q]
        for i in range(n_sample):
            sample[i] = row[i * step]
        thr = np.partition(sample, n_sample - j)[n_sample - j]
        m = 0
        for c in range(n):
            if row[c] >= thr:
                buf[m] = c
                m += 1
        if m < k:  # the sample's threshold was too high for this row
            m = n
            for c in range(n):
                buf[c] = c
        cols = buf[:m]
        order = np.argsort(-row[cols], kind="mergesort")  # stable: columns ascending
        for r in range(k):
            c = cols[order[r]]
            out_s[q, r] = row[c]
            out_c[q, r] = c
    return out_s, out_c
