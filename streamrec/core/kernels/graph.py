"""Kernels of the co-visitation graph: neighbours kept in one arena, learned and read in place.

Each row's neighbours are a block of two flat arrays (`nbr` rows, `w`
weights): the block starts at `start[row]` (-1: no neighbours yet), holds
`n[row]` of `cap[row]` slots, first seen first, and `top[row]` is its
strongest weight. A block that fills moves to the arena's end with twice
the room (at most `limit + 1`: a row is pruned as soon as it passes `limit`);
the caller grows the arena, or compacts it when moved-out blocks make up
half of it, when a call returns early.

Learning a pair and reading an anchor's neighbours are one compiled call per
event or list, instead of a Python object and a dict per row (a full row's dict
of 300 neighbours held ~18 KB). Every sum is taken in the order the per-row
arrays took it, so lists are identical to the last bit.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from streamrec.core.kernels.candidates import covisit_merge

#: The first block a row gets.
FIRST_CAP = 8
#: The arena, as the kernels take it: per row `start`, `n`, `cap` (int64) and `top`
#: (float64); the blocks' `nbr` (int64) and `w` (float64); `order` (int64: rows in the
#: order they got a block); `counts` (int64: [slots used, slots in moved-out blocks,
#: rows with a block]).
Arena = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
              np.ndarray, np.ndarray]  # fmt: skip


#: How `graph_add` reads a pair (row, other, weight): learn it both ways (row's
#: neighbour other, other's neighbour row), learn it one way (other -> row: what came
#: next), or set row's neighbour other to the weight (a snapshot being loaded).
BOTH_WAYS, ONE_WAY, PUT = 0, 1, 2


@njit(cache=True, nogil=True)
def _room(a: int, put: bool, start: np.ndarray, n: np.ndarray, cap: np.ndarray, limit: int) -> int:
    """Arena slots that adding one neighbour to row `a` can take (a new or a moved block)."""
    if start[a] < 0:
        return min(FIRST_CAP, limit + 1)
    if n[a] < cap[a]:
        return 0
    # At most `limit + 1`: one more is pruned at once (a snapshot's rows can be longer).
    return 2 * cap[a] if put else min(2 * cap[a], limit + 1)


@njit(cache=True, nogil=True)
def _add_one(a: int, b: int, x: float, put: bool, arena: Arena, limit: int, keep: int) -> None:
    """Neighbour `b` of row `a` gains `x` (or, with `put`, is set to it); the arena has
    the room (`_room`)."""
    start, n, cap, top, nbr, w, order, counts = arena
    s = start[a]
    if s < 0:
        room = min(FIRST_CAP, limit + 1)
        s = counts[0]
        start[a] = s
        cap[a] = room
        n[a] = 0
        top[a] = 0.0
        counts[0] += room
        order[counts[2]] = a
        counts[2] += 1
    m = n[a]
    for j in range(m):
        if nbr[s + j] == b:
            if put:
                w[s + j] = x
                t = w[s]
                for u in range(1, m):
                    if w[s + u] > t:
                        t = w[s + u]
                top[a] = t
            else:
                v = w[s + j] + x
                w[s + j] = v
                if v > top[a]:
                    top[a] = v
            return
    if m == cap[a]:  # full: the block moves to the arena's end, with more room
        room = _room(a, put, start, n, cap, limit)
        t0 = counts[0]
        for j in range(m):
            nbr[t0 + j] = nbr[s + j]
            w[t0 + j] = w[s + j]
        counts[1] += cap[a]
        counts[0] += room
        s = t0
        start[a] = s
        cap[a] = room
    nbr[s + m] = b
    w[s + m] = x
    n[a] = m + 1
    if x > top[a]:
        top[a] = x
    if not put and m + 1 > limit:
        _keep_strongest(s, m + 1, keep, nbr, w)
        n[a] = keep
        t = w[s]
        for j in range(1, keep):
            if w[s + j] > t:
                t = w[s + j]
        top[a] = t


@njit(cache=True, nogil=True)
def _pair(
    row: int, other: int, x: float, how: int, mass: np.ndarray, arena: Arena, limit: int, keep: int
) -> bool:
    """One pair, read as `how` says; False (nothing done) when the arena lacks room."""
    start, n, cap, _top, nbr, _w, _order, counts = arena
    put = how == PUT
    need = _room(row, put, start, n, cap, limit) if how != ONE_WAY else 0
    if how != PUT:
        need += _room(other, put, start, n, cap, limit)
    if counts[0] + need > nbr.shape[0]:
        return False
    if how == PUT:
        _add_one(row, other, x, True, arena, limit, keep)
        return True
    mass[row] += x
    mass[other] += x
    if how == BOTH_WAYS:
        _add_one(row, other, x, False, arena, limit, keep)
    _add_one(other, row, x, False, arena, limit, keep)
    return True


@njit(cache=True, nogil=True)
def graph_add(
    rows: np.ndarray,
    others: np.ndarray,
    ws: np.ndarray,
    first: int,
    how: int,
    mass: np.ndarray,
    arena: Arena,
    limit: int,
    keep: int,
) -> int:
    """Pairs (rows[i], others[i], ws[i]) from `first` on, read as `how` says (`BOTH_WAYS`,
    `ONE_WAY`, `PUT`); the index of the first pair not done (the arena is full: make
    room, call again from there), `len(ws)` when all are.

    Learning adds the weight to both rows' `mass` and to the neighbours' weights. A
    row past `limit` neighbours keeps its `keep` strongest, strongest first, equals in
    the order they came.
    """
    for i in range(first, ws.shape[0]):
        if not _pair(rows[i], others[i], ws[i], how, mass, arena, limit, keep):
            return i
    return ws.shape[0]


@njit(cache=True, nogil=True)
def graph_learn(
    row: int,
    previous: np.ndarray,
    weight: float,
    decay: bool,
    first: int,
    how: int,
    mass: np.ndarray,
    arena: Arena,
    limit: int,
    keep: int,
) -> int:
    """`graph_add` of one event's pairs: `row` with each of `previous` (newest last, the
    window already cut) but itself, weighted `weight / distance` with `decay`."""
    i = 0
    for d in range(1, previous.shape[0] + 1):
        other = previous[previous.shape[0] - d]
        if other == row:
            continue
        if i >= first:
            x = weight / d if decay else weight
            if not _pair(row, other, x, how, mass, arena, limit, keep):
                return i
        i += 1
    return -1


@njit(cache=True, nogil=True)
def _keep_strongest(s: int, m: int, keep: int, nbr: np.ndarray, w: np.ndarray) -> None:
    """The block's `keep` strongest first (a stable sort: equals in the order they came)."""
    order = np.argsort(-w[s : s + m], kind="mergesort")[:keep]
    kept_r = nbr[s : s + m][order]
    kept_w = w[s : s + m][order]
    for j in range(keep):
        nbr[s + j] = kept_r[j]
        w[s + j] = kept_w[j]


@njit(cache=True, nogil=True)
def graph_compact(
    order: np.ndarray,
    rows: int,
    start: np.ndarray,
    n: np.ndarray,
    cap: np.ndarray,
    nbr: np.ndarray,
    w: np.ndarray,
    new_nbr: np.ndarray,
    new_w: np.ndarray,
) -> int:
    """Copy every block into `new_nbr`/`new_w`, in `order`, each with its room; the
    slots used (`start` now points into the new arrays)."""
    t = 0
    for i in range(rows):
        a = order[i]
        s = start[a]
        for j in range(n[a]):
            new_nbr[t + j] = nbr[s + j]
            new_w[t + j] = w[s + j]
        start[a] = t
        t += cap[a]
    return t


@njit(cache=True, nogil=True)
def graph_pairs(
    order: np.ndarray, rows: int, start: np.ndarray, n: np.ndarray, nbr: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, neighbour, weight) of every pair: rows in `order`, neighbours first seen first."""
    total = 0
    for i in range(rows):
        total += n[order[i]]
    src = np.empty(total, dtype=np.int64)
    dst = np.empty(total, dtype=np.int64)
    out_w = np.empty(total, dtype=np.float64)
    t = 0
    for i in range(rows):
        a = order[i]
        s = start[a]
        for j in range(n[a]):
            src[t] = a
            dst[t] = nbr[s + j]
            out_w[t] = w[s + j]
            t += 1
    return src, dst, out_w


@njit(cache=True, nogil=True)
def _to_one(sums: np.ndarray) -> np.ndarray:
    if sums.shape[0] == 0:
        return sums
    t = sums.max()
    return sums / t if t > 0 else np.zeros(sums.shape[0])


@njit(cache=True, nogil=True)
def graph_candidates(
    recent: np.ndarray,
    anchors: int,
    start: np.ndarray,
    n: np.ndarray,
    top: np.ndarray,
    nbr: np.ndarray,
    w: np.ndarray,
    mass: np.ndarray,
    cosine: bool,
    slot: np.ndarray,
    prior: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The neighbours of the newest `anchors` of `recent` (oldest first): (rows sorted,
    sums over the best, the newest anchor that led to each, cosine sums over their best:
    empty without `cosine`).

    An anchor of age `r` (0: the newest) counts 1 / (1 + r) over its strongest weight
    plus `prior`; anchors with no neighbours keep their age and add nothing
    (`covisit_merge` sums).
    """
    k = min(anchors, recent.shape[0])
    used = np.empty(k, dtype=np.int64)
    ranks = np.empty(k, dtype=np.float64)
    g = 0
    total = 0
    for r in range(k):
        a = recent[recent.shape[0] - 1 - r]
        if 0 <= a < start.shape[0] and start[a] >= 0:
            used[g] = a
            ranks[g] = r
            total += n[a]
            g += 1
    if g == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0)
    rows_all = np.empty(total, dtype=np.int64)
    w_all = np.empty(total, dtype=np.float64)
    sizes = np.empty(g, dtype=np.int64)
    maxes = np.empty(g, dtype=np.float64)
    t = 0
    for i in range(g):
        a = used[i]
        s = start[a]
        m = n[a]
        for j in range(m):
            rows_all[t + j] = nbr[s + j]
            w_all[t + j] = w[s + j]
        t += m
        sizes[i] = m
        maxes[i] = top[a]
    recency = 1.0 / (1.0 + ranks[:g])
    rows, sums, first, cos = covisit_merge(
        rows_all, w_all, sizes, recency / (maxes + prior), recency, used[:g], mass, cosine, slot
    )
    return rows, _to_one(sums), first, _to_one(cos)
