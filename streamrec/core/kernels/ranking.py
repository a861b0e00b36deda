"""Kernels of ranking: the gathered features, the per-category cap, the explanations' numbers."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def item_features(
    x: np.ndarray,
    cols: np.ndarray,
    rows: np.ndarray,
    per_source: np.ndarray,
    short_scaled: np.ndarray,
    short_decay: float,
    long_scaled: np.ndarray,
    long_decay: float,
    pop_norm: float,
    cats: np.ndarray,
    affinity_by_id: np.ndarray,
    affinity_max: float,
    recent: np.ndarray,
    slot: np.ndarray,
) -> None:
    """The feature columns that are gathers, into `x` (one row per candidate).

    `cols`: the columns of query_match, covisit, sequence, covisit_idf,
    popularity, growth, affinity and seen. Sources' scores (NaN: not proposed)
    count 0 and never below; popularity is the short-term score over `pop_norm`
    (the best item's), at most 1 (0 when `pop_norm` <= 0); growth is 7 x short
    over long - 1 (the half-lives' ratio: 0 for steady demand), clipped to
    [0, 3] and over 3; affinity is the best of the item's categories' in
    `affinity_by_id` (its last entry: no category) over `affinity_max` (0 when
    that is 0); seen is 1 for `recent` rows.
    """
    n_short = short_scaled.shape[0]
    n_long = long_scaled.shape[0]
    no_cat = affinity_by_id.shape[0] - 1
    for r in recent:
        slot[r] = 0
    for i in range(rows.shape[0]):
        r = rows[i]
        for c, src in ((0, 3), (1, 0), (2, 5), (3, 6)):
            v = per_source[src, i]
            x[i, cols[c]] = v if v > 0.0 else 0.0
        short = (short_scaled[r] if r < n_short else 0.0) * short_decay
        long = (long_scaled[r] if r < n_long else 0.0) * long_decay
        if pop_norm > 0:
            x[i, cols[4]] = min(1.0, short / pop_norm)
        g = 7.0 * short / long - 1.0 if long > 0 else 0.0
        x[i, cols[5]] = min(max(g, 0.0), 3.0) / 3.0
        if affinity_max != 0.0:
            best = -np.inf
            for c in cats[r]:
                a = affinity_by_id[c if c >= 0 else no_cat]
                if a > best:
                    best = a
            x[i, cols[6]] = best / affinity_max
        x[i, cols[7]] = 1.0 if slot[r] == 0 else 0.0
    for r in recent:
        slot[r] = -1


@njit(cache=True, nogil=True)
def choose_capped(ranked: np.ndarray, leafs: np.ndarray, k: int, cap: int) -> np.ndarray:
    """The first `k` of `ranked` (positions into `leafs`) with at most `cap` of one leaf
    category (ids from 0; below 0: no category, never capped)."""
    top = -1
    for i in range(leafs.shape[0]):
        if leafs[i] > top:
            top = leafs[i]
    per_cat = np.zeros(top + 1, dtype=np.int64)
    out = np.empty(min(k, ranked.shape[0]), dtype=np.int64)
    n = 0
    for i in ranked:
        if n == out.shape[0]:
            break
        leaf = leafs[i]
        if leaf >= 0:
            if per_cat[leaf] >= cap:
                continue
            per_cat[leaf] += 1
        out[n] = i
        n += 1
    return out[:n]


@njit(cache=True, nogil=True)
def _taken(picked: np.ndarray, n: int, j: int) -> bool:
    """Is `j` among the first `n` of `picked`?"""
    for u in range(n):  # noqa: SIM110 - a loop: numba compiles no generator into any()
        if picked[u] == j:
            return True
    return False


@njit(cache=True, nogil=True)
def explain_numbers(
    x: np.ndarray,
    chosen: np.ndarray,
    weights: np.ndarray,
    per_source: np.ndarray,
    growth_col: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The numbers behind the explanations of the `chosen` rows of `x`.

    Per chosen row: its three largest contributions `x * weights` (equal ones by
    feature, as a stable sort puts them) as feature indices and values rounded
    to 4 places; how many of those are positive before the first that is not;
    which sources (rows of `per_source`) scored it, one bit each; and its growth
    feature rounded to 4 places.
    """
    c, f = chosen.shape[0], x.shape[1]
    best3 = np.empty((c, 3), dtype=np.int64)
    top = np.empty((c, 3))
    n_top = np.zeros(c, dtype=np.int64)
    masks = np.zeros(c, dtype=np.int64)
    growth = np.empty(c)
    contrib = np.empty(f)
    for i in range(c):
        r = chosen[i]
        for j in range(f):
            contrib[j] = x[r, j] * weights[j]
        for t in range(3):
            best = -1
            for j in range(f):  # the largest not taken yet; the first of equals
                better = best < 0 or contrib[j] > contrib[best]
                if contrib[j] == contrib[j] and better and not _taken(best3[i], t, j):
                    best = j
            if best < 0:  # only NaN left: the lowest index not taken (a sort puts NaN last)
                for j in range(f):
                    if not _taken(best3[i], t, j):
                        best = j
                        break
            best3[i, t] = best
            top[i, t] = np.round(contrib[best], 4)
        for t in range(3):
            if not top[i, t] > 0:
                break
            n_top[i] += 1
        for s in range(per_source.shape[0]):
            v = per_source[s, r]
            if v == v:
                masks[i] |= 1 << s
        growth[i] = np.round(x[r, growth_col], 4)
    return best3, top, n_top, masks, growth
