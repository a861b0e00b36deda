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

Parts: request batching here; the catalog work in `catalog_work.py`; hot swap and
`scorer.control` in `hot_swap.py`; the metrics window in `scorer_metrics.py`.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from streamrec import clients, serde
from streamrec.build import build_dead_letters
from streamrec.clock import now_ms
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
from streamrec.core.retrieval.vectors import encode_vectors
from streamrec.records import (
    ScorerReply,
    ScorerRequest,
)
from streamrec.scorer.catalog_work import CatalogWork, Tracked
from streamrec.scorer.embedder import BatchStats, Embedder
from streamrec.scorer.hot_swap import HotSwap
from streamrec.scorer.progress import EmbedProgress
from streamrec.scorer.scorer_metrics import ScorerMetrics
from streamrec.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Pending:
    request: ScorerRequest
    received: float  # monotonic seconds


class ScorerService(CatalogWork, HotSwap, ScorerMetrics):
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
        self.progress = EmbedProgress()
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
        self.producer = clients.aio_producer(s, linger_ms=1, acks="all")
        await self.producer.start()
        await self._start_on_latest_command()
        self.consumer = clients.aio_consumer(
            s,
            group_id=f"{s.app_id}-scorer",
            enable_auto_commit=True,
            auto_offset_reset="latest",  # an old request is past its deadline anyway
            fetch_max_wait_ms=s.scorer_fetch_max_wait_ms,
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            max_poll_interval_ms=300_000,
        )
        await self.consumer.start()
        self.consumer.subscribe([self.t_requests, self.t_catalog], listener=_Rebalance(self))
        log.info(
            "scorer %s: encoder %s, %s on %s (dim %d), group %s-scorer",
            self.scorer_id,
            self.embedder.current,
            self.embedder.encoders[self.embedder.current].backend,
            getattr(self.embedder.encoders[self.embedder.current], "device", "cpu"),
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
