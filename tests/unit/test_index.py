"""The FAISS item index on store rows: flat and HNSW, updates, removals, its saved state."""

import numpy as np
import pytest

pytest.importorskip("faiss")

from streamrec.core.retrieval.index import ItemIndex


def unit_rows(n, dim=16, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def exact_top(vectors, q, k):
    return np.argsort(-(vectors @ q))[:k].tolist()


@pytest.mark.parametrize("hnsw_above", [10_000, 50])
def test_search_matches_exact_inner_product(hnsw_above):
    vecs = unit_rows(400)
    idx = ItemIndex(16, hnsw_above=hnsw_above)
    for row, v in enumerate(vecs):
        idx.upsert(row, v)
    assert idx.hnsw == (hnsw_above == 50) and len(idx) == 400
    queries = unit_rows(20, seed=1)
    got = idx.search(queries, 10)
    recall = np.mean(
        [len(set(rows.tolist()) & set(exact_top(vecs, q, 10))) / 10
         for (rows, _s), q in zip(got, queries, strict=True)]
    )  # fmt: skip
    assert recall == 1.0 if hnsw_above == 10_000 else recall >= 0.95
    assert all(s[0] >= s[-1] for _r, s in got)


@pytest.mark.parametrize("hnsw_above", [10_000, 5])
def test_updates_and_removals(hnsw_above):
    idx = ItemIndex(2, hnsw_above=hnsw_above)
    for n, angle in enumerate(np.linspace(0, 1.5, 10)):
        idx.upsert(n, np.array([np.cos(angle), np.sin(angle)]))
    q = np.array([[0.995, -0.0998]], dtype=np.float32)
    assert idx.search(q, 2)[0][0].tolist() == [0, 1]
    idx.upsert(9, q[0])  # moved onto the query
    rows, scores = idx.search(q, 1)[0]
    assert rows.tolist() == [9] and scores[0] == pytest.approx(1.0, abs=1e-4) and len(idx) == 10
    idx.remove(9)
    assert 9 not in idx and idx.get(9) is None
    assert 9 not in idx.search(q, 10)[0][0].tolist()
    assert not idx.remove(12345)


def test_hnsw_compacts_after_many_updates_and_never_returns_an_old_vector():
    idx = ItemIndex(8, hnsw_above=10)
    vecs = unit_rows(50, dim=8)
    for n in range(50):
        idx.upsert(n, vecs[n])
    for round_ in range(30):  # 1,500 updates: stale entries pile up, then a rebuild
        for n in range(50):
            idx.upsert(n, vecs[(n + round_) % 50])
    assert idx._stale <= 32 and len(idx) == 50
    rows, scores = idx.search(vecs[:1], 50)[0]
    assert sorted(rows.tolist()) == list(range(50))  # each row once
    assert np.allclose(scores, np.round(idx._matrix[rows] @ vecs[0], 6))  # current vectors


def test_saved_state_round_trip_keeps_results_and_stays_updatable():
    for hnsw_above in (10_000, 100):
        idx = ItemIndex(16, hnsw_above=hnsw_above)
        vecs = unit_rows(150)
        for n, v in enumerate(vecs):
            idx.upsert(n, v)
        scalars, arrays = idx.state()
        back = ItemIndex.from_state(scalars, arrays, arrays["rows"], hnsw_above=hnsw_above)
        q = unit_rows(5, seed=3)
        for (a_rows, a_scores), (b_rows, b_scores) in zip(
            back.search(q, 5), idx.search(q, 5), strict=True
        ):
            assert a_rows.tolist() == b_rows.tolist() and np.allclose(a_scores, b_scores)
        back.upsert(200, q[0])
        assert back.search(q[:1], 1)[0][0].tolist() == [200]
        moved = ItemIndex.from_state(scalars, arrays, arrays["rows"] + 1000)  # rows remapped
        assert moved.search(q[:1], 1)[0][0].tolist() == [idx.search(q[:1], 1)[0][0][0] + 1000]


def test_large_batches_take_the_blas_path_with_the_same_hits():
    """Exact search answers a big batch with one matrix product: same rows, same order."""
    vecs = unit_rows(300)
    idx = ItemIndex(16, hnsw_above=10_000)
    for n, v in enumerate(vecs):
        idx.upsert(n, v)
    for n in range(0, 300, 7):  # removed rows must not come back from either path
        idx.remove(n)
    idx.upsert(1, -vecs[1])  # and an updated vector is the one searched
    queries = unit_rows(40, seed=2)
    batch = idx.search(queries, 12)  # >= EXACT_BLAS_MIN_QUERIES: BLAS
    one_by_one = [idx.search(q[None, :], 12)[0] for q in queries]  # faiss
    for (a_rows, a_scores), (b_rows, b_scores) in zip(batch, one_by_one, strict=True):
        assert a_rows.tolist() == b_rows.tolist()
        assert np.allclose(a_scores, b_scores, atol=1e-5)
    found = {r for rows, _s in batch for r in rows.tolist()}
    assert not found & set(range(0, 300, 7))
    # Everything fetched when k exceeds the live rows.
    assert set(idx.search(queries, 1_000)[0][0].tolist()) == set(idx.live_rows().tolist())


def test_similarities_are_zero_for_rows_without_a_vector():
    idx = ItemIndex(2)
    idx.upsert(3, np.array([1.0, 0.0]))
    sims = idx.similarities(np.array([3, 0, 99]), np.array([0.6, 0.8], dtype=np.float32))
    assert sims.tolist() == [0.6, 0.0, 0.0]


def test_exact_top_k_is_exact_for_every_query_and_breaks_ties_by_row():
    rng = np.random.default_rng(5)
    for n, k in [(5_000, 60), (300, 60), (61, 60), (2_000, 1)]:
        idx = ItemIndex(dim=16)
        rows = rng.permutation(2 * n)[:n]
        vecs = unit_rows(n, seed=n)
        idx.add_many(rows, vecs)
        queries = unit_rows(40, seed=n + 1)
        scores, found = idx._exact(queries, k)
        full = queries @ vecs.T
        for i in range(len(queries)):
            best = rows[np.lexsort((rows, -full[i]))[:k]]
            assert sorted(found[i].tolist()) == sorted(best.tolist())
            assert np.all(np.diff(scores[i]) <= 0)  # best first
    tied = ItemIndex(dim=2)
    tied.add_many(np.array([7, 3, 5]), np.array([[1.0, 0.0]] * 3, np.float32))
    assert tied._exact(np.array([[1.0, 0.0]] * 2, np.float32), 2)[1].tolist() == [[3, 5]] * 2


def test_bulk_loading_after_a_search_indexes_the_new_rows():
    idx = ItemIndex(dim=16)
    vecs = unit_rows(20)
    idx.add_many(np.arange(10), vecs[:10])
    idx.search(vecs[:1], k=1)  # caches the live rows
    idx.add_many(np.arange(10, 20), vecs[10:])
    assert len(idx) == 20
    assert idx.search(vecs[15:16], k=1)[0][0].tolist() == [15]
