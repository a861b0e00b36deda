"""The serving replica's reader: one aiokafka consumer (no group) over every topic it needs.

* `recommendations`: from the offsets in the replica's store (a restart picks
  up where it stopped), or from the start when the store is new or does not
  fit the topic (a recreated topic); each fetched batch is written with its
  offsets in one atomic store write;
* `catalog.items` and `catalog.embeddings`: from the start, into the item
  structures the workers use;
* `storefront.events`: only its recent tail (`EVENTS_TAIL` per partition),
  for popularity;
* `metrics`, `drift.stats`, `alerts`: the last `health_span_s`.

The replica is *ready* once it has read every list, catalog record and item
vector that was on the topics when it started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamrec import clients
from streamrec.aio import end_offsets, wait_partitions
from streamrec.contracts import (
    ALERTS,
    CATALOG_EMBEDDINGS,
    CATALOG_ITEMS,
    DRIFT_STATS,
    METRICS,
    RECOMMENDATIONS,
    STOREFRONT_EVENTS,
    load_contract,
)
from streamrec.core.ingest import Rejection, parse_document
from streamrec.core.retrieval.vectors import apply_embedding_record
from streamrec.records import CatalogItem
from streamrec.serve.state import ServingState
from streamrec.settings import Settings

log = logging.getLogger(__name__)

#: Storefront events read back per partition at start, for popularity.
EVENTS_TAIL = 50_000


class Follower:
    def __init__(self, settings: Settings, state: ServingState) -> None:
        self.s = settings
        self.state = state
        self.t = {name: settings.topic(name) for name in (
            RECOMMENDATIONS, CATALOG_ITEMS, CATALOG_EMBEDDINGS, STOREFRONT_EVENTS,
            METRICS, DRIFT_STATS, ALERTS)}  # fmt: skip
        self.contract = {v: k for k, v in self.t.items()}
        #: Next offset to read per partition (what this replica has applied).
        self.next: dict[TopicPartition, int] = {}
        #: What must be read before the replica is ready (ends at start).
        self.targets: dict[TopicPartition, int] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.lists_applied = 0
        self.started = False
        self._validate_item = load_contract(CATALOG_ITEMS).validator
        self._validate_embedding = load_contract(CATALOG_EMBEDDINGS).validator

    @property
    def ready(self) -> bool:
        return self.started and all(self.next.get(tp, 0) >= end for tp, end in self.targets.items())

    def lag(self) -> int:
        """Lists on the topic this replica has not applied yet (from fetch high watermarks)."""
        if self.consumer is None:
            return 0
        behind = 0
        for tp, nxt in self.next.items():
            if tp.topic == self.t[RECOMMENDATIONS]:
                high = self.consumer.highwater(tp)
                behind += max(0, (high if high is not None else self.targets.get(tp, 0)) - nxt)
        return behind

    async def start(self) -> None:
        s = self.s
        consumer = clients.aio_consumer(
            s,
            enable_auto_commit=False,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 << 20,
        )
        await consumer.start()
        self.consumer = consumer
        tps: list[TopicPartition] = []
        for name in self.t.values():
            tps += [TopicPartition(name, p) for p in await wait_partitions(consumer, name)]
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await end_offsets(s, tps)
        await self._seek(consumer, tps, begins, ends)
        must = {self.t[RECOMMENDATIONS], self.t[CATALOG_ITEMS], self.t[CATALOG_EMBEDDINGS]}
        self.targets = {tp: ends[tp] for tp in tps if tp.topic in must}
        self.started = True

    async def _seek(
        self,
        consumer: AIOKafkaConsumer,
        tps: list[TopicPartition],
        begins: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
    ) -> None:
        recs = [tp for tp in tps if tp.topic == self.t[RECOMMENDATIONS]]
        saved = self.state.lists.offsets(self.t[RECOMMENDATIONS])
        fits = saved is not None and set(saved) == {tp.partition for tp in recs}
        fits = fits and all(begins[tp] <= saved[tp.partition] <= ends[tp] for tp in recs)  # type: ignore[index]
        if saved is not None and not fits:
            log.warning("the list store does not fit %s (topic recreated?): rebuilding it",
                        self.t[RECOMMENDATIONS])  # fmt: skip
            self.state.lists.clear()
        elif saved is not None:
            log.info("list store resumes %s at %s", self.t[RECOMMENDATIONS], saved)
        since = int((time.time() - self.state.health.since_s) * 1000)
        health = [tp for tp in tps if self.contract[tp.topic] in (METRICS, DRIFT_STATS, ALERTS)]
        try:
            by_time = await consumer.offsets_for_times(dict.fromkeys(health, since))
        except Exception:  # a broker without timestamp lookups: read what it keeps
            by_time = {}
        for tp in tps:
            kind = self.contract[tp.topic]
            if kind == RECOMMENDATIONS and fits:
                start = saved[tp.partition]  # type: ignore[index]
            elif kind == STOREFRONT_EVENTS:
                start = max(begins[tp], ends[tp] - EVENTS_TAIL)
            elif tp in by_time:
                found = by_time[tp]
                start = ends[tp] if found is None else found.offset
            else:
                start = begins[tp]
            consumer.seek(tp, start)
            self.next[tp] = start

    async def run(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        while True:
            # Small batches: applying one holds the event loop, and requests wait for it.
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for tp, records in batches.items():
                if records:
                    self.apply(tp, records)
                    self.next[tp] = records[-1].offset + 1
            if not batches:
                await asyncio.sleep(0)

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    def apply(self, tp: TopicPartition, records: list[Any]) -> None:
        kind = self.contract[tp.topic]
        state = self.state
        if kind == RECOMMENDATIONS:
            rows = [(r.key, r.value) for r in records if r.key is not None]
            self.lists_applied += state.lists.apply(
                rows, tp.topic, {tp.partition: records[-1].offset + 1}
            )
        elif kind == CATALOG_ITEMS:
            for r in records:
                if r.value is None:
                    if r.key is not None:
                        state.catalog.remove(r.key.decode("utf-8", "replace"))
                    continue
                doc = parse_document(r.value, self._validate_item, "catalog item")
                if not isinstance(doc, Rejection):  # the workers dead-letter bad ones
                    state.upsert_item(CatalogItem.from_dict(doc))
        elif kind == CATALOG_EMBEDDINGS:
            for r in records:
                error = apply_embedding_record(state.vectors, r, self._validate_embedding)
                if error is not None:
                    log.error("%s", error)
        elif kind == STOREFRONT_EVENTS:
            state.count_events(r.value for r in records)
        else:
            for r in records:
                if r.value is not None:
                    state.health.add(kind, r.value)
