"""Kernels of the candidates: co-visitation sums, what may be shown, the pool cut."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from streamrec.core.kernels.tops import order_by_hash, source_tops


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
    order = _scan_order(uniq[:k], slot)
    out_cos = cos[:k][order] if cosine else cos
    return uniq[:k][order], sums[:k][order], first[:k][order], out_cos


@njit(cache=True, nogil=True)
def _scan_order(keys: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """Positions of the distinct `keys` in ascending order, given `slot[keys[i]] == i`;
    leaves `slot` at -1 for them.

    A sort of thousands of keys costs ~40 ns each here; when they fill a good share
    of their range, reading the range of `slot` in order costs under 1 ns a cell.
    """
    m = keys.shape[0]
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    lo = keys.min()
    hi = keys.max()
    if m < 64 or hi - lo + 1 > 64 * m:
        for i in range(m):
            slot[keys[i]] = -1
        return np.argsort(keys)
    out = np.empty(m, dtype=np.int64)
    t = 0
    for key in range(lo, hi + 1):
        i = slot[key]
        if i >= 0:
            out[t] = i
            t += 1
            slot[key] = -1
    return out


@njit(cache=True, nogil=True)
def _order_by_rank(
    rows: np.ndarray, rank: np.ndarray, tiebreak: np.ndarray, slot: np.ndarray
) -> np.ndarray:
    """`_order_by_hash` of distinct `rows`, through each row's precomputed place in
    the (hash, row) order (`ItemStore.hash_rank`); rows without one fall back."""
    m = rows.shape[0]
    if m < 64:
        return order_by_hash(rows, tiebreak)
    keys = np.empty(m, dtype=np.int64)
    for i in range(m):
        r = rows[i]
        if r >= rank.shape[0] or rank[r] < 0:
            return order_by_hash(rows, tiebreak)
        keys[i] = rank[r]
    for i in range(m):
        slot[keys[i]] = i
    return _scan_order(keys, slot)


@njit(cache=True, nogil=True)
def _in_sorted(values: np.ndarray, x: np.int64) -> bool:
    lo, hi = 0, values.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < values.shape[0] and values[lo] == x


@njit(cache=True, nogil=True)
def allowed(
    rows: np.ndarray,
    available: np.ndarray,
    tiebreak: np.ndarray,
    history: np.ndarray,
    excluded: np.ndarray,
    slot: np.ndarray,
) -> np.ndarray:
    """Which `rows` may be shown: available, 32-bit tiebreak hash not in the sorted
    `history`, not among the `excluded` rows."""
    for r in excluded:
        slot[r] = 0
    keep = np.empty(rows.shape[0], dtype=np.bool_)
    # A search of the history per candidate cost more than the rest of the pool cut:
    # a 64k-bit filter on the hashes' low 16 bits answers most of them "not had".
    filtered = history.shape[0] > 8 and rows.shape[0] > 32
    bits = np.zeros(1024 if filtered else 0, dtype=np.uint64)
    if filtered:
        for x in history:
            v = np.int64(x) & 0xFFFF
            bits[v >> 6] |= np.uint64(1) << np.uint64(v & 63)
    for c in range(rows.shape[0]):
        r = rows[c]
        ok = available[r] and slot[r] < 0
        if ok and history.shape[0]:
            key = tiebreak[r] & 0xFFFFFFFF
            if filtered:
                v = key & 0xFFFF
                if bits[v >> 6] & (np.uint64(1) << np.uint64(v & 63)):
                    ok = not _in_sorted(history, key)
            else:
                ok = not _in_sorted(history, key)
        keep[c] = ok
    for r in excluded:
        slot[r] = -1
    return keep


@njit(cache=True, nogil=True)
def covisit_keep(
    rows: np.ndarray,
    scores: np.ndarray,
    cos: np.ndarray,
    others: np.ndarray,
    available: np.ndarray,
    tiebreak: np.ndarray,
    history: np.ndarray,
    excluded: np.ndarray,
    slot: np.ndarray,
    pool: int,
) -> np.ndarray:
    """Which co-visited `rows` can reach a pool of `pool`: allowed, and among the
    `pool` best allowed by `scores` or by `cos` (ties included), or proposed by
    another source too (`others`)."""
    keep = allowed(rows, available, tiebreak, history, excluded, slot)
    idx = np.flatnonzero(keep)
    n = idx.shape[0]
    if n <= pool:
        return keep
    t1 = np.partition(scores[idx], n - pool)[n - pool]
    t2 = np.partition(cos[idx], n - pool)[n - pool]
    for r in others:
        slot[r] = 0
    for c in range(rows.shape[0]):
        if keep[c]:
            keep[c] = scores[c] >= t1 or cos[c] >= t2 or slot[rows[c]] == 0
    for r in others:
        slot[r] = -1
    return keep


@njit(cache=True, nogil=True)
def _best_k_by_score(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the `k` best `scores` (all of them if fewer), best first, equal
    scores by position; `scores` has no NaN."""
    p = scores.shape[0]
    if p <= k:
        return np.argsort(-scores, kind="mergesort")
    t = -np.partition(-scores, k - 1)[k - 1]  # the k-th best score
    pick = np.empty(k, dtype=np.int64)
    n = 0
    for i in range(p):
        if scores[i] > t:
            pick[n] = i
            n += 1
    for i in range(p):
        if n == k:
            break
        if scores[i] == t:
            pick[n] = i
            n += 1
    pick = np.sort(pick)  # position order again, so the stable sort keeps it for ties
    return pick[np.argsort(-scores[pick], kind="mergesort")]


@njit(cache=True, nogil=True)
def pool_columns(per_source: np.ndarray, pool: int) -> np.ndarray:
    """The `pool` columns (of more) with the smallest `best_source_rank`, equal values
    by column, in column order.

    Only ranks below `pool` are computed: once a source has `pool` or more items,
    its first `pool` are `pool` columns ranked below `pool`, so a column ranked
    `pool` or worse everywhere is never among the smallest `pool`.
    """
    n_src, m = per_source.shape
    best_rank = np.full(m, np.inf)
    best = np.full(m, np.nan)
    present = np.empty(m, dtype=np.int64)
    for s in range(n_src):
        row = per_source[s]
        p = 0
        for j in range(m):
            v = row[j]
            if v == v:  # not NaN
                present[p] = j
                p += 1
                if not best[j] >= v:  # fmax: NaN loses
                    best[j] = v
        if p:
            idx = present[:p]
            top = _best_k_by_score(row[idx], pool)
            for r in range(top.shape[0]):
                j = idx[top[r]]
                if r < best_rank[j]:
                    best_rank[j] = r
    value = np.empty(m)
    for j in range(m):
        b = min(max(best[j], 0.0), 1.0) if best[j] == best[j] else best[j]
        value[j] = best_rank[j] + (1.0 - b) * 0.5
    v_k = np.partition(value, pool - 1)[pool - 1]
    below = 0
    for j in range(m):
        if value[j] < v_k:
            below += 1
    ties = pool - below  # columns at exactly v_k that make the pool, the first ones
    out = np.empty(pool, dtype=np.int64)
    n = 0
    for j in range(m):
        if value[j] < v_k or (value[j] == v_k and ties > 0):
            if value[j] == v_k:
                ties -= 1
            out[n] = j
            n += 1
    return out


@njit(cache=True, nogil=True)
def pool_cut(
    rows_all: np.ndarray,
    scores_all: np.ndarray,
    sizes: np.ndarray,
    n_sources: int,
    cov_cos: np.ndarray,
    available: np.ndarray,
    tiebreak: np.ndarray,
    history: np.ndarray,
    excluded: np.ndarray,
    slot: np.ndarray,
    trending_max: int,
    pool: int,
    hash_rank: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The union of the sources' rows, what may be shown of it, cut to `pool`.

    `rows_all`/`scores_all`: the sources concatenated (co-visitation first, its
    cosine scores in `cov_cos` for row `n_sources - 1` of the matrix; trending
    second), `sizes[s]` each. Not shown: unavailable rows, rows whose 32-bit
    tiebreak hash is in the sorted `history`, and `excluded` rows. Trending keeps
    its `trending_max` best allowed rows (equal scores: the lower row). Returns
    (rows in tiebreak order, equal hashes by row; the n_sources x len(rows) score
    matrix, NaN where a source lacks a row); no rows when nothing may be shown.
    """
    n = rows_all.shape[0]
    uniq = np.empty(n, dtype=np.int64)
    group = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        r = rows_all[i]
        g = slot[r]
        if g < 0:
            g = m
            slot[r] = m
            uniq[m] = r
            m += 1
        group[i] = g
    for j in range(m):
        slot[uniq[j]] = -1
    cand = uniq[:m]  # columns in order of first appearance
    per_source = np.full((n_sources, m), np.nan)
    i = 0
    for s in range(sizes.shape[0]):
        for _ in range(sizes[s]):
            per_source[s, group[i]] = scores_all[i]
            i += 1
    for i in range(cov_cos.shape[0]):
        per_source[n_sources - 1, group[i]] = cov_cos[i]
    keep = allowed(cand, available, tiebreak, history, excluded, slot)
    # Trending offers its `trending_max` best allowed rows, equal scores by row.
    trend = np.empty(m, dtype=np.int64)
    t = 0
    for c in range(m):
        if keep[c] and per_source[1, c] == per_source[1, c]:
            trend[t] = c
            t += 1
    if t > trending_max:
        idx = trend[:t]
        if trending_max > 0:
            cut = -np.partition(-per_source[1][idx], trending_max - 1)[trending_max - 1]
        else:
            cut = np.inf
        above = 0
        for c in idx:
            if per_source[1, c] > cut:
                above += 1
        at_cut = np.empty(t, dtype=np.int64)  # equal to the cut: the lowest rows stay
        a = 0
        for c in idx:
            v = per_source[1, c]
            if v < cut:
                per_source[1, c] = np.nan
            elif v == cut:
                at_cut[a] = c
                a += 1
        if a:
            ties = at_cut[:a]
            ties = ties[np.argsort(cand[ties], kind="mergesort")]
            for c in ties[trending_max - above :]:
                per_source[1, c] = np.nan
        for c in idx:  # a row only trending proposed is gone with it
            if per_source[1, c] != per_source[1, c]:
                any_score = False
                for s in range(n_sources):
                    if per_source[s, c] == per_source[s, c]:
                        any_score = True
                        break
                keep[c] = any_score
    kept = np.flatnonzero(keep)
    if kept.shape[0] == 0:
        return cand[:0].copy(), per_source[:, :0].copy()
    if pool and kept.shape[0] > pool:
        # Only a column among some source's `pool` best can make the pool (each such
        # column ranks below `pool` somewhere, and there are at least `pool` of them),
        # and the ranks within a source do not change when the others are left out.
        kept = source_tops(per_source, kept, cand, tiebreak, pool)
        kept = kept[_order_by_rank(cand[kept], hash_rank, tiebreak, slot)]
        kept = kept[pool_columns(np.ascontiguousarray(per_source[:, kept]), pool)]
    else:
        kept = kept[_order_by_rank(cand[kept], hash_rank, tiebreak, slot)]
    return cand[kept], np.ascontiguousarray(per_source[:, kept])
