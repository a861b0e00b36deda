"""Kernels that pick the best rows: each source's best in the pool's tie order, and the
best score per row."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def order_by_hash(rows: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Positions of `rows` sorted by their tiebreak hash, equal hashes by row."""
    keys = tiebreak[rows]
    order = np.argsort(keys)
    i = 0
    n = order.shape[0]
    while i < n:  # runs of equal hashes (a collision: rare) sorted by row
        j = i + 1
        while j < n and keys[order[j]] == keys[order[i]]:
            j += 1
        if j - i > 1:
            run = order[i:j].copy()
            order[i:j] = run[np.argsort(rows[run], kind="mergesort")]
        i = j
    return order


@njit(cache=True, nogil=True)
def source_tops(
    per_source: np.ndarray, cols: np.ndarray, cand: np.ndarray, tiebreak: np.ndarray, pool: int
) -> np.ndarray:
    """The `cols` among some source's `pool` best scores (NaN: absent), equal scores
    in the tiebreak order (hash, then row), as `pool_columns` ranks them; in `cols`'
    order."""
    n_src = per_source.shape[0]
    m = cols.shape[0]
    chosen = np.zeros(per_source.shape[1], dtype=np.bool_)
    vals = np.empty(m)
    present = np.empty(m, dtype=np.int64)
    for s in range(n_src):
        row = per_source[s]
        p = 0
        for c in cols:
            v = row[c]
            if v == v:
                vals[p] = v
                present[p] = c
                p += 1
        if p <= pool:
            for i in range(p):
                chosen[present[i]] = True
            continue
        t = -np.partition(-vals[:p], pool - 1)[pool - 1]  # the pool-th best score
        above = 0
        n_ties = 0
        for i in range(p):
            if vals[i] > t:
                chosen[present[i]] = True
                above += 1
            elif vals[i] == t:
                n_ties += 1
        ties = np.empty(n_ties, dtype=np.int64)
        n_ties = 0
        for i in range(p):
            if vals[i] == t:
                ties[n_ties] = present[i]
                n_ties += 1
        if n_ties > pool - above:
            ties = ties[order_by_hash(cand[ties], tiebreak)][: pool - above]
        for c in ties:
            chosen[c] = True
    out = np.empty(m, dtype=np.int64)
    n = 0
    for c in cols:
        if chosen[c]:
            out[n] = c
            n += 1
    return out[:n]


@njit(cache=True, nogil=True)
def best_per_row(rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row once, ascending, with its best score: of equal ones the first given, and
    NaN only for a row that has nothing else (as a stable sort by row, then by score
    descending, keeps first)."""
    order = np.argsort(rows, kind="mergesort")
    out_r = np.empty(rows.shape[0], dtype=np.int64)
    out_s = np.empty(rows.shape[0], dtype=np.float64)
    k = -1
    for i in order:
        r, v = rows[i], scores[i]
        if k < 0 or out_r[k] != r:
            k += 1
            out_r[k] = r
            out_s[k] = v
        elif v > out_s[k] or (out_s[k] != out_s[k] and v == v):
            out_s[k] = v
    return out_r[: k + 1], out_s[: k + 1]
