"""The streaming shell: one Faust agent does ingest + profile + recommend.

storefront.events --(take_events micro-batch)--> Engine.process_batch
    --> recommendations (keyed by pseudonym), events.dlq (reason + original bytes)

The agent decodes nothing itself: it hands raw bytes to the core and sends
what the core returns. Each Faust hop costs ~300 us of CPU per message here,
so there is exactly one on the main path. Around it:

* a catalog follower (plain aiokafka, all partitions, from the beginning of
  the compacted catalog.items and catalog.embeddings) keeps every item's
  title, categories, availability and vectors in memory on every worker;
* a scorer client: the batch's search texts that the worker's query cache
  lacks go to the scorer in one request per batch, with a deadline; when the
  scorer is slow or down the batch goes on without them (flagged
  no_query_vector), and nothing waits for a scorer known to be down;
* a timer publishes counter windows to `metrics` (counts, latency histogram,
  online quality per A/B variant), the drift detectors' states to
  `drift.stats`, and alert rule transitions to `alerts`; a drift detected
  while processing a batch goes to `drift.stats` (and its alert rules) at once;
* a small HTTP server answers Prometheus on `/metrics` with the same numbers;
* a timer snapshots the recommender (trending, co-visitation) and the item
  vectors (FAISS indexes, with the catalog.embeddings offsets they include)
  to the data dir; both are loaded at start-up, and the follower reads
  catalog.embeddings on from those offsets instead of from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.exceptions import ConsistencyError, ProducerSendError
from faust.worker import Worker as FaustWorker

from streamrec import serde
from streamrec.aio import end_offsets, wait_partitions
from streamrec.contracts import (
    ALERTS,
    CATALOG_EMBEDDINGS,
    CATALOG_ITEMS,
    DRIFT_STATS,
    EVENTS_DLQ,
    METRICS,
    RECOMMENDATIONS,
    STOREFRONT_EVENTS,
    load_contract,
    partitions_for,
)
from streamrec.core.alerts import AlertEngine
from streamrec.core.counters import Counters
from streamrec.core.drift import Detection
from streamrec.core.engine import BatchOutput, Engine
from streamrec.core.ingest import RawMessage, Rejection, parse_document
from streamrec.core.monitor import MonitorWindow
from streamrec.core.recommender import Recommender
from streamrec.core.vectors import decode_vectors
from streamrec.core.windows import merge_windows
from streamrec.delivery import BatchDelivery, is_message_error
from streamrec.faust_tuning import defer_acks, set_end_offsets, set_fetch_max_wait_ms
from streamrec.profile_store import TableProfileStore
from streamrec.prometheus import MetricsState, serve
from streamrec.records import (
    Alert,
    CatalogEmbedding,
    CatalogItem,
    DeadLetter,
    DriftStat,
    MetricsWindow,
)
from streamrec.scorer.client import ScorerClient
from streamrec.settings import Settings

log = logging.getLogger(__name__)


#: Longest dead-letter key kept (bytes): keys are user ids; a 1 MiB one must not block.
MAX_DLQ_KEY = 1_024


def now_ms() -> int:
    return int(time.time() * 1000)


def broker_lost_data(evidence: str, s: Settings) -> str:
    """What to say (and do) when the broker no longer has what this worker saw."""
    what = (
        "the embedded broker keeps everything in memory, so a restart of it loses every topic"
        if s.is_embedded
        else "the topics were deleted or recreated"
    )
    return (
        f"the broker lost its data: {evidence} ({what}). The profiles in "
        f"{Path(s.data_dir) / 'faust'} belong to the old data. To start over: stop every "
        "worker, move that directory aside, run `streamrec topics create`, start the "
        "workers again"
    )


class Worker:
    """Builds the Faust app around one `Engine` and owns its side tasks."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = s = settings
        set_fetch_max_wait_ms(s.fetch_max_wait_ms)
        if s.rank_threads > 0:
            import faiss

            faiss.omp_set_num_threads(s.rank_threads)
        Path(s.data_dir, "faust").mkdir(parents=True, exist_ok=True)
        self.worker_id = f"{s.hostname()}-{os.getpid()}"
        self.snapshot_path = Path(s.data_dir) / f"{s.app_id}-recommender.pkl"
        self.vectors_path = Path(s.data_dir) / f"{s.app_id}-item-vectors.pkl"
        self.engine = engine or Engine.from_settings(s, recommender=self._load_snapshot())
        #: catalog.embeddings partition -> next offset the item vectors have not seen
        self.embedding_offsets: dict[int, int] = self._load_vectors_snapshot()
        self._vectors_written = dict(self.embedding_offsets)
        self.t_events = s.topic(STOREFRONT_EVENTS)
        self.t_recs = s.topic(RECOMMENDATIONS)
        self.t_dlq = s.topic(EVENTS_DLQ)
        self.t_metrics = s.topic(METRICS)
        self.t_drift = s.topic(DRIFT_STATS)
        self.t_alerts = s.topic(ALERTS)
        self.metrics_state = MetricsState(self.worker_id)
        self.alert_engine = AlertEngine(s.alert_rule_set(), self.worker_id)
        self.t_catalog = s.topic(CATALOG_ITEMS)
        self.t_embeddings = s.topic(CATALOG_EMBEDDINGS)
        self.scorer = (
            ScorerClient(s, self.worker_id, on_late=self.engine.add_query_vectors)
            if s.scorer_enabled
            else None
        )
        self.scorer_ready = False
        self.bad_embeddings = 0
        self._window_start = now_ms()
        #: Batches whose messages are still on their way to the broker.
        self._settling: set[asyncio.Future[None]] = set()
        #: Set when the worker must stop (it cannot deliver, or the broker lost its data).
        self.exit_code = 0
        set_end_offsets(lambda tps: end_offsets(s, tps))
        self.app = self._build_app()

    # -- app --------------------------------------------------------------------

    def _build_app(self) -> faust.App:
        s = self.settings
        partitions = partitions_for(STOREFRONT_EVENTS, s.partitions)
        app = faust.App(
            s.app_id,
            broker=[f"kafka://{b}" for b in s.bootstrap_list()],
            broker_credentials=_faust_credentials(s),
            store="rocksdb://" if s.store == "rocksdb" else "memory://",
            datadir=str(Path(s.data_dir) / "faust"),
            topic_partitions=partitions,
            topic_allow_declare=True,
            topic_disable_leader=True,
            broker_session_timeout=s.session_timeout_s,
            broker_heartbeat_interval=s.heartbeat_interval_s,
            broker_request_timeout=max(90.0, s.session_timeout_s + 10),
            producer_linger=s.producer_linger_ms / 1000.0,
            consumer_auto_offset_reset="earliest",
            table_standby_replicas=0,
            web_enabled=s.web_enabled,
            web_port=s.web_port,
            key_serializer="raw",
            value_serializer="raw",
        )
        events = app.topic(
            self.t_events,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )
        self.profiles = app.Table(
            "profiles",
            default=None,
            # bytes types make Faust pick the raw codec for store and changelog alike
            # (a Schema would leave the store on JSON); the core owns the encoding.
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
        )
        self.store = TableProfileStore(self.profiles, s.profile_cache_size)
        self.changelog_topic = self.profiles.changelog_topic.get_topic_name()

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            self.store.clear_cache()

        async def process(stream: Any) -> None:
            within = s.batch_within_ms / 1000.0
            ack = defer_acks(stream)
            async for batch in stream.take_events(s.batch_max, within):
                try:
                    await self.handle_batch(batch, ack)
                except Exception as exc:  # the core never raises: this is the shell or Kafka
                    log.exception("batch failed outside the core")
                    self.fatal(f"a batch could not be processed ({exc!r}); it is not acked")

        app.agent(events, name=f"{s.app_id}.process")(process)
        app.task(self.follow_catalog)
        app.task(self.start_scorer_client)
        app.timer(s.metrics_interval_s)(self.publish_metrics)
        if s.metrics_port:
            app.task(self.serve_prometheus)
        app.timer(s.snapshot_interval_s)(self.save_snapshot)
        return app

    async def handle_batch(
        self, batch: Sequence[Any], ack: Callable[[Sequence[Any]], Awaitable[None]]
    ) -> None:
        """Process one micro-batch and hand everything it produced to the producer.

        Nothing waits for the broker here: the batch settles in the background
        (`_settle`), and only then are its events acked and its counts added.
        """
        if self.exit_code:
            return  # stopping: nothing more is processed, nothing more acked
        self._check_offsets(batch)
        msgs = [
            RawMessage(
                value=ev.value,
                key=ev.key,
                partition=ev.message.partition,
                offset=ev.message.offset,
                timestamp_ms=int((ev.message.timestamp or 0) * 1000),
                topic=ev.message.topic,
            )
            for ev in batch
        ]
        delivery = BatchDelivery(batch)
        ingested = self.engine.ingest_batch(msgs, now_ms())
        texts = self.engine.missing_queries(ingested)
        self.store.begin_batch(batch)
        if not texts or self.scorer is None or not self.scorer_ready:
            await self._publish(self.engine.apply_batch(ingested, self.store, now_ms()), delivery)
        else:
            # One request per batch. Only the users who typed one of these queries wait
            # for it (bounded by the timeout); everyone else's events are processed while
            # the scorer works, so a scorer round trip never delays the whole batch.
            ready, waiting = self.engine.split_waiting(ingested, texts)
            request = asyncio.ensure_future(
                self.scorer.embed(texts, self.engine.item_vectors.active_version)
            )
            await self._publish(self.engine.apply_batch(ready, self.store, now_ms()), delivery)
            vectors = await request
            if vectors is not None:
                self.engine.add_query_vectors(vectors)
            await self._publish(self.engine.apply_batch(waiting, self.store, now_ms()), delivery)
        task = asyncio.ensure_future(self._settle(delivery, ack))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def _check_offsets(self, batch: Sequence[Any]) -> None:
        """An event below the committed offset of its partition: the broker lost its data.

        Faust only delivers from the committed offset on; a consumer reset to the
        start of an emptied partition is the one way to see less. Profiles remember
        the offsets they applied, so carrying on would skip the new events as replays.
        """
        committed = cast(Any, self.app.consumer)._committed_offset
        for ev in batch:
            tp = ev.message.tp
            floor = committed.get(tp)
            if floor is not None and ev.message.offset < floor:
                self.fatal(broker_lost_data(
                    f"{tp.topic}[{tp.partition}] delivered offset {ev.message.offset}, "
                    f"below the committed offset {floor}",
                    self.settings,
                ))  # fmt: skip
                return

    async def _publish(self, out: BatchOutput, delivery: BatchDelivery) -> None:
        """Hand one output's messages to the producer; `delivery` tracks them."""
        for user_key, profile, partition in self.store.take_pending():
            delivery.add(
                await self._send(
                    self.changelog_topic, user_key, profile, partition, self._on_changelog_sent
                )
            )
        now = now_ms()
        for key, value, i in self.engine.encode(out, now):
            try:
                fut = await self._send(self.t_recs, key, value)
            except ProducerSendError as exc:
                if not is_message_error(exc):
                    raise
                self.engine.unpublish(out, i, "publish_error", str(exc), now)  # this event only
                continue
            delivery.add(fut, out, i)
        for dead_key, dead in out.dead_letters:
            delivery.add(await self.send_dead_letter(dead_key, dead))
        delivery.outputs.append(out)
        for detection in out.drift:
            await self.publish_detection(detection)

    async def _settle(
        self, delivery: BatchDelivery, ack: Callable[[Sequence[Any]], Awaitable[None]]
    ) -> None:
        """Once the broker has every message of a batch: ack its events, count it."""
        late = BatchDelivery(())
        for sent, exc in await delivery.failures():
            if sent.out is None or not is_message_error(exc):
                self.fatal(f"a message could not be delivered ({exc!r}); the batch is not acked")
                return
            # The broker refused this list for what it is: its event becomes a dead letter.
            before = len(sent.out.dead_letters)
            self.engine.unpublish(sent.out, sent.index, "publish_error", repr(exc), now_ms())
            for key, dead in sent.out.dead_letters[before:]:
                late.add(await self.send_dead_letter(key, dead))
        if late.sent and await late.failures():
            self.fatal("a dead letter could not be delivered; the batch is not acked")
            return
        await ack(delivery.events)
        for out in delivery.outputs:
            self.engine.count(out.counters)

    async def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None = None,
        on_delivered: Callable[[asyncio.Future[Any]], None] | None = None,
    ) -> asyncio.Future[Any]:
        """Hand one message to the producer (Faust's raw path); returns its delivery."""
        fut = cast(
            "asyncio.Future[Any]",
            await self.app.producer.send(topic, key, value, partition, None, None),
        )
        if on_delivered is not None:
            fut.add_done_callback(on_delivered)
        return fut

    def _on_changelog_sent(self, fut: asyncio.Future[Any]) -> None:
        # What Faust's own table writes do: remember the changelog offset in the
        # local store, so a restarted node resumes recovery there instead of
        # re-reading the whole changelog.
        if not fut.cancelled() and fut.exception() is None:
            md = fut.result()
            cast(Any, self.profiles.data).set_persisted_offset(md.topic_partition, md.offset)

    def fatal(self, message: str, code: int = 1) -> None:
        """Stop the worker: log why once, exit non-zero (events not acked are redone)."""
        if self.exit_code:
            return
        self.exit_code = code
        log.critical("%s; the worker stops", message)
        os.kill(os.getpid(), signal.SIGTERM)  # the normal shutdown, with its time limit

    async def send_dead_letter(self, key: bytes | None, dead: DeadLetter) -> asyncio.Future[Any]:
        """Log topic/partition/offset and the reason, send to events.dlq, carry on."""
        log.warning(
            "dead letter %s at %s[%d]@%d: %s",
            dead.reason,
            dead.source_topic,
            dead.partition,
            dead.offset,
            dead.detail,
        )
        if key is not None and len(key) > MAX_DLQ_KEY:
            key = key[:MAX_DLQ_KEY]  # a key is the user id in practice; a huge one must not block
        return await self._send(self.t_dlq, key, serde.dumps(dead.to_dict()))

    # -- side tasks -------------------------------------------------------------

    async def start_scorer_client(self) -> None:
        if self.scorer is not None:
            await self.scorer.start()
            self.scorer_ready = True

    async def follow_catalog(self) -> None:
        """Keep the whole catalog and its vectors: every partition, from the start."""
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
            await self._seek_catalog(consumer, tps)
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                for tp, records in batches.items():
                    if tp.topic == self.t_embeddings:
                        for r in records:
                            self._apply_embedding_record(r, validate_embedding)
                            self.embedding_offsets[tp.partition] = r.offset + 1
                        continue
                    for r in records:
                        dead = self._apply_catalog_record(r, validate)
                        if dead is not None:
                            await self.send_dead_letter(r.key, dead)
        finally:
            await consumer.stop()

    async def _seek_catalog(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
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
                    len(emb), hnsw_above=self.settings.index_hnsw_above
                )
                self.embedding_offsets = {}
            await consumer.seek_to_beginning(*tps)
            return
        await consumer.seek_to_beginning(*[tp for tp in tps if tp.topic != self.t_embeddings])
        for tp in emb:
            consumer.seek(tp, saved[tp.partition])
        log.info(
            "item vectors restored from snapshot; reading catalog.embeddings on from %s", saved
        )

    def _apply_catalog_record(self, r: Any, validate: Any) -> DeadLetter | None:
        if r.value is None:
            if r.key is not None:  # tombstone on the compacted topic: item deleted
                self.engine.catalog.remove(r.key.decode("utf-8", "replace"))
            return None
        doc = parse_document(r.value, validate, "catalog item")
        if not isinstance(doc, Rejection):
            self.engine.upsert_item(CatalogItem.from_dict(doc))
            return None
        msg = RawMessage(r.value, r.key, r.partition, r.offset, r.timestamp, r.topic)
        return self.engine.dead_letter(msg, doc, now_ms())

    def _apply_embedding_record(self, r: Any, validate: Any) -> None:
        vectors = self.engine.item_vectors
        if r.value is None:
            if r.key is not None:
                vectors.remove(r.key.decode("utf-8", "replace"))
            return
        doc = parse_document(r.value, validate, "catalog embedding")
        if isinstance(doc, Rejection):
            # Written by the scorer, not by users: a bad record is a bug to log, not input.
            self.bad_embeddings += 1
            log.error("unreadable catalog.embeddings record at offset %d: %s", r.offset, doc.detail)
            return
        emb = CatalogEmbedding.from_dict(doc)
        if emb.kind == "complete":
            before = vectors.active_version
            vectors.mark_complete(emb.model_version, int(emb.partition or 0), emb.ts)
            if vectors.active_version != before:
                log.info("item vectors switched to %s: %s", vectors.active_version, vectors.stats())
            return
        try:
            vec = decode_vectors(emb.vector or "", int(emb.dim or 0))[0]
        except (ValueError, IndexError) as exc:
            self.bad_embeddings += 1
            log.error("bad vector for item %s: %s", emb.item_id, exc)
            return
        vectors.upsert(str(emb.item_id), emb.model_version, vec)

    async def publish_metrics(self) -> None:
        window = self.engine.counters.reset()
        repaired = self.store.take_repaired()
        if repaired:
            window.counts["profiles_repaired"] += repaired
        monitor = self.engine.monitor
        watched = monitor.reset() if monitor is not None else MonitorWindow()
        end = now_ms()
        record = metrics_window(
            self.worker_id, self._window_start, end, window, watched, self.settings.quality_k
        )
        if self.scorer is not None:
            record.scorer.update(self.scorer.window())
        record.scorer["item_vectors"] = len(self.engine.item_vectors)
        record.scorer["encoder_version"] = self.engine.item_vectors.active_version
        self._window_start = end
        await self._send_value(self.t_metrics, self.worker_id, record.to_dict())
        summary = merge_windows([record]).summary()
        self.metrics_state.add_window(record, summary)
        self.metrics_state.gauges["item_vectors"] = float(len(self.engine.item_vectors))
        for d in watched.drift:
            stat = DriftStat(worker=self.worker_id, ts=end, **d)
            self.metrics_state.add_drift(stat)
            await self._send_value(self.t_drift, stat.name, stat.to_dict())
        for alert in self.alert_engine.on_window(summary, end):
            await self.publish_alert(alert)
        c = record.counts
        if c["in"]:
            log.info(
                "window: in=%d valid=%d dlq=%d dup=%d latency p50=%s p99=%s ms hit_rate=%s ctr=%s",
                c["in"],
                c["valid"],
                c["dlq"],
                c["duplicates"],
                record.freshness_ms.get("p50"),
                record.freshness_ms.get("p99"),
                summary["hit_rate"],
                summary["ctr"],
            )

    async def publish_detection(self, d: Detection) -> None:
        """A drift, the moment it is detected: drift.stats, then its alert rules."""
        ts = now_ms()
        stat = d.to_stat(self.worker_id, ts)
        log.info("drift: %s", stat.message)
        self.metrics_state.add_drift(stat)
        await self._send_value(self.t_drift, d.name, stat.to_dict())
        for alert in self.alert_engine.on_drift(d, ts):
            await self.publish_alert(alert)

    async def publish_alert(self, alert: Alert) -> None:
        if alert.state == "firing":
            log.warning("ALERT %s [%s]: %s", alert.alert, alert.severity, alert.message)
            self.metrics_state.firing[alert.alert] = alert.severity
        else:
            log.info("alert resolved: %s", alert.message)
            self.metrics_state.firing.pop(alert.alert, None)
        await self._send_value(self.t_alerts, alert.alert, alert.to_dict())

    async def _send_value(self, topic: str, key: str, value: dict[str, Any]) -> None:
        """Monitoring records: not tied to events, so a failure is logged, not fatal."""
        fut = await self._send(topic, key.encode(), serde.dumps(value))
        fut.add_done_callback(lambda f: _log_failed_send(f, topic))

    async def serve_prometheus(self) -> None:
        s = self.settings
        try:
            runner = await serve(self.metrics_state, s.metrics_host, s.metrics_port)
        except OSError as exc:
            log.warning("Prometheus /metrics not served: %s", exc)
            return
        try:
            await asyncio.Event().wait()  # until the app stops this task
        finally:
            await runner.cleanup()

    async def save_snapshot(self) -> None:
        self._write_snapshot()

    def _write_snapshot(self) -> None:
        _write_atomic(self.snapshot_path, self.engine.recommender.snapshot())
        # Item vectors are large (100k x 384 floats plus the index: hundreds of MB) and
        # change only with the catalog: written only when catalog.embeddings moved.
        if self.embedding_offsets == self._vectors_written:
            return
        state = {"offsets": dict(self.embedding_offsets), "vectors": self.engine.item_vectors}
        _write_atomic(self.vectors_path, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        self._vectors_written = dict(self.embedding_offsets)

    def _load_vectors_snapshot(self) -> dict[int, int]:
        if not self.vectors_path.is_file():
            return {}
        try:
            state = pickle.loads(self.vectors_path.read_bytes())
            vectors, offsets = state["vectors"], dict(state["offsets"])
        except Exception as exc:
            log.warning("ignoring unreadable item-vector snapshot %s: %s", self.vectors_path, exc)
            return {}
        self.engine.item_vectors = vectors
        log.info("restored item-vector snapshot %s: %s", self.vectors_path, vectors.stats())
        return offsets

    def _load_snapshot(self) -> Recommender | None:
        if not self.snapshot_path.is_file():
            return None
        try:
            rec = Recommender.restore(self.snapshot_path.read_bytes())
        except Exception as exc:
            log.warning("ignoring unreadable recommender snapshot %s: %s", self.snapshot_path, exc)
            return None
        log.info("restored recommender snapshot %s: %s", self.snapshot_path, rec.stats())
        return rec

    # -- running ----------------------------------------------------------------

    def run(self) -> int:
        """Run in the foreground until SIGINT/SIGTERM; then publish and snapshot once more.

        Returns the exit status: 0 after a requested stop, non-zero when the worker
        had to stop (it could not deliver, or the broker lost its data).
        """

        @self.app.on_before_shutdown.connect  # type: ignore[arg-type]
        async def _final(app: Any, **kwargs: Any) -> None:  # pragma: no cover - shutdown path
            try:
                await self.publish_metrics()
                await app.producer.flush()
                if self.scorer is not None and self.scorer_ready:
                    await self.scorer.stop()
            except Exception as exc:
                log.warning("final metrics window not published: %s", exc)
            self._write_snapshot()

        worker = _Worker(
            self.app,
            loglevel=self.settings.log_level,
            quiet=True,
            redirect_stdouts=False,
            override_logging=True,
        )
        worker.stop_within_s = self.settings.shutdown_timeout_s
        worker.exit_code = lambda: self.exit_code
        with contextlib.suppress(SystemExit):  # Faust exits 0 whatever happened
            worker.execute_from_commandline()
        crash = _crash_reason(self.app)
        if isinstance(crash, ConsistencyError):
            log.critical(broker_lost_data(str(crash).replace("\n", " ").strip(), self.settings))
            return 3
        if crash is not None and not self.exit_code:
            log.critical("the worker crashed: %r", crash)
            return 1
        return self.exit_code


class _Worker(FaustWorker):
    """Faust's worker, with a time limit on stopping.

    Faust's shutdown waits for the broker (acks, offset commits, the producer's
    flush): with the broker gone it took minutes, and SIGTERM seemed ignored.
    After a stop signal a watchdog thread ends the process once `stop_within_s`
    have passed; events not acked by then are processed again by the next worker.
    """

    stop_within_s: float = 8.0
    exit_code: Callable[[], int] = staticmethod(lambda: 0)

    def _schedule_shutdown(self, signum: signal.Signals) -> None:
        if not getattr(self, "_watchdog_started", False):
            self._watchdog_started = True
            threading.Thread(target=self._watchdog, name="stop-watchdog", daemon=True).start()
        super()._schedule_shutdown(signum)

    def _watchdog(self) -> None:
        time.sleep(self.stop_within_s)
        log.error(
            "the worker did not stop within %.0f s (STREAMREC_SHUTDOWN_TIMEOUT_S); exiting now; "
            "events not acked yet will be processed again",
            self.stop_within_s,
        )
        logging.shutdown()
        os._exit(self.exit_code() or 1)


def _crash_reason(app: Any) -> BaseException | None:
    """Why Faust stopped on its own, if it did (the app, or its table recovery)."""
    for service in (app, getattr(app.tables, "recovery", None)):
        reason = getattr(service, "crash_reason", None)
        if reason is not None:
            return cast(BaseException, reason)
    return None


def _log_failed_send(fut: asyncio.Future[Any], topic: str) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("a record for %s was not delivered: %r", topic, fut.exception())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def metrics_window(
    worker: str,
    start: int,
    end: int,
    window: Counters,
    watched: MonitorWindow | None = None,
    quality_k: int = 10,
) -> MetricsWindow:
    counts = window.snapshot()
    seconds = (end - start) / 1000.0
    latency = window.freshness
    return MetricsWindow(
        worker=worker,
        window_start=start,
        window_end=end,
        counts=counts,
        by_type=dict(window.by_type),
        dlq_reasons=dict(window.dlq_reasons),
        freshness_ms=latency.summary() if latency.count else {},
        latency_hist=latency.to_dict() if latency.count else {},
        per_type=window.per_type(),
        quality={v: s.to_dict() for v, s in (watched.quality if watched else {}).items()},
        quality_k=quality_k,
        events_per_s=round(counts["in"] / seconds, 2) if seconds > 0 else 0.0,
    )


def _faust_credentials(s: Settings) -> Any:
    if s.kafka_security_protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if "SSL" in s.kafka_security_protocol:
        import ssl

        ssl_context = ssl.create_default_context(cafile=s.kafka_ssl_cafile or None)
    if s.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=s.kafka_sasl_username,
            password=s.kafka_sasl_password.get(),
            mechanism=s.kafka_sasl_mechanism,
            ssl_context=ssl_context,
        )
    return faust.SSLCredentials(ssl_context)
