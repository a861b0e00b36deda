"""Vector wire format and the rank side's versioned item-vector store."""

import base64

import numpy as np
import pytest

from streamrec.core.retrieval.vectors import ItemVectors, decode_vectors, encode_vectors


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_wire_format_is_compact_float16_and_round_trips():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    data = encode_vectors(v)
    assert len(base64.b64decode(data)) == 3 * 384 * 2  # 2 bytes per dimension
    back = decode_vectors(data, 384)
    assert back.shape == (3, 384) and back.dtype == np.float32
    assert np.abs((back * v).sum(axis=1) - 1).max() < 1e-3  # cosine survives float16


def test_malformed_vectors_are_rejected():
    with pytest.raises(ValueError, match="whole number"):
        decode_vectors(base64.b64encode(b"\x00" * 5).decode(), 2)
    with pytest.raises(ValueError):
        decode_vectors("not base64!", 2)


def test_nothing_is_searched_until_every_partition_is_complete():
    store = ItemVectors(partitions=2)
    store.upsert("a", "v1", unit(1, 0))
    store.mark_complete("v1", 0, ts=1)
    assert store.active_version is None and store.search(unit(1, 0), 5) == []
    store.mark_complete("v1", 1, ts=2)
    assert store.active_version == "v1" and store.search(unit(1, 0), 5)[0][0] == "a"


def test_new_version_switches_only_when_complete_and_never_mixes():
    store = ItemVectors(partitions=1)
    for item, vec in {"a": unit(1, 0), "b": unit(0, 1)}.items():
        store.upsert(item, "v1", vec)
    store.mark_complete("v1", 0, ts=1)
    # v2 arrives item by item, in another (here: 3-d) space
    store.upsert("a", "v2", unit(0, 0, 1))
    assert store.active_version == "v1"
    assert [i for i, _ in store.search(unit(1, 0), 2)] == ["a", "b"]  # v1 only
    store.upsert("b", "v2", unit(0, 1, 0))
    store.mark_complete("v2", 0, ts=2)
    assert store.active_version == "v2"
    assert store.search(unit(0, 0, 1), 1)[0][0] == "a"
    assert store.stats()["items"] == {"v2": 2}  # v1 freed


def test_upsert_update_remove_and_exclusions():
    store = ItemVectors(partitions=1)
    for i in range(100):  # past the initial capacity: the matrix grows
        store.upsert(f"i{i}", "v", unit(1, i / 100))
    store.mark_complete("v", 0, ts=1)
    assert len(store) == 100
    store.upsert("i99", "v", unit(-1, 0))  # update in place
    updated = store.get("i99")
    assert updated is not None and updated[0] < 0
    store.remove("i0")
    top = store.search(unit(1, 0), 3, exclude={"i1"})
    assert [i for i, _ in top] == ["i2", "i3", "i4"]
    assert store.get("i0") is None and len(store) == 99
    store.upsert("new", "v", unit(1, 0))  # reuses the freed row
    assert store.search(unit(1, 0), 1)[0][0] == "new"
    assert all(s <= 1.0 + 1e-6 for _, s in store.search(unit(1, 0), 200))


def test_wrong_dimension_query_finds_nothing_instead_of_crashing():
    store = ItemVectors(partitions=1)
    store.upsert("a", "v", unit(1, 0))
    store.mark_complete("v", 0, ts=1)
    assert store.search(unit(1, 0, 0), 3) == []


def test_unavailable_items_leave_the_index_and_come_back():
    store = ItemVectors(partitions=1)
    store.upsert("a", "v", unit(1, 0))
    store.upsert("b", "v", unit(1, 0.1))
    store.mark_complete("v", 0, ts=1)
    store.set_available("a", False)
    assert [i for i, _ in store.search(unit(1, 0), 2)] == ["b"]
    store.upsert("a", "v", unit(0, 1))  # a new vector while unavailable: kept aside
    assert [i for i, _ in store.search(unit(0, 1), 2)] == ["b"]
    store.set_available("a", True)
    assert store.search(unit(0, 1), 1)[0][0] == "a"
    store.set_available("a", True)  # idempotent
    assert len(store) == 2


@pytest.mark.parametrize("hnsw_above", [10_000, 50])
def test_a_bulk_load_answers_as_updates_one_at_a_time_do(hnsw_above):
    """The catalog read back at start-up builds each index once, at the end: the same
    vectors, removals, updates and parked items as when applied one at a time."""
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(300, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)

    def load(store: ItemVectors) -> None:
        for i, v in enumerate(vecs):
            store.upsert(f"i{i}", "v1", v)
        for i in range(0, 300, 7):
            store.remove(f"i{i}")
        for i in range(1, 300, 11):
            store.upsert(f"i{i}", "v1", -vecs[i])
        store.set_available("i2", False)
        store.mark_complete("v1", 0, ts=1)

    one, bulk = ItemVectors(1, hnsw_above=hnsw_above), ItemVectors(1, hnsw_above=hnsw_above)
    load(one)
    with bulk.bulk():
        load(bulk)
    assert len(bulk) == len(one) and bulk.stats() == one.stats()
    for q in vecs[:20]:
        assert [h[0] for h in bulk.search(q, 10)] == [h[0] for h in one.search(q, 10)]
    bulk.set_available("i2", True)  # after the load, updates go to the index at once
    assert bulk.search(vecs[2], 1)[0][0] == "i2"
