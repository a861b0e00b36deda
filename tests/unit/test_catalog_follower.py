"""The catalog follower's record logic, without a broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from aiokafka import TopicPartition

from streamrec import serde
from streamrec.build import build_engine
from streamrec.contracts import CATALOG_EMBEDDINGS, CATALOG_ITEMS, load_contract
from streamrec.core.retrieval.vectors import ItemVectors, apply_embedding_record, encode_vectors
from streamrec.records import CatalogEmbedding, CatalogItem
from streamrec.settings import Settings
from streamrec.worker.catalog import CatalogFollower, apply_catalog_record

ITEMS = load_contract(CATALOG_ITEMS).validator
EMBEDDINGS = load_contract(CATALOG_EMBEDDINGS).validator


@dataclass
class Record:
    """What aiokafka hands the follower (the fields it reads)."""

    value: bytes | None
    key: bytes | None
    partition: int = 0
    offset: int = 0
    timestamp: int = 0
    topic: str = "catalog.items"


def test_items_are_upserted_made_unavailable_and_deleted_by_tombstone():
    engine = build_engine(Settings.from_env({}))
    hat = CatalogItem("hat", "Wool hat", ("Clothes",), price=20.0)
    assert (
        apply_catalog_record(engine, Record(serde.dumps(hat.to_dict()), b"hat"), ITEMS, 1) is None
    )
    assert engine.catalog.categories("hat") == ("Clothes",) and engine.catalog.is_available("hat")
    gone = CatalogItem("hat", "Wool hat", ("Clothes",), available=False)
    apply_catalog_record(engine, Record(serde.dumps(gone.to_dict()), b"hat"), ITEMS, 2)
    assert not engine.catalog.is_available("hat")
    apply_catalog_record(engine, Record(None, b"hat"), ITEMS, 3)
    assert engine.catalog.price("hat") is None


def test_a_bad_catalog_record_becomes_a_bounded_dead_letter():
    engine = build_engine(Settings.from_env({}, dlq_original_max_bytes=100))
    bad = serde.dumps({"item_id": "x", "title": "T" * 500, "price": "cheap"})
    got = apply_catalog_record(engine, Record(bad, b"x", offset=7), ITEMS, 5)
    assert got is not None
    key, dead = got
    assert dead.reason == "schema" and "price" in dead.detail
    # Keyed by a keyed hash of the item id (not a user); the bytes sealed, bounded.
    assert key is not None and key.startswith(b"k_") and key != b"x" and dead.user is None
    assert dead.offset == 7 and dead.truncated and bad[:20] not in dead.sealed
    assert engine.dead_letters.open(dead) == (b"x", bad[:100])
    again = apply_catalog_record(engine, Record(b"{nope", b"x"), ITEMS, 5)
    assert again is not None and again[1].reason == "not_json"


def test_embeddings_fill_the_index_and_a_completed_version_becomes_active():
    vectors = ItemVectors(1)
    vec = np.eye(4, dtype=np.float32)[:1]
    emb = CatalogEmbedding(
        "item", "enc@1", 1, item_id="hat", dim=4, vector=encode_vectors(vec), text_hash="h"
    )
    rec = Record(serde.dumps(emb.to_dict()), b"hat", topic="catalog.embeddings")
    assert apply_embedding_record(vectors, rec, EMBEDDINGS) is None
    assert vectors.active_version is None  # not searched before its version is complete
    done = CatalogEmbedding("complete", "enc@1", 2, partition=0, items=1)
    assert (
        apply_embedding_record(vectors, Record(serde.dumps(done.to_dict()), b"c"), EMBEDDINGS)
        is None
    )
    assert vectors.active_version == "enc@1" and vectors.get("hat") is not None
    apply_embedding_record(vectors, Record(None, b"hat"), EMBEDDINGS)
    assert vectors.get("hat") is None


def test_unreadable_embeddings_are_reported_not_raised():
    vectors = ItemVectors(1)
    assert "unreadable" in (apply_embedding_record(vectors, Record(b"[]", b"k"), EMBEDDINGS) or "")
    broken = CatalogEmbedding(
        "item", "enc@1", 1, item_id="hat", dim=4, vector="AAAA", text_hash="h"
    )
    error = apply_embedding_record(vectors, Record(serde.dumps(broken.to_dict()), b"k"), EMBEDDINGS)
    assert error is not None and "hat" in error
    assert len(vectors) == 0


class FakeConsumer:
    """The two calls `_reread_gained` makes, on a consumer at `positions`."""

    def __init__(self, positions: dict[int, int]) -> None:
        self.positions = positions
        self.seeks: list[tuple[int, int]] = []

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp.partition]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp.partition, offset))
        self.positions[tp.partition] = offset


def test_a_gained_partition_is_read_again_back_to_its_owners_mark_never_skipped_forward():
    s = Settings.from_env({}, partitions=3)
    follower = CatalogFollower(s, build_engine(s), dead_letter=None, embedding_offsets={})  # type: ignore[arg-type]
    # Dead-lettered by their owners up to offset 3 in each catalog partition.
    follower._dlq_from = {0: 3, 1: 3, 2: 3}
    # Partition 0 was read past the mark; partition 1 not yet (a gain at start-up, before
    # the first fetch reached its records); partition 2 is not gained.
    consumer = FakeConsumer({0: 7, 1: 1, 2: 7})
    follower.set_owned({0, 1})
    asyncio.run(follower._reread_gained(consumer))
    assert consumer.seeks == [(0, 3)]  # back to the mark; 1 reads on from 1, skipping nothing
    assert consumer.positions == {0: 3, 1: 1, 2: 7}
    asyncio.run(follower._reread_gained(consumer))
    assert consumer.seeks == [(0, 3)]  # once per gain
