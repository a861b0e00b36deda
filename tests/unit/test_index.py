"""The FAISS item index: flat and HNSW, updates, removals, exclusions, pickling."""

import pickle

import numpy as np
import pytest

pytest.importorskip("faiss")

from streamrec.core.index import ItemIndex


def unit_rows(n, dim=16, seed=0):
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def exact_top(vectors, ids, q, k):
    scores = vectors @ q
    return [ids[i] for i in np.argsort(-scores)[:k]]


@pytest.mark.parametrize("hnsw_above", [10_000, 50])
def test_search_matches_exact_inner_product(hnsw_above):
    vecs = unit_rows(400)
    ids = [f"i{n}" for n in range(400)]
    idx = ItemIndex(16, hnsw_above=hnsw_above)
    for item, v in zip(ids, vecs, strict=True):
        idx.upsert(item, v)
    assert idx.hnsw == (hnsw_above == 50) and len(idx) == 400
    queries = unit_rows(20, seed=1)
    got = idx.search(queries, 10)
    recall = np.mean(
        [len({i for i, _ in g} & set(exact_top(vecs, ids, q, 10))) / 10
         for g, q in zip(got, queries, strict=True)]
    )  # fmt: skip
    assert recall == 1.0 if hnsw_above == 10_000 else recall >= 0.95
    assert all(g[0][1] >= g[-1][1] for g in got)


@pytest.mark.parametrize("hnsw_above", [10_000, 5])
def test_updates_removals_and_exclusions(hnsw_above):
    idx = ItemIndex(2, hnsw_above=hnsw_above)
    for n, angle in enumerate(np.linspace(0, 1.5, 10)):
        idx.upsert(f"i{n}", np.array([np.cos(angle), np.sin(angle)]))
    q = np.array([[0.995, -0.0998]], dtype=np.float32)
    assert [i for i, _ in idx.search(q, 2)[0]] == ["i0", "i1"]
    idx.upsert("i9", q[0])  # moved onto the query
    assert idx.search(q, 1)[0][0][0] == "i9" and len(idx) == 10
    idx.remove("i9")
    assert "i9" not in idx and idx.get("i9") is None
    assert [i for i, _ in idx.search(q, 2, exclude=[{"i0"}])[0]] == ["i1", "i2"]
    assert not idx.remove("nope")


def test_hnsw_compacts_after_many_updates():
    idx = ItemIndex(8, hnsw_above=10)
    vecs = unit_rows(50, dim=8)
    for n in range(50):
        idx.upsert(f"i{n}", vecs[n])
    for round_ in range(30):  # 1,500 updates: dead rows pile up, then a rebuild
        for n in range(50):
            idx.upsert(f"i{n}", vecs[(n + round_) % 50])
    assert idx._dead <= 32 and len(idx) == 50
    assert len(idx.search(vecs[:1], 50)[0]) == 50


def test_pickle_round_trip_keeps_results_and_stays_updatable():
    idx = ItemIndex(16, hnsw_above=100)
    vecs = unit_rows(150)
    for n, v in enumerate(vecs):
        idx.upsert(f"i{n}", v)
    back = pickle.loads(pickle.dumps(idx))
    q = unit_rows(5, seed=3)
    assert back.search(q, 5) == idx.search(q, 5)
    back.upsert("new", q[0])
    assert back.search(q[:1], 1)[0][0][0] == "new"


def test_large_batches_take_the_blas_path_with_the_same_hits():
    """Exact search answers a big batch with one matrix product: same items, same order."""
    vecs = unit_rows(300)
    idx = ItemIndex(16, hnsw_above=10_000)
    for n, v in enumerate(vecs):
        idx.upsert(f"i{n}", v)
    for n in range(0, 300, 7):  # removed items must not come back from either path
        idx.remove(f"i{n}")
    idx.upsert("i1", -vecs[1])  # and an updated vector is the one searched
    queries = unit_rows(40, seed=2)
    batch = idx.search(queries, 12)  # >= EXACT_BLAS_MIN_QUERIES: BLAS
    one_by_one = [idx.search(q[None, :], 12)[0] for q in queries]  # faiss
    assert [[i for i, _ in h] for h in batch] == [[i for i, _ in h] for h in one_by_one]
    assert all(
        abs(a[1] - b[1]) < 1e-5 for x, y in zip(batch, one_by_one, strict=True)
        for a, b in zip(x, y, strict=True)
    )  # fmt: skip
    found = {i for h in batch for i, _ in h}
    assert not any(f"i{n}" in found for n in range(0, 300, 7))
    # Everything fetched when k exceeds the live items: dead rows are never padding.
    assert {i for i, _ in idx.search(queries, 1_000)[0]} == set(idx._row_of)
