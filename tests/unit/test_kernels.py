"""The compiled kernels give what the numpy code they replaced gave, to the last bit.

The references below are that numpy code, kept as the specification: lists are
compared across processes and versions (the in-process equals pipeline test,
snapshots written by an earlier version), so "close" is not enough.
"""

from __future__ import annotations

import heapq
from operator import itemgetter

import numpy as np
import pytest

from streamrec.core.history import MASK, WIRE, ItemHistory
from streamrec.core.items import ItemStore
from streamrec.core.kernels import (
    best_per_row,
    choose_capped,
    covisit_keep,
    covisit_merge,
    explain_numbers,
    item_features,
    pool_cut,
    top_k_rows,
)
from streamrec.core.ranking.candidates import _best_source_rank
from streamrec.core.ranking.covisit import CoVisitation
from streamrec.core.ranking.features import SOURCES


def reference_merge(parts_r, parts_w, ranks, maxes, used, mass, cosine):
    """`CoVisitation.candidates`' sums as numpy computed them before the kernel."""
    sizes = np.array([len(p) for p in parts_r], dtype=np.int64)
    w_all = np.concatenate(parts_w)
    recency = 1.0 / (1.0 + np.array(ranks, dtype=np.float64))
    weights = w_all * np.repeat(recency / np.array(maxes), sizes)
    rows_all = np.concatenate(parts_r)
    anchor_rows = np.repeat(np.array(used, dtype=np.int64), sizes)
    order = np.argsort(rows_all, kind="stable")
    rows = rows_all[order]
    new = np.concatenate(([True], rows[1:] != rows[:-1]))
    starts = np.flatnonzero(new)
    inv = np.empty(len(rows), dtype=np.int64)
    inv[order] = np.cumsum(new) - 1
    sums = np.bincount(inv, weights=weights)
    cos = np.zeros(0)
    if cosine:
        unit = w_all / np.sqrt(mass[anchor_rows] * mass[rows_all] + 1e-12)
        cos = np.bincount(inv, weights=unit * np.repeat(recency, sizes))
    return rows[starts], sums, anchor_rows[order[starts]], cos


@pytest.mark.parametrize("cosine", [False, True])
def test_covisit_merge_equals_the_numpy_sums_bit_for_bit(cosine):
    rng = np.random.default_rng(7)
    mass = rng.random(500) * 50
    slot = np.full(500, -1, dtype=np.int64)
    for _ in range(300):
        n_anchors = int(rng.integers(1, 25))
        sizes = rng.integers(1, 60, n_anchors).tolist()
        parts_r = [rng.choice(500, size, replace=False) for size in sizes]
        parts_w = [rng.random(len(p)) * rng.choice([1.0, 3.0, 1e-9]) for p in parts_r]
        ranks = sorted(rng.choice(40, n_anchors, replace=False).tolist())
        maxes = [float(w.max()) for w in parts_w]
        used = rng.choice(500, n_anchors, replace=False)
        recency = 1.0 / (1.0 + np.array(ranks, dtype=np.float64))
        got = covisit_merge(
            np.concatenate(parts_r), np.concatenate(parts_w),
            np.array([len(p) for p in parts_r], dtype=np.int64), recency / np.array(maxes),
            recency, used.astype(np.int64), mass, cosine, slot,
        )  # fmt: skip
        want = reference_merge(parts_r, parts_w, ranks, maxes, used, mass, cosine)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and np.array_equal(g, w)
        assert (slot == -1).all()  # the scratch is left as it was found


def test_the_graph_keeps_what_a_dict_per_row_kept_including_pruning_order():
    """Pairs, weights, their order and what pruning keeps, against a dict per row."""
    rng = np.random.default_rng(3)
    graph = CoVisitation(window=4, max_neighbours=12)
    ref: dict[int, dict[int, float]] = {}
    limit = 12 + 6
    session: list[int] = []
    for _ in range(20_000):
        row = int(rng.zipf(1.4) % 300)
        weight = float(rng.choice([1.0, 2.0, 4.0]))
        for other, w in graph.pairs(row, session, weight):
            for a, b in ((row, other), (other, row)):
                nb = ref.setdefault(a, {})
                nb[b] = nb.get(b, 0.0) + w
                if len(nb) > limit:
                    ref[a] = dict(heapq.nlargest(12, nb.items(), key=itemgetter(1)))
        graph.add(row, session, weight)
        session = ([] if rng.random() < 0.1 else [*session, row])[-6:]
    assert list(ref) == graph.linked_rows().tolist()
    assert all(list(graph.weights(r).items()) == list(nb.items()) for r, nb in ref.items())
    assert any(len(nb) == 12 for nb in ref.values())  # pruning happened
    back = CoVisitation.from_state(graph.state())
    assert all(list(back.weights(r).items()) == list(nb.items()) for r, nb in ref.items())
    recent = np.array(list(ref)[:30], dtype=np.int64)
    got, again = graph.candidates(recent, 20, True), back.candidates(recent, 20, True)
    assert all(np.array_equal(a, b) for a, b in zip(got, again, strict=True))


def reference_pool(sources, cov_cos, available, tiebreak, history, excluded, k, pool):
    """`CandidatePool._pool` as numpy computed it before the kernel."""
    rows = np.concatenate([s[0] for s in sources])
    which = np.repeat(np.arange(len(sources)), [len(s[0]) for s in sources])
    cand, inv = np.unique(rows, return_inverse=True)
    per_source = np.full((len(SOURCES), len(cand)), np.nan)
    per_source[which, inv] = np.concatenate([s[1] for s in sources])
    per_source[len(sources), inv[: len(sources[0][0])]] = cov_cos
    keep = available[cand].copy()
    if len(history):
        keep &= ~ItemHistory(history).contains(tiebreak[cand])
    keep &= ~np.isin(cand, excluded)
    trending_kept = np.flatnonzero(keep & ~np.isnan(per_source[1]))
    if len(trending_kept) > 2 * k:
        cut = trending_kept[np.argsort(-per_source[1, trending_kept], kind="stable")][2 * k :]
        per_source[1, cut] = np.nan
        keep &= ~np.isnan(per_source).all(axis=0)
    cand, per_source = cand[keep], per_source[:, keep]
    order = np.argsort(tiebreak[cand], kind="stable")
    cand, per_source = cand[order], per_source[:, order]
    if pool and len(cand) > pool:
        cut = np.sort(np.argsort(_best_source_rank(per_source), kind="stable")[:pool])
        cand, per_source = cand[cut], per_source[:, cut]
    return cand, per_source


def hash_rank(tiebreak: np.ndarray, n: int) -> np.ndarray:
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), tiebreak[:n]))] = np.arange(n)
    return rank


def test_the_item_store_ranks_rows_in_tiebreak_order_and_catches_up_as_it_grows():
    store = ItemStore()
    store.rows([f"sku-{i}" for i in range(1_000)])
    rank = store.hash_rank()
    assert np.array_equal(rank, hash_rank(store.tiebreak, 1_000))
    store.rows([f"new-{i}" for i in range(10)])
    assert len(store.hash_rank()) == 1_000  # a few new rows: those fall back
    store.rows([f"more-{i}" for i in range(100)])
    assert np.array_equal(store.hash_rank(), hash_rank(store.tiebreak, 1_110))


@pytest.mark.parametrize("pool", [0, 5, 30])
def test_pool_cut_equals_the_numpy_pool_bit_for_bit(pool):
    rng = np.random.default_rng(11)
    n_rows = 400
    slot = np.full(n_rows, -1, dtype=np.int64)
    tiebreak = rng.integers(-(2**62), 2**62, n_rows)
    tiebreak[:20] = tiebreak[20:40]  # equal hashes: row order decides
    # Each row's place in the (hash, row) order, as ItemStore.hash_rank keeps it: for
    # every row, for the first 200 only (rows added since have none), or for none.
    ranks = [hash_rank(tiebreak, n_rows), hash_rank(tiebreak, 200), hash_rank(tiebreak, 0)]
    for trial in range(300):
        sources = []
        for _ in range(len(SOURCES) - 1):
            r = rng.choice(n_rows, int(rng.integers(0, 80)), replace=False)
            # Coarse scores: ties within and across sources.
            sources.append((r.astype(np.int64), np.round(rng.random(len(r)), 1)))
        cov_cos = np.round(rng.random(len(sources[0][0])), 1)
        available = rng.random(n_rows) < 0.9
        history = (tiebreak[rng.choice(n_rows, 30)] & MASK).astype(WIRE)
        history = np.sort(history) if trial % 2 else history[:0]
        excluded = rng.choice(n_rows, int(rng.integers(0, 20))).astype(np.int64)
        k = int(rng.integers(1, 15))
        cand, per_source = pool_cut(
            np.concatenate([s[0] for s in sources]), np.concatenate([s[1] for s in sources]),
            np.array([len(s[0]) for s in sources], dtype=np.int64), len(SOURCES), cov_cos,
            available, tiebreak, history, excluded, slot, 2 * k, pool, ranks[trial % 3],
        )  # fmt: skip
        want = reference_pool(sources, cov_cos, available, tiebreak, history, excluded, k, pool)
        assert np.array_equal(cand, want[0])
        assert np.array_equal(per_source, want[1], equal_nan=True)
        assert (slot == -1).all()


def reference_covisit_keep(rows, scores, cos, others, keep, pool):
    """`CandidatePool._covisit_cut` as numpy computed it, given its `_allowed` mask."""
    allowed = np.flatnonzero(keep)
    if len(allowed) <= pool:
        return keep
    wanted = np.zeros(len(rows), dtype=bool)
    for s in (scores, cos):
        vals = s[allowed]
        wanted |= s >= np.partition(vals, len(vals) - pool)[len(vals) - pool]
    return keep & (wanted | np.isin(rows, others))


def test_covisit_keep_equals_the_numpy_cut():
    rng = np.random.default_rng(5)
    n_rows, pool = 600, 40
    slot = np.full(n_rows, -1, dtype=np.int64)
    tiebreak = rng.integers(-(2**62), 2**62, n_rows)
    cut_some = False
    for _ in range(300):
        rows = np.sort(rng.choice(n_rows, int(rng.integers(1, 400)), replace=False))
        scores, cos = np.round(rng.random(len(rows)), 2), np.round(rng.random(len(rows)), 2)
        others = rng.choice(n_rows, int(rng.integers(0, 50))).astype(np.int64)
        available = rng.random(n_rows) < 0.9
        history = np.sort((tiebreak[rng.choice(n_rows, 20)] & MASK).astype(WIRE))
        excluded = rng.choice(n_rows, 10).astype(np.int64)
        got = covisit_keep(rows, scores, cos, others, available, tiebreak, history, excluded,
                           slot, pool)  # fmt: skip
        keep = available[rows] & ~ItemHistory(history).contains(tiebreak[rows])
        keep &= ~np.isin(rows, excluded)
        assert np.array_equal(got, reference_covisit_keep(rows, scores, cos, others, keep, pool))
        assert (slot == -1).all()
        cut_some |= keep.sum() > got.sum()
    assert cut_some


def test_item_features_equal_the_numpy_columns_bit_for_bit():
    rng = np.random.default_rng(9)
    n_rows, n_cats = 500, 12
    slot = np.full(n_rows, -1, dtype=np.int64)
    cats = np.full((n_rows, 3), -1, dtype=np.int32)
    for r in range(n_rows):
        k = int(rng.integers(0, 4))
        cats[r, :k] = rng.choice(n_cats, k, replace=False)
    cols = np.arange(8, dtype=np.int64)
    for _ in range(200):
        rows = rng.choice(n_rows, int(rng.integers(1, 80)), replace=False).astype(np.int64)
        per_source = np.where(rng.random((7, len(rows))) < 0.5, np.nan, rng.random((7, len(rows))))
        short = rng.random(int(rng.integers(1, n_rows))) * (rng.random() < 0.9)
        long = rng.random(int(rng.integers(1, n_rows))) * 3
        sd, ld, pop_norm = rng.random(), rng.random(), float(rng.choice([0.0, rng.random()]))
        by_id = np.append(rng.random(n_cats) * (rng.random(n_cats) < 0.5), 0.0)
        aff_max = float(by_id.max())
        recent = rng.choice(n_rows, 15).astype(np.int64)
        x = np.zeros((len(rows), 8))
        item_features(x, cols, rows, per_source, short, sd, long, ld, pop_norm, cats, by_id,
                      aff_max, recent, slot)  # fmt: skip
        want = np.zeros_like(x)
        for c, src in enumerate((3, 0, 5, 6)):
            want[:, c] = np.fmax(per_source[src], 0.0)
        s = np.zeros(len(rows))
        s[rows < len(short)] = short[rows[rows < len(short)]]
        s = s * sd
        lg = np.zeros(len(rows))
        lg[rows < len(long)] = long[rows[rows < len(long)]]
        lg = lg * ld
        if pop_norm > 0:
            want[:, 4] = np.minimum(1.0, s / pop_norm)
        growth = np.where(lg > 0, 7.0 * s / np.where(lg > 0, lg, 1.0) - 1.0, 0.0)
        want[:, 5] = np.clip(growth, 0.0, 3.0) / 3.0
        if aff_max > 0:
            want[:, 6] = by_id[cats[rows]].max(axis=1) / aff_max
        want[:, 7] = np.isin(rows, recent)
        assert np.array_equal(x, want)
        assert (slot == -1).all()


def test_top_k_rows_is_the_exact_top_k_with_ties_by_column() -> None:
    rng = np.random.default_rng(3)
    n, k = 5_000, 60
    scores = rng.standard_normal((6, n)).astype(np.float32)
    scores[1] = np.round(scores[1])  # a handful of values: ties everywhere
    scores[2] = 0.0  # all tied
    step = n // (8 * k)
    scores[3] = -1.0  # only the sampled columns are high: the sample's threshold
    scores[3, ::step] = np.arange(len(scores[3, ::step]))  # keeps fewer than k
    top, cols = top_k_rows(scores, k)
    for q in range(len(scores)):
        order = np.lexsort((np.arange(n), -scores[q]))[:k]  # best first, then by column
        assert cols[q].tolist() == order.tolist()
        assert top[q].tolist() == scores[q, order].tolist()


def test_explain_numbers_equal_the_numpy_explanation() -> None:
    rng = np.random.default_rng(8)
    n, f = 50, 12
    x = np.round(rng.standard_normal((n, f)), 1)  # coarse: equal contributions
    x[3, 5] = np.nan
    x[4, :] = np.nan  # NaN sorts last
    w = np.round(rng.standard_normal(f), 1)
    w[2] = 0.0  # -0.0 and 0.0 are equal
    per_source = np.where(rng.random((7, n)) < 0.4, rng.random((7, n)), np.nan)
    chosen = rng.choice(n, 20, replace=False).astype(np.int64)
    chosen[:2] = (3, 4)
    best3, top, n_top, masks, growth = explain_numbers(x, chosen, w, per_source, 6)
    contrib = x[chosen] * w
    want3 = np.argsort(-contrib, axis=1, kind="stable")[:, :3]
    want_top = contrib[np.arange(len(chosen))[:, None], want3].round(4)
    assert best3.tolist() == want3.tolist()
    assert np.array_equal(top, want_top, equal_nan=True)
    assert n_top.tolist() == (want_top > 0).cumprod(axis=1).sum(axis=1).tolist()
    bits = 1 << np.arange(7)
    assert masks.tolist() == ((~np.isnan(per_source[:, chosen])).T @ bits).tolist()
    assert np.array_equal(growth, x[chosen, 6].round(4), equal_nan=True)


def reference_choose(ranked, leafs, k, cap):
    """`Recommender._choose` as a Python loop computed it."""
    chosen, per_cat = [], {}
    for i in ranked.tolist():
        leaf = int(leafs[i])
        if leaf >= 0:
            if per_cat.get(leaf, 0) >= cap:
                continue
            per_cat[leaf] = per_cat.get(leaf, 0) + 1
        chosen.append(i)
        if len(chosen) == k:
            break
    return chosen


def test_choose_capped_equals_the_python_loop() -> None:
    rng = np.random.default_rng(4)
    for _ in range(200):
        m = int(rng.integers(0, 80))
        leafs = rng.integers(-1, 6, m).astype(np.int32)  # -1: no category
        ranked = rng.permutation(m).astype(np.int64)
        k, cap = int(rng.integers(1, 30)), int(rng.integers(1, 4))
        got = choose_capped(ranked, leafs, k, cap).tolist()
        assert got == reference_choose(ranked, leafs, k, cap)


def test_best_per_row_equals_the_stable_sort_it_replaced() -> None:
    rng = np.random.default_rng(11)
    values = np.array([0.0, -0.0, 0.5, 1.0, np.nan, 0.25])
    for _ in range(500):
        n = int(rng.integers(0, 25))
        rows = rng.integers(0, 8, n).astype(np.int64)
        scores = rng.choice(values, n)
        order = np.lexsort((-scores, rows))  # the numpy code before the kernel
        r, s = rows[order], scores[order]
        first = np.concatenate(([True], r[1:] != r[:-1]))[: len(r)]
        got_r, got_s = best_per_row(rows, scores)
        assert np.array_equal(got_r, r[first])
        # To the bit: -0.0 against 0.0 is the first given, NaN only when alone.
        assert got_s.tobytes() == s[first].tobytes()
