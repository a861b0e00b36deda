"""Compiled kernels for the per-list hot path (numba, nopython, cached on disk).

A list is ranked for the state right after its event (a user's last of the
batch), and that state changes with every event, so its steps are not shared
across a batch's lists. What costs is not arithmetic but the number of
numpy calls per list (each 2-10 us here): a step that took 15-40 of them is
one kernel call here. Every kernel adds and multiplies in the same order as
the numpy code it replaced, so lists are identical to the last bit (the
equivalence tests in `tests/unit/test_kernels.py` hold them to that).

Kernels take a caller-owned `slot` scratch array over item rows, filled with
-1, and leave it so: a dense "row -> group" map without allocating one per
list.

`graph`: the co-visitation graph's arena (learning a pair, an anchor's
neighbours). `candidates`: co-visitation sums, what a user may be shown, the
pool cut; `tops`: each source's best rows, the best score per row.
`ranking`: the gathered feature columns, the per-category cap, the numbers
behind the explanations. `search`: the exact top k of a batch's vector scores.
"""

from __future__ import annotations

import numpy as np

from streamrec.core.kernels.candidates import (
    allowed,
    covisit_keep,
    covisit_merge,
    pool_cut,
)
from streamrec.core.kernels.graph import (
    graph_add,
    graph_candidates,
    graph_compact,
    graph_learn,
    graph_pairs,
)
from streamrec.core.kernels.ranking import choose_capped, explain_numbers, item_features
from streamrec.core.kernels.search import top_k_rows
from streamrec.core.kernels.tops import best_per_row

__all__ = [
    "allowed",
    "best_per_row",
    "choose_capped",
    "covisit_keep",
    "covisit_merge",
    "explain_numbers",
    "graph_add",
    "graph_candidates",
    "graph_compact",
    "graph_learn",
    "graph_pairs",
    "item_features",
    "pool_cut",
    "top_k_rows",
    "warm",
]

_warm = False


def warm() -> None:
    """Compile (or load from the on-disk cache) every kernel now, with tiny inputs.

    A cold compile takes ~10 s here: at start-up, not inside a worker's first
    batch. `scripts/_env.sh` calls it once after installing, so workers load the
    cache (~0.5 s) instead.
    """
    global _warm
    if _warm:
        return
    rows = np.zeros(1, dtype=np.int64)
    ones = np.ones(1)
    slot = np.full(2, -1, dtype=np.int64)
    covisit_merge(rows, ones, np.ones(1, dtype=np.int64), ones, ones, rows, ones, True, slot)
    start, n, cap, order = (np.full(2, -1), *(np.zeros(2, dtype=np.int64) for _ in range(3)))
    top, nbr, w, counts = np.zeros(2), np.zeros(16, np.int64), np.zeros(16), np.zeros(3, np.int64)
    arena = ((start, n, cap, top, nbr, w, order, counts), 2, 1)
    for how in range(3):
        graph_add(rows, rows + 1, ones, 0, how, np.zeros(2), *arena)
    graph_learn(0, rows + 1, 1.0, True, 0, 0, np.zeros(2), *arena)
    graph_candidates(rows, 1, start, n, top, nbr, w, np.ones(2), True, slot, 0.0)
    graph_pairs(order, 1, start, n, nbr, w)
    graph_compact(order, 1, start, n, cap, nbr, w, nbr.copy(), w.copy())
    no_history = np.zeros(0, dtype=np.uint32)
    flags = np.ones(2, dtype=np.bool_)
    hashes = np.zeros(2, dtype=np.int64)
    sizes = np.ones(1, dtype=np.int64)
    pool_cut(rows, ones, sizes, 2, ones, flags, hashes, no_history, rows[:0], slot, 1, 1, rows)
    covisit_keep(rows, ones, ones, rows, flags, hashes, no_history, rows[:0], slot, 1)
    x = np.zeros((1, 8))
    cols = np.arange(8, dtype=np.int64)
    cats = np.full((2, 1), -1, dtype=np.int32)
    item_features(x, cols, rows, np.ones((7, 1)), ones, 1.0, ones, 1.0, 1.0, cats, ones, 1.0,
                  rows, slot)  # fmt: skip
    top_k_rows(np.zeros((1, 2), dtype=np.float32), 1)
    explain_numbers(x, rows, ones.repeat(8), np.ones((7, 1)), 0)
    choose_capped(rows, cats[:1, 0], 1, 1)
    best_per_row(rows, ones)
    _warm = True
