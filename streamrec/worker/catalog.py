"""The catalog follower: every worker keeps the whole catalog and its item vectors.

A plain aiokafka consumer (no Faust hop) reads every partition of the
compacted `catalog.items` from the start, and `catalog.embeddings` from where
the item-vector snapshot left off (or from the start when the snapshot does
not fit the topic). At start-up the worker waits for both to be read up to
where they ended when it started (`catch_up`) before it applies any event:
an event learned without its item's categories, price or vector would be
learned wrong for good (a profile's category interest, the interest vector).
What one record does is a pure function of the engine and the record
(`apply_catalog_record`, and `apply_embedding_record` in the core), tested
without a broker.

**An invalid catalog record is dead-lettered once**, not once per worker and
restart: only by the worker that owns the same-numbered partition of
`storefront.events` (the group's assignment gives each one owner), and only
past the offset the owners have committed for `<app>-catalog-dlq` (committed
once the dead letters are delivered). A worker that gains a partition reads
it again from that offset, so records it read before it owned them are not
missed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamrec import clients
from streamrec.aio import end_offsets, wait_partitions
from streamrec.clock import now_ms
from streamrec.contracts import (
    CATALOG_EMBEDDINGS,
    CATALOG_ITEMS,
    STOREFRONT_EVENTS,
    load_contract,
    partitions_for,
)
from streamrec.core.engine import Engine
from streamrec.core.ingest import RawMessage, Rejection, parse_document
from streamrec.core.retrieval.vectors import apply_embedding_record
from streamrec.records import CatalogItem, DeadLetter
from streamrec.settings import Settings

log = logging.getLogger(__name__)

#: Seconds without a record after which the start-up read stops short of a partition's
#: end (records compacted away at the end of a partition are never fetched).
QUIET_S = 10.0


def apply_catalog_record(
    engine: Engine, r: Any, validate: Any, now: int, *, apply: bool = True
) -> tuple[bytes | None, DeadLetter] | None:
    """One catalog.items record: upsert, delete (tombstone), or (key, dead letter) for it.
    `apply=False`: a record read again only to dead-letter it if bad (it was applied)."""
    if r.value is None:
        if r.key is not None and apply:  # tombstone on the compacted topic: item deleted
            engine.catalog.remove(r.key.decode("utf-8", "replace"))
        return None
    doc = parse_document(r.value, validate, "catalog item")
    if not isinstance(doc, Rejection):
        if apply:
            engine.upsert_item(CatalogItem.from_dict(doc))
        return None
    msg = RawMessage(r.value, r.key, r.partition, r.offset, r.timestamp, r.topic)
    return engine.dead_letter(msg, doc, now)


@dataclass
class CatchUp:
    """How reading the catalog back at start-up went (`CatalogFollower.catch_up`)."""

    items: int = 0
    vectors: int = 0
    records: int = 0
    seconds: float = 0.0
    done: bool = False


@contextmanager
def all_threads() -> Iterator[None]:
    """FAISS on every core for a while (it runs on `STREAMREC_RANK_THREADS` otherwise)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


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
        #: storefront.events partitions this worker owns (set by the worker on rebalance).
        self.owned: set[int] = set()
        self._events_partitions = partitions_for(STOREFRONT_EVENTS, settings.partitions)
        #: catalog.items partition -> first offset not yet dead-lettered by its owners.
        self._dlq_from: dict[int, int] = {}
        self._rescan: set[int] = set()
        #: catalog.embeddings partition -> next offset the item vectors have not seen
        self.embedding_offsets = embedding_offsets
        self.t_catalog = settings.topic(CATALOG_ITEMS)
        self.t_embeddings = settings.topic(CATALOG_EMBEDDINGS)
        self.bad_embeddings = 0
        #: catalog.items partition -> first offset not applied yet (a re-read skips below).
        self._applied_to: dict[int, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._validate = load_contract(CATALOG_ITEMS).validator
        self._validate_embedding = load_contract(CATALOG_EMBEDDINGS).validator
        #: The start-up read of both topics (`catch_up`): readiness reports it.
        self.caught_up = CatchUp()

    async def catch_up(self) -> CatchUp:
        """Read both topics up to where they end now (the worker applies no event before
        this returns): progress on the log every few seconds. The consumer goes on in
        `run`."""
        t0 = time.monotonic()
        consumer = await self._start()
        tps = list(consumer.assignment())
        ends = await end_offsets(self.settings, tps)  # ListOffsets alone trails on tansu
        at = {tp: await consumer.position(tp) for tp in tps}
        left = {tp: end for tp, end in ends.items() if at[tp] < end}
        total = sum(end - at[tp] for tp, end in left.items())
        stats = self.caught_up
        # The indexes are built once, at the end, with every core: no event is processed
        # meanwhile (a 100,000-item HNSW index took ~60 s on one thread here).
        with all_threads(), self.engine.item_vectors.bulk():
            await self._read_to(consumer, left, total, t0)
        stats.items = len(self.engine.catalog)
        stats.vectors = len(self.engine.item_vectors)
        stats.seconds = time.monotonic() - t0
        stats.done = True
        log.info("catalog read back: %d items, %d item vectors, %d records in %.1f s",
                 stats.items, stats.vectors, stats.records, stats.seconds)  # fmt: skip
        return stats

    async def _read_to(
        self, consumer: AIOKafkaConsumer, left: dict[Any, int], total: int, t0: float
    ) -> None:
        """Fetch and apply until every partition in `left` reaches its end there."""
        stats = self.caught_up
        last_log = quiet_since = time.monotonic()
        while left:
            batches = await consumer.getmany(*left, timeout_ms=1000, max_records=5000)
            stats.records += await self._take(consumer, batches)
            now = time.monotonic()
            if any(batches.values()):
                quiet_since = now
            for tp in list(left):
                if await consumer.position(tp) >= left[tp]:
                    del left[tp]
            if left and now - quiet_since > QUIET_S:
                # Records compacted away at the end of a partition leave its position
                # short of its end: nothing more is coming there.
                short = sorted(f"{tp.topic}[{tp.partition}]" for tp in left)
                log.warning("catalog read back: no records for %.0f s from %s; going on",
                                now - quiet_since, short)  # fmt: skip
                break
            if now - last_log >= 5.0:
                last_log = now
                rate = stats.records / max(now - t0, 1e-9)
                eta = (total - stats.records) / max(rate, 1e-9)
                log.info("catalog read back: %d of %d records (%.0f/s, about %.0f s left)",
                             stats.records, total, rate, eta)  # fmt: skip

    async def run(self) -> None:
        if self._consumer is None:
            await self.catch_up()
        consumer = self._consumer
        assert consumer is not None
        try:
            while True:
                await self._reread_gained(consumer)
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                await self._take(consumer, batches)
        finally:
            await consumer.stop()

    async def _start(self) -> AIOKafkaConsumer:
        s = self.settings
        consumer = self._consumer = clients.aio_consumer(
            s,
            # Only to commit how far catalog records were dead-lettered: no group is joined.
            group_id=f"{s.app_id}-catalog-dlq",
            enable_auto_commit=False,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
        )
        await consumer.start()
        tps = []
        for topic in (self.t_catalog, self.t_embeddings):
            tps += [TopicPartition(topic, p) for p in await wait_partitions(consumer, topic)]
        consumer.assign(tps)
        await self._seek(consumer, tps)
        for tp in tps:
            if tp.topic == self.t_catalog:
                self._dlq_from[tp.partition] = await consumer.committed(tp) or 0
        return consumer

    async def _take(self, consumer: AIOKafkaConsumer, batches: dict[Any, list[Any]]) -> int:
        """Apply fetched records of both topics; how many there were."""
        n = 0
        for tp, records in batches.items():
            n += len(records)
            if tp.topic == self.t_embeddings:
                for r in records:
                    error = apply_embedding_record(
                        self.engine.item_vectors, r, self._validate_embedding
                    )
                    if error is not None:
                        self.bad_embeddings += 1
                        log.error("%s", error)
                    self.embedding_offsets[tp.partition] = r.offset + 1
                continue
            await self._take_catalog(consumer, tp, records, self._validate)
        return n

    def owns(self, catalog_partition: int) -> bool:
        return catalog_partition % self._events_partitions in self.owned

    def set_owned(self, partitions: set[int]) -> None:
        """The worker's storefront.events partitions after a rebalance."""
        self._rescan |= {p for p in self._dlq_from if p % self._events_partitions in partitions}
        self.owned = partitions

    async def _reread_gained(self, consumer: AIOKafkaConsumer) -> None:
        """Partitions gained since: read again from where their owners dead-lettered to.

        Only ever back: a partition this worker has not read that far yet (a gain at
        start-up, before the first fetch reached it) is read on from where it is.
        Seeking forward there skipped the records in between, catalog upserts included.
        """
        for p in sorted(self._rescan):
            if self.owns(p):
                tp = TopicPartition(self.t_catalog, p)
                if self._dlq_from[p] < await consumer.position(tp):
                    consumer.seek(tp, self._dlq_from[p])
        self._rescan.clear()

    async def _take_catalog(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[Any], validate: Any
    ) -> None:
        owner = self.owns(tp.partition)
        start = self._dlq_from.get(tp.partition, 0)
        applied = self._applied_to.get(tp.partition, 0)
        sent = []
        for r in records:
            # A record read again to dead-letter it (a gained partition) is not applied
            # again: an older version of an item would come back until the newer one.
            dead = apply_catalog_record(
                self.engine, r, validate, now_ms(), apply=r.offset >= applied
            )
            if dead is None:
                continue
            self.engine.counters.counts["catalog_invalid"] += 1
            if owner and r.offset >= start:
                sent.append(await self.dead_letter(*dead))
        if records:
            self._applied_to[tp.partition] = max(applied, records[-1].offset + 1)
        if not owner or not records or records[-1].offset < start:
            return
        # Committed once its dead letters are on events.dlq: a restart, or the next
        # owner, goes on from there and writes none of them again.
        await asyncio.gather(*sent)
        self.engine.counters.counts["catalog_dead_lettered"] += len(sent)
        self._dlq_from[tp.partition] = records[-1].offset + 1
        await consumer.commit({tp: records[-1].offset + 1})

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
