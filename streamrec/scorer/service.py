"""`streamrec scorer`: the BERT scorer worker, a plain aiokafka service.

One process, one consumer in the group ``<app_id>-scorer`` subscribed to two
topics, so several scorers share both loads:

* **scorer.requests** -> dynamic micro-batching across requests (encode when
  `scorer_batch_max_texts` texts wait or the oldest has waited
  `scorer_batch_wait_ms`), one `Embedder.answer` per batch, one reply per
  request on the requester's reply partition. Requests past their deadline are
  dropped (the requester has moved on without vectors); undecodable ones go to
  events.dlq.
* **catalog.items** -> catalog.embeddings. An assigned catalog partition is
  read from its start; items whose text was already embedded in this version
  (seen on catalog.embeddings) are skipped, so a restart costs reads, not
  encodes. Once a partition is caught up, a completion marker for (version,
  partition) goes out. Catalog work runs in small chunks only while no request
  waits, so a catalog backfill does not hurt query latency.

Hot swap (a ``load_model`` message on scorer.control, or SIGHUP to reload the
configured directory): the new encoder loads in a background thread and is
*staged*; the catalog is re-embedded in it as background work while requests
are still answered in the current version; when every assigned partition is
marked complete the staged version becomes current. Requests name the version
their rank worker searches, and are answered in it while it is loaded, so a
rank worker never mixes query and item vector spaces. A scorer that starts
later reads scorer.control first and starts on the latest commanded model.

Why not Faust: the scorer has no tables and needs none of Faust's per-message
machinery (~300 us of CPU per message here); it spends its time in the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from streamrec import serde
from streamrec.aio import read_partition
from streamrec.build import build_dead_letters
from streamrec.contracts import (
    CATALOG_EMBEDDINGS,
    CATALOG_ITEMS,
    EVENTS_DLQ,
    METRICS,
    SCORER_CONTROL,
    SCORER_REQUESTS,
    load_contract,
)
from streamrec.core.ingest import RawMessage, Rejection, parse_document
from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.core.retrieval.vectors import encode_vectors
from streamrec.records import (
    CatalogEmbedding,
    CatalogItem,
    MetricsWindow,
    ScorerControl,
    ScorerReply,
    ScorerRequest,
)
from streamrec.scorer.embedder import BatchStats, Embedder, item_text, load_encoder, text_hash
from streamrec.settings import Settings

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Pending:
    request: ScorerRequest
    received: float  # monotonic seconds


@dataclass
class Tracked:
    item: CatalogItem
    text_hash: str


class ScorerService:
    """The shell around one `Embedder`: Kafka in, Kafka out, batching and catalog state."""

    def __init__(self, settings: Settings, embedder: Embedder) -> None:
        self.s = s = settings
        self.embedder = embedder
        self.scorer_id = f"{s.hostname()}-{os.getpid()}"
        self.t_requests = s.topic(SCORER_REQUESTS)
        self.t_catalog = s.topic(CATALOG_ITEMS)
        self.t_embeddings = s.topic(CATALOG_EMBEDDINGS)
        self.t_control = s.topic(SCORER_CONTROL)
        self.t_dlq = s.topic(EVENTS_DLQ)
        self.t_metrics = s.topic(METRICS)
        self.validate_request = load_contract(SCORER_REQUESTS).validator
        self.dead_letters = build_dead_letters(s)
        self.validate_item = load_contract(CATALOG_ITEMS).validator
        self.validate_embedding = load_contract(CATALOG_EMBEDDINGS).validator
        self.validate_control = load_contract(SCORER_CONTROL).validator
        # One thread runs the model: encodes never overlap, the event loop stays free
        # for heartbeats and fetches (torch releases the GIL while it computes).
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="encoder")
        self.pending: list[Pending] = []
        self.pending_texts = 0
        # Catalog state of the assigned partitions.
        self.items: dict[int, dict[str, Tracked]] = {}
        self.known: dict[int, dict[str, dict[str, str]]] = {}  # p -> item -> version -> hash
        self.dirty: dict[str, dict[int, dict[str, None]]] = {}  # version -> p -> ordered ids
        self.catch_up_to: dict[int, int] = {}  # p -> end offset at assignment
        self.next_offset: dict[int, int] = {}
        self.marked: set[tuple[str, int]] = set()
        self.swaps: asyncio.Queue[str] = asyncio.Queue()
        self.last_command_id: str | None = None
        self._reset_window()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.running = False

    # -- lifecycle --------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        self.running = True
        tasks = [
            asyncio.create_task(self._follow_control(), name="control"),
            asyncio.create_task(self._swapper(), name="swapper"),
        ]
        next_metrics = time.monotonic() + self.s.metrics_interval_s
        try:
            while not stop.is_set():
                await self.step()
                if time.monotonic() >= next_metrics:
                    next_metrics = time.monotonic() + self.s.metrics_interval_s
                    await self.publish_metrics()
                for t in tasks:
                    if t.done() and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
            await asyncio.wait_for(self.publish_metrics(), 5)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()

    async def start(self) -> None:
        s = self.s
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_list(),
            linger_ms=1,
            acks="all",
            **s.aiokafka_security(),
        )
        await self.producer.start()
        await self._start_on_latest_command()
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_list(),
            group_id=f"{s.app_id}-scorer",
            enable_auto_commit=True,
            auto_offset_reset="latest",  # an old request is past its deadline anyway
            fetch_max_wait_ms=s.scorer_fetch_max_wait_ms,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            max_poll_interval_ms=300_000,
            **s.aiokafka_security(),
        )
        await self.consumer.start()
        self.consumer.subscribe([self.t_requests, self.t_catalog], listener=_Rebalance(self))
        log.info(
            "scorer %s: encoder %s on %s (dim %d), group %s-scorer",
            self.scorer_id,
            self.embedder.current,
            self.embedder.encoders[self.embedder.current].device,
            self.embedder.dim,
            s.app_id,
        )

    async def close(self) -> None:
        """Leave the group and flush, each bounded: the broker may already be gone."""
        for what, coro in (
            ("consumer", self.consumer.stop() if self.consumer else None),
            ("producer flush", self.producer.flush() if self.producer else None),
            ("producer", self.producer.stop() if self.producer else None),
        ):
            if coro is None:
                continue
            try:
                await asyncio.wait_for(coro, 10)
            except (TimeoutError, Exception) as exc:  # shutting down: report, go on
                log.warning("scorer shutdown: %s did not stop cleanly: %r", what, exc)
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- the loop ---------------------------------------------------------------

    async def step(self) -> None:
        assert self.consumer is not None
        batches = await self.consumer.getmany(timeout_ms=self._poll_timeout_ms(), max_records=2000)
        now = now_ms()
        for tp, records in batches.items():
            for r in records:
                if tp.topic == self.t_requests:
                    await self._take_request(r, now)
                else:
                    await self._take_catalog(tp.partition, r)
                    self.next_offset[tp.partition] = r.offset + 1
        if self.pending and self._batch_due():
            await self._answer_batch()
        elif not self.pending and not await self._catalog_step():
            await self._finish_partitions()

    def _poll_timeout_ms(self) -> int:
        if self.pending:
            waited = (time.monotonic() - self.pending[0].received) * 1000
            return max(0, int(self.s.scorer_batch_wait_ms - waited))
        if any(ids for parts in self.dirty.values() for ids in parts.values()):
            return 0
        return 200

    def _batch_due(self) -> bool:
        if self.pending_texts >= self.s.scorer_batch_max_texts:
            return True
        waited = (time.monotonic() - self.pending[0].received) * 1000
        return waited >= self.s.scorer_batch_wait_ms

    # -- requests ---------------------------------------------------------------

    async def _take_request(self, r: Any, now: int) -> None:
        self.w_counts["requests"] += 1
        doc = parse_document(r.value or b"", self.validate_request, "scorer request")
        if isinstance(doc, Rejection):
            self.w_counts["bad_requests"] += 1
            await self._dead_letter(r, doc)
            return
        req = ScorerRequest.from_dict(doc)
        if req.deadline_ts < now:
            self.w_counts["expired"] += 1
            return
        self.pending.append(Pending(req, time.monotonic()))
        self.pending_texts += len(req.texts)

    async def _answer_batch(self) -> None:
        """Answer waiting requests, up to `scorer_batch_max_texts` texts, in one encode."""
        batch: list[Pending] = []
        texts = 0
        now = now_ms()
        while self.pending and (not batch or texts < self.s.scorer_batch_max_texts):
            p = self.pending.pop(0)
            self.pending_texts -= len(p.request.texts)
            if p.request.deadline_ts < now:
                self.w_counts["expired"] += 1
                continue
            batch.append(p)
            texts += len(p.request.texts)
        if not batch:
            return
        for p in batch:
            self.w_queue_wait.record(max(0, now - p.request.sent_ts))
        stats = BatchStats()
        work = [(p.request.texts, p.request.kind, p.request.model_version) for p in batch]
        answers = await self._in_model_thread(self.embedder.answer, work, stats)
        self._count_batch(stats, texts)
        produced = now_ms()
        for p, ans in zip(batch, answers, strict=True):
            req = p.request
            reply = ScorerReply(
                request_id=req.request_id,
                model_version=ans.version,
                dim=int(ans.vectors.shape[1]),
                vectors=encode_vectors(ans.vectors),
                valid=[bool(v) for v in ans.valid],
                produced_ts=produced,
                error=ans.error,
                scorer=self.scorer_id,
                batch_texts=texts,
                queue_wait_ms=float(max(0, now - req.sent_ts)),
            )
            await self._send(
                req.reply_to, req.request_id.encode(), serde.dumps(reply.to_dict()),
                req.reply_partition,
            )  # fmt: skip

    def _count_batch(self, stats: BatchStats, texts: int) -> None:
        c = self.w_counts
        c["batches"] += 1
        c["texts"] += stats.texts
        c["cache_hits"] += stats.cache_hits
        c["cache_misses"] += stats.cache_misses
        c["encoded"] += stats.encoded
        c["model_errors"] += stats.errors
        self.w_batch_texts.record(texts)

    # -- catalog ----------------------------------------------------------------

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
                    return True
        return False

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
        ends = await self.consumer.end_offsets(catalog)
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

    # -- hot swap ---------------------------------------------------------------

    def request_swap(self, model_dir: str) -> None:
        self.swaps.put_nowait(model_dir)

    async def _swapper(self) -> None:
        while True:
            model_dir = await self.swaps.get()
            await self._swap(model_dir)

    async def _swap(self, model_dir: str) -> None:
        log.info("loading encoder %s for a hot swap", model_dir)
        loop = asyncio.get_running_loop()
        try:
            encoder = await loop.run_in_executor(None, load_encoder, self.s, model_dir)
        except Exception as exc:
            log.error("hot swap refused, still serving %s: %s", self.embedder.current, exc)
            self.w_counts["swap_failures"] += 1
            return
        previous_stage = self.embedder.staged
        version = self.embedder.stage(encoder)
        if version == self.embedder.current:
            log.info("encoder %s is already current; nothing to swap", version)
            return
        if previous_stage is not None and previous_stage != version:
            self.dirty.pop(previous_stage, None)
        self.marked = {(v, p) for v, p in self.marked if v != version}
        parts = self.dirty.setdefault(version, {})
        for p, items in self.items.items():
            have = self.known.get(p, {})
            ids = parts.setdefault(p, {})
            for item_id, t in items.items():
                if have.get(item_id, {}).get(version) != t.text_hash:
                    ids[item_id] = None
        todo = sum(len(ids) for ids in parts.values())
        log.info("staged %s: re-embedding %d catalog items before switching", version, todo)

    async def _start_on_latest_command(self) -> None:
        """A scorer that starts late follows the fleet: the newest load_model wins."""
        latest: list[ScorerControl] = []

        def take(r: Any) -> None:
            doc = parse_document(r.value or b"", self.validate_control, "control")
            if not isinstance(doc, Rejection):
                latest.append(ScorerControl.from_dict(doc))

        self.control_next = await read_partition(self.s, self.t_control, 0, take)
        if not latest or latest[-1].model_dir is None:
            return
        cmd = latest[-1]
        self.last_command_id = cmd.command_id
        try:
            encoder = await asyncio.get_running_loop().run_in_executor(
                None, load_encoder, self.s, cmd.model_dir
            )
        except Exception as exc:
            log.error("cannot load commanded model %s, keeping the configured one: %s", cmd, exc)
            return
        if encoder.version != self.embedder.current:
            log.info("starting on the last commanded encoder %s", encoder.version)
            self.embedder.stage(encoder)
            self.embedder.promote()
            self.embedder.previous = None

    async def _follow_control(self) -> None:
        s = self.s
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_list(),
            enable_auto_commit=False,
            fetch_max_wait_ms=max(s.fetch_max_wait_ms, 100),
            **s.aiokafka_security(),
        )
        await consumer.start()
        try:
            tp = TopicPartition(self.t_control, 0)
            consumer.assign([tp])
            consumer.seek(tp, getattr(self, "control_next", 0))
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for r in records:
                        doc = parse_document(r.value or b"", self.validate_control, "control")
                        if isinstance(doc, Rejection):
                            log.warning("ignoring a bad control message: %s", doc.detail)
                            continue
                        cmd = ScorerControl.from_dict(doc)
                        if cmd.command == "load_model" and cmd.model_dir:
                            self.last_command_id = cmd.command_id
                            self.request_swap(cmd.model_dir)
        finally:
            await consumer.stop()

    # -- plumbing ---------------------------------------------------------------

    async def _in_model_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        assert self.producer is not None
        fut = await self.producer.send(topic, value, key=key, partition=partition)
        fut.add_done_callback(_log_failure)

    async def _dead_letter(self, r: Any, rejection: Rejection) -> None:
        msg = RawMessage(r.value, r.key, r.partition, r.offset, r.timestamp, r.topic)
        key, dead = self.dead_letters.write(rejection, msg, now_ms())
        log.warning("dead letter %s at %s[%d]@%d: %s", dead.reason, r.topic, r.partition,
                    r.offset, dead.detail)  # fmt: skip
        await self._send(self.t_dlq, key, serde.dumps(dead.to_dict()))

    def _reset_window(self) -> None:
        self.w_start = now_ms()
        self.w_counts: dict[str, int] = dict.fromkeys(SCORER_COUNTS, 0)
        self.w_batch_texts = LogHistogram()
        self.w_queue_wait = LogHistogram()

    def window(self) -> MetricsWindow:
        """The counters since the last window, as a metrics record (then reset)."""
        c = self.w_counts
        lookups = c["cache_hits"] + c["cache_misses"]
        scorer: dict[str, Any] = {
            **c,
            "cache_hit_rate": round(c["cache_hits"] / lookups, 4) if lookups else None,
            "batch_texts": _summary(self.w_batch_texts, (50, 95, 100)),
            "queue_wait_ms": _summary(self.w_queue_wait, (50, 95, 99)),
            # Mergeable forms of the two above: readers add windows of many scorers.
            "batch_texts_hist": self.w_batch_texts.to_dict(),
            "queue_wait_hist": self.w_queue_wait.to_dict(),
            "model_version": self.embedder.current,
            "staged_version": self.embedder.staged,
            "catalog_pending": sum(len(i) for ps in self.dirty.values() for i in ps.values()),
        }
        window = MetricsWindow(
            worker=self.scorer_id,
            window_start=self.w_start,
            window_end=now_ms(),
            counts={"in": 0, "valid": 0, "dlq": 0, "duplicates": 0},
            by_type={},
            role="scorer",
            scorer=scorer,
        )
        self._reset_window()
        return window

    async def publish_metrics(self) -> None:
        w = self.window()
        await self._send(self.t_metrics, self.scorer_id.encode(), serde.dumps(w.to_dict()))
        sc = w.scorer
        if sc["requests"] or sc["catalog_embedded"]:
            log.info(
                "window: requests=%d texts=%d hit_rate=%s batch p50=%s wait p95=%s ms "
                "catalog embedded=%d pending=%d",
                sc["requests"], sc["texts"], sc["cache_hit_rate"], sc["batch_texts"].get("p50"),
                sc["queue_wait_ms"].get("p95"), sc["catalog_embedded"], sc["catalog_pending"],
            )  # fmt: skip


SCORER_COUNTS = (
    "requests",
    "bad_requests",
    "expired",
    "batches",
    "texts",
    "cache_hits",
    "cache_misses",
    "encoded",
    "model_errors",
    "catalog_embedded",
    "catalog_removed",
    "catalog_invalid",
    "catalog_errors",
    "swap_failures",
)


def _summary(h: LogHistogram, qs: tuple[float, ...]) -> dict[str, float]:
    if not h.count:
        return {}
    return {("max" if q == 100 else f"p{q:g}"): round(h.percentile(q), 2) for q in qs}


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("a scorer message could not be delivered: %r", fut.exception())


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: ScorerService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.service.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.service.on_assigned(set(assigned))


def run_foreground(settings: Settings, embedder: Embedder | None = None) -> int:
    """`streamrec scorer`: load the model (fail fast), then serve until SIGINT/SIGTERM.

    SIGHUP reloads the configured model directory (e.g. a symlink moved to a
    new fine-tuned version) through the same hot swap as a control message.
    """
    embedder = embedder or Embedder.from_settings(settings)
    service = ScorerService(settings, embedder)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_stop() -> None:
            if stop.is_set():
                os._exit(130)  # asked twice: leave now
            stop.set()
            # Before the loop runs (still connecting, maybe to a broker that is gone),
            # nothing would look at `stop`: cancel. Later, give shutdown 15 s.
            if service.running:
                loop.call_later(15, task.cancel)
            else:
                task.cancel()

        loop.add_signal_handler(signal.SIGINT, on_stop)
        loop.add_signal_handler(signal.SIGTERM, on_stop)
        loop.add_signal_handler(
            signal.SIGHUP,
            lambda: service.request_swap(
                str(Path(settings.encoder_model_dir).resolve())
                if settings.encoder_model_dir
                else str(embedder.encoders[embedder.current].model_dir)
            ),
        )
        with contextlib.suppress(asyncio.CancelledError):
            await service.run(stop)

    asyncio.run(main())
    return 0


async def send_control(settings: Settings, model_dir: str) -> ScorerControl:
    """Publish a load_model command (what `streamrec scorer load-model DIR` does)."""
    cmd = ScorerControl("load_model", uuid.uuid4().hex, now_ms(), model_dir)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_list(), **settings.aiokafka_security()
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(SCORER_CONTROL), serde.dumps(cmd.to_dict()), key=b"load_model"
        )
    finally:
        await producer.stop()
    return cmd
