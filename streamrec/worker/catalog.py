"""The catalog follower: every worker keeps the whole catalog and its item vectors.

A plain aiokafka consumer (no Faust hop) reads every partition of the
compacted `catalog.items` from the start, and `catalog.embeddings` from where
the item-vector snapshot left off (or from the start when the snapshot does
not fit the topic). What one record does is a pure function of the engine and
the record (`apply_catalog_record`, and `apply_embedding_record` in the core),
tested without a broker.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamrec.aio import end_offsets, wait_partitions
from streamrec.contracts import CATALOG_EMBEDDINGS, CATALOG_ITEMS, load_contract
from streamrec.core.engine import Engine
from streamrec.core.ingest import RawMessage, Rejection, parse_document
from streamrec.core.retrieval.vectors import apply_embedding_record
from streamrec.records import CatalogItem, DeadLetter
from streamrec.settings import Settings
from streamrec.worker.lifecycle import now_ms

log = logging.getLogger(__name__)


def apply_catalog_record(
    engine: Engine, r: Any, validate: Any, now: int
) -> tuple[bytes | None, DeadLetter] | None:
    """One catalog.items record: upsert, delete (tombstone), or (key, dead letter) for it."""
    if r.value is None:
        if r.key is not None:  # tombstone on the compacted topic: item deleted
            engine.catalog.remove(r.key.decode("utf-8", "replace"))
        return None
    doc = parse_document(r.value, validate, "catalog item")
    if not isinstance(doc, Rejection):
        engine.upsert_item(CatalogItem.from_dict(doc))
        return None
    msg = RawMessage(r.value, r.key, r.partition, r.offset, r.timestamp, r.topic)
    return engine.dead_letter(msg, doc, now)


class CatalogFollower:
    """Follows catalog.items and catalog.embeddings into `engine` for as long as it runs."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        dead_letter: Callable[[bytes | None, DeadLetter], Awaitable[Any]],
        embedding_offsets: dict[int, int],
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.dead_letter = dead_letter
        #: catalog.embeddings partition -> next offset the item vectors have not seen
        self.embedding_offsets = embedding_offsets
        self.t_catalog = settings.topic(CATALOG_ITEMS)
        self.t_embeddings = settings.topic(CATALOG_EMBEDDINGS)
        self.bad_embeddings = 0

    async def run(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_list(),
            enable_auto_commit=False,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            **s.aiokafka_security(),
        )
        await consumer.start()
        validate = load_contract(CATALOG_ITEMS).validator
        validate_embedding = load_contract(CATALOG_EMBEDDINGS).validator
        try:
            tps = []
            for topic in (self.t_catalog, self.t_embeddings):
                tps += [TopicPartition(topic, p) for p in await wait_partitions(consumer, topic)]
            consumer.assign(tps)
            await self._seek(consumer, tps)
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                for tp, records in batches.items():
                    if tp.topic == self.t_embeddings:
                        for r in records:
                            error = apply_embedding_record(
                                self.engine.item_vectors, r, validate_embedding
                            )
                            if error is not None:
                                self.bad_embeddings += 1
                                log.error("%s", error)
                            self.embedding_offsets[tp.partition] = r.offset + 1
                        continue
                    for r in records:
                        dead = apply_catalog_record(self.engine, r, validate, now_ms())
                        if dead is not None:
                            await self.dead_letter(*dead)
        finally:
            await consumer.stop()

    async def _seek(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """catalog.items from the start; catalog.embeddings from the snapshot, if it fits."""
        emb = [tp for tp in tps if tp.topic == self.t_embeddings]
        saved = self.embedding_offsets
        ends = await end_offsets(self.settings, emb)  # ListOffsets alone trails on tansu
        fits = bool(saved) and set(saved) == {tp.partition for tp in emb}
        fits = fits and all(saved[tp.partition] <= ends[tp] for tp in emb)
        if not fits:
            if saved:
                log.warning("item-vector snapshot does not match catalog.embeddings; rebuilding")
                self.engine.item_vectors = type(self.engine.item_vectors)(
                    len(emb), store=self.engine.items, hnsw_above=self.settings.index_hnsw_above
                )
                saved.clear()
            await consumer.seek_to_beginning(*tps)
            return
        await consumer.seek_to_beginning(*[tp for tp in tps if tp.topic != self.t_embeddings])
        for tp in emb:
            consumer.seek(tp, saved[tp.partition])
        log.info(
            "item vectors restored from snapshot; reading catalog.embeddings on from %s", saved
        )
