"""The scorer's catalog work (a part of `ScorerService`): catalog.items -> catalog.embeddings.

An assigned catalog partition is read from its start; an item whose text this
version already embedded (seen on catalog.embeddings at assignment) is skipped,
so a restart costs reads, not encodes. Items wait in `dirty` per version and
partition and are embedded in chunks while no request waits; a caught-up
partition gets a completion marker per version, and a staged version becomes
current once every assigned partition is marked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamrec import serde
from streamrec.aio import end_offsets, read_partition
from streamrec.clock import now_ms
from streamrec.core.deadletters import DeadLetterWriter
from streamrec.core.ingest import RawMessage, Rejection, parse_document
from streamrec.core.retrieval.vectors import encode_vectors
from streamrec.records import CatalogEmbedding, CatalogItem
from streamrec.scorer.embedder import Embedder, item_text, text_hash
from streamrec.scorer.progress import EmbedProgress
from streamrec.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Tracked:
    item: CatalogItem
    text_hash: str


class ScorerPart:
    """What the parts of `ScorerService` share (its attributes and plumbing)."""

    s: Settings
    embedder: Embedder
    consumer: AIOKafkaConsumer | None
    producer: AIOKafkaProducer | None
    w_counts: dict[str, int]
    items: dict[int, dict[str, Tracked]]
    known: dict[int, dict[str, dict[str, str]]]
    dirty: dict[str, dict[int, dict[str, None]]]
    marked: set[tuple[str, int]]
    progress: EmbedProgress

    async def _send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        raise NotImplementedError  # ScorerService's

    async def _in_model_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError  # ScorerService's


class CatalogWork(ScorerPart):
    """Catalog records in, item vectors and completion markers out."""

    validate_item: Callable[[Any], Any]
    validate_embedding: Callable[[Any], Any]
    dead_letters: DeadLetterWriter
    t_catalog: str
    t_embeddings: str
    t_dlq: str
    catch_up_to: dict[int, int]
    next_offset: dict[int, int]

    def _targets(self) -> list[str]:
        e = self.embedder
        return [e.current] if e.staged is None else [e.current, e.staged]

    async def _take_catalog(self, partition: int, r: Any) -> None:
        items = self.items.setdefault(partition, {})
        if r.value is None:  # tombstone: the item left the catalog, so does its vector
            if r.key is not None:
                item_id = r.key.decode("utf-8", "replace")
                items.pop(item_id, None)
                for parts in self.dirty.values():
                    parts.get(partition, {}).pop(item_id, None)
                if self.known.get(partition, {}).pop(item_id, None) is not None:
                    await self._send(self.t_embeddings, r.key, None, partition)
                    self.w_counts["catalog_removed"] += 1
            return
        doc = parse_document(r.value, self.validate_item, "catalog item")
        if isinstance(doc, Rejection):
            # The rank workers dead-letter catalog records (they validate the same
            # contract); counting here keeps the DLQ free of duplicates.
            self.w_counts["catalog_invalid"] += 1
            return
        item = CatalogItem.from_dict(doc)
        h = text_hash(item_text(item))
        items[item.item_id] = Tracked(item, h)
        have = self.known.get(partition, {}).get(item.item_id, {})
        for version in self._targets():
            if have.get(version) != h:
                self.dirty.setdefault(version, {}).setdefault(partition, {})[item.item_id] = None

    async def _catalog_step(self) -> bool:
        """Embed one chunk of catalog items (current version first); False if none wait."""
        for version in self._targets():
            for partition, ids in self.dirty.get(version, {}).items():
                if ids:
                    chunk = list(ids)[: self.s.scorer_catalog_chunk]
                    for item_id in chunk:
                        del ids[item_id]
                    await self._embed_chunk(version, partition, chunk)
                    line = self.progress.record(version, len(chunk), self._waiting(version))
                    if line:
                        log.info("%s", line)
                    return True
        return False

    def _waiting(self, version: str) -> int:
        return sum(len(ids) for ids in self.dirty.get(version, {}).values())

    async def _embed_chunk(self, version: str, partition: int, ids: list[str]) -> None:
        items = self.items.get(partition, {})
        tracked = [items[i] for i in ids if i in items]
        if not tracked:
            return
        results = await self._in_model_thread(
            self.embedder.embed_items, [t.item for t in tracked], version
        )
        if version not in self.embedder.encoders:
            return  # swapped out while this chunk ran
        ts = now_ms()
        known = self.known.setdefault(partition, {})
        for t, (item, vector, error) in zip(tracked, results, strict=True):
            current = self.items.get(partition, {}).get(item.item_id)
            if current is None or current.text_hash != t.text_hash:
                continue  # removed or changed meanwhile; the newer record is queued
            if vector is None:
                self.w_counts["catalog_errors"] += 1
                detail = f"item {item.item_id} not embedded by {version}: {error}"
                key = item.item_id.encode()
                value = serde.dumps(item.to_dict())
                msg = RawMessage(value, key, partition, 0, ts, self.t_catalog)
                dead_key, dead = self.dead_letters.write(Rejection("encode_error", detail), msg, ts)
                log.warning("dead letter encode_error: %s", detail)
                await self._send(self.t_dlq, dead_key, serde.dumps(dead.to_dict()))
                continue
            record = CatalogEmbedding(
                kind="item",
                model_version=version,
                ts=ts,
                item_id=item.item_id,
                dim=int(vector.shape[0]),
                vector=encode_vectors(vector),
                text_hash=t.text_hash,
            )
            await self._send(
                self.t_embeddings, item.item_id.encode(), serde.dumps(record.to_dict()), partition
            )
            known.setdefault(item.item_id, {})[version] = t.text_hash
            self.w_counts["catalog_embedded"] += 1

    async def _finish_partitions(self) -> None:
        """Mark caught-up partitions complete per version; promote a fully marked staged one."""
        assert self.consumer is not None
        assigned = {tp.partition for tp in self.consumer.assignment() if tp.topic == self.t_catalog}
        for version in self._targets():
            for p in assigned:
                if (version, p) in self.marked or self.dirty.get(version, {}).get(p):
                    continue
                if self.next_offset.get(p, 0) < self.catch_up_to.get(p, 1 << 62):
                    continue
                count = sum(1 for h in self.known.get(p, {}).values() if version in h)
                marker = CatalogEmbedding(
                    kind="complete", model_version=version, ts=now_ms(), partition=p, items=count
                )
                await self._send(
                    self.t_embeddings, marker.key.encode(), serde.dumps(marker.to_dict()), p
                )
                self.marked.add((version, p))
                log.info("catalog partition %d complete for %s (%d items)", p, version, count)
        staged = self.embedder.staged
        if staged is not None and all((staged, p) in self.marked for p in assigned):
            assert self.producer is not None
            await self.producer.flush()  # markers out before queries switch versions
            self.embedder.promote()
            self.dirty.pop(self.embedder.previous or "", None)

    async def on_assigned(self, tps: set[TopicPartition]) -> None:
        assert self.consumer is not None
        catalog = [tp for tp in tps if tp.topic == self.t_catalog]
        if not catalog:
            return
        ends = await end_offsets(self.s, catalog)
        for tp in catalog:
            p = tp.partition
            self.known[p] = await self._read_embeddings(p)
            self.items[p] = {}
            self.catch_up_to[p] = ends[tp]
            self.next_offset[p] = 0
            for version in self._targets():
                self.marked.discard((version, p))
        await self.consumer.seek_to_beginning(*catalog)
        log.info("catalog partitions %s assigned", sorted(tp.partition for tp in catalog))

    def on_revoked(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            if tp.topic != self.t_catalog:
                continue
            p = tp.partition
            for state in (self.items, self.known, self.catch_up_to, self.next_offset):
                state.pop(p, None)
            for parts in self.dirty.values():
                parts.pop(p, None)
            self.marked = {(v, q) for v, q in self.marked if q != p}

    async def _read_embeddings(self, partition: int) -> dict[str, dict[str, str]]:
        """item -> version -> text hash, from one partition of catalog.embeddings."""
        known: dict[str, dict[str, str]] = {}

        def take(r: Any) -> None:
            if r.key is None or r.key.startswith(b"__complete__/"):
                return
            item_id = r.key.decode("utf-8", "replace")
            if r.value is None:
                known.pop(item_id, None)
                return
            doc = parse_document(r.value, self.validate_embedding, "embedding")
            if not isinstance(doc, Rejection) and doc.get("kind") == "item":
                known.setdefault(item_id, {})[doc["model_version"]] = doc["text_hash"]

        await read_partition(self.s, self.t_embeddings, partition, take)
        return known
