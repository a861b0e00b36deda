"""The worker's Faust app: one agent does ingest + profile + recommend.

storefront.events --(take_events micro-batch)--> the engine (core)
    --> recommendations (keyed by pseudonym), events.dlq, the profile changelog

The agent decodes nothing itself: it hands raw bytes to the core and sends
what the core returns, then settles each batch in the background: its events
are acked (so Faust may commit past them) and its counts join the metrics
window only once the broker has every message it produced
(`worker.delivery`). Each Faust hop costs ~300 us of CPU per message here, so
there is exactly one on the main path. Around it, as app tasks and timers:
the catalog follower (`worker.catalog`), the shared-state follower
(`worker.shared`) and the shared checkpoint (`worker.checkpoint`), the scorer
client (`scorer.client`), metrics/drift/alert publishing
(`worker.monitoring`), Prometheus `/metrics`, and snapshots
(`worker.snapshots`). Every send goes through `worker.outbox`; starting and
stopping the process is `worker.lifecycle`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import faust
from faust.exceptions import ProducerSendError

from streamrec import batch_log
from streamrec.aio import end_offsets
from streamrec.build import build_engine
from streamrec.clock import now_ms
from streamrec.contracts import (
    STOREFRONT_EVENTS,
    partitions_for,
)
from streamrec.core.engine import BatchOutput, Engine
from streamrec.core.ingest import RawMessage
from streamrec.core.item_log import ItemLog
from streamrec.core.plan import Embed, Publish, batch_plan
from streamrec.core.ranking.feedback import replay
from streamrec.heap import freeze_startup
from streamrec.prometheus import serve_until_stopped
from streamrec.settings import Settings
from streamrec.worker.catalog import CatalogFollower
from streamrec.worker.checkpoint import CheckpointWriter, read_topic, start_from_checkpoint
from streamrec.worker.delivery import AckOrder, BatchDelivery, is_message_error
from streamrec.worker.faust_app import faust_app
from streamrec.worker.faust_tuning import (
    defer_acks,
    guard_commits,
    set_end_offsets,
    set_fetch_max_wait_ms,
    sort_delivered,
)
from streamrec.worker.lifecycle import broker_lost_data, run_app
from streamrec.worker.monitoring import WorkerMonitoring
from streamrec.worker.outbox import Outbox
from streamrec.worker.profile_store import TableProfileStore
from streamrec.worker.ranker_journal import RankerJournal
from streamrec.worker.readiness import Readiness
from streamrec.worker.scorer_client import ScorerClient
from streamrec.worker.shared import SharedStateFollower
from streamrec.worker.snapshots import Snapshots
from streamrec.worker.stall import StallWatch

log = logging.getLogger(__name__)

MiB = 1_048_576


class Worker:
    """Builds the Faust app around one `Engine` and owns its side tasks."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = s = settings
        set_fetch_max_wait_ms(s.fetch_max_wait_ms)
        guard_commits()
        if s.rank_threads > 0:
            import faiss

            faiss.omp_set_num_threads(s.rank_threads)
        Path(s.data_dir, "faust").mkdir(parents=True, exist_ok=True)
        self.worker_id = f"{s.hostname()}-{os.getpid()}"
        self.snapshots = Snapshots(s)
        self.engine = engine or build_engine(s)
        sharing = self.engine.share(self.worker_id, s.share_ranker) if s.share_state else None
        learned = "snapshot" if self.snapshots.load_learned(self.engine) else "nothing"
        if learned == "nothing" and sharing is not None:  # a new host
            restored = start_from_checkpoint(s, self.snapshots, self.engine)
            learned = "checkpoint" if restored else learned
        #: What the worker waits for before it applies an event (`worker/readiness.py`).
        self.readiness = Readiness(learned=learned, sharing=sharing is not None)
        #: The ranker's inputs since the snapshot (`worker/ranker_journal.py`): exact only
        #: with the ledger of shared learning, which says which of them are in the state.
        rec = self.engine.recommender
        self.journal = (
            RankerJournal(Path(s.data_dir) / f"{s.app_id}-ranker.journal")
            if sharing is not None and (rec.ranker is not None or rec.tuner is not None)
            else None
        )
        #: The per-user inputs recorded since the last batch's journal frame (the
        #: ranker's and the tuner's, in the order they came).
        self._inputs: list[Any] = []
        if self.journal is not None and sharing is not None and sharing.ranker is not None:
            # Before shared.state is folded: what earlier runs of this worker published of
            # their ranker is replayed from the journal instead.
            sharing.ranker.absorb(self.journal.writers(self.snapshots.journal_gen))
        # The follower writes its offsets into the dict the snapshot reads.
        self.shared = (
            SharedStateFollower(s, sharing, self.snapshots.shared_offsets) if sharing else None
        )
        self.outbox = Outbox(s)
        self.checkpoints = CheckpointWriter(
            self.worker_id, self.outbox.checkpoint, lambda: read_topic(s)
        )
        offsets = self.snapshots.load_vectors(self.engine)
        self.t_events = s.topic(STOREFRONT_EVENTS)
        self.scorer = (
            ScorerClient(s, self.worker_id, on_late=self.engine.add_query_vectors)
            if s.scorer_enabled
            else None
        )
        self.scorer_ready = False
        self.catalog = CatalogFollower(s, self.engine, self.outbox.dead_letter, offsets)
        self.readiness.catalog = self.catalog.caught_up
        self.monitoring = WorkerMonitoring(
            s, self.worker_id, self.engine, self.outbox.monitoring, self.scorer
        )
        #: Batches whose messages are still on their way to the broker.
        self._settling: set[asyncio.Future[None]] = set()
        self._ack_order = AckOrder()
        self._store_order = AckOrder()
        #: Held while a batch is processed (snapshots take it: never half a batch).
        self._batch_lock = asyncio.Lock()
        #: Set once the latest assignment's shared state is folded (or failed to be).
        self._synced = asyncio.Event()
        #: Learning logs sent and not yet acknowledged (a snapshot waits for them).
        self._learning_sent: set[asyncio.Future[Any]] = set()
        #: The metrics / readiness HTTP server, started with the worker (`start_up`).
        self._http: asyncio.Future[None] | None = None
        #: Set when the worker must stop (it cannot deliver, or the broker lost its data).
        self.exit_code = 0
        set_end_offsets(lambda tps: end_offsets(s, tps))
        self.stall = StallWatch(None, self.t_events, lambda tps: end_offsets(s, tps),
                                s.stall_warn_s)  # fmt: skip
        self.app = self.outbox.app = self._build_app()
        self.stall.app = self.app
        self.monitoring.repaired = self.store.take_repaired
        self.monitoring.sought = self.stall.take_sought
        if self.shared is not None:
            self.monitoring.shared_lag = self.shared.take_lag

    # -- app --------------------------------------------------------------------

    def _build_app(self) -> faust.App:
        s = self.settings
        partitions = partitions_for(STOREFRONT_EVENTS, s.partitions)
        app = faust_app(s, s.app_id)
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
            # Per partition's RocksDB: Faust's defaults (64 MB x 3 write buffers, a 2 GB
            # block cache) let one worker grow to gigabytes; profiles are small.
            options={
                "write_buffer_size": s.store_write_buffer_mb * MiB,
                "max_write_buffer_number": 2,
                "block_cache_size": s.store_block_cache_mb * MiB,
            },
        )
        self.store = TableProfileStore(self.profiles, s.profile_cache_size)
        self.changelog_topic = self.profiles.changelog_topic.get_topic_name()

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            self.store.clear_cache()

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
            self.readiness.assigning()
            self._synced.clear()
            in_sync = True
            if self.shared is not None:
                # Fold what the previous owners published before any of their events come
                # again. Faust's table recovery may resume the streams while this runs,
                # so batches wait for it too (`_synced`).
                try:
                    in_sync = await self.shared.sync()
                except Exception as exc:
                    log.warning("shared state not synced at assignment (%r); the first "
                                "batch will", exc)  # fmt: skip
                    in_sync = False
                self.shared.need_sync = not in_sync
            self._open_journal()
            self._synced.set()
            self.stall.assigned()
            # After a rebalance another worker may have written checkpoints: its next one
            # reads which slot is free instead of trusting its own last one.
            self.checkpoints.slot = None
            # The owner of events partition p dead-letters catalog partition p's bad records.
            owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == self.t_events}
            self.catalog.set_owned(owned)
            self.readiness.assigned(sorted(owned), in_sync)

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
        app.task(self.catalog.run)
        if self.shared is not None:
            app.task(self.shared.run)
        app.task(self.start_scorer_client)
        app.timer(s.metrics_interval_s)(self.monitoring.publish_window)
        if s.stall_warn_s > 0:
            app.timer(s.stall_warn_s / 3)(self.stall.check)
        app.timer(s.snapshot_interval_s)(self.save_snapshot)
        if self.shared is not None and s.share_checkpoint_interval_s > 0:
            app.timer(s.share_checkpoint_interval_s)(self.publish_checkpoint)
        return app

    async def handle_batch(
        self, batch: Sequence[Any], ack: Callable[[Sequence[Any]], Awaitable[None]]
    ) -> None:
        """Process one micro-batch and hand everything it produced to the producer.

        Nothing waits for the broker here: the batch settles in the background
        (`_settle`): its profiles are stored once its learning log is delivered,
        then its events are acked and its counts added.
        """
        if self.exit_code:
            return  # stopping: nothing more is processed, nothing more acked
        async with self._batch_lock:  # a snapshot never sees half a batch
            delivery = await self._process(batch, ack)
        if delivery is None:
            return
        task = asyncio.ensure_future(
            self._settle(delivery, ack, self._ack_order.take(), self._store_order.take())
        )
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _process(
        self, batch: Sequence[Any], ack: Callable[[Sequence[Any]], Awaitable[None]]
    ) -> BatchDelivery | None:
        await self._synced.wait()  # the assignment's shared state is folded first
        if self.shared is not None and self.shared.need_sync:
            self.shared.need_sync = False
            if await self.shared.sync():
                self.readiness.synced()
        self.stall.saw(batch)
        fresh = await self._fresh(batch, ack)
        if not fresh:
            return None  # the broker lost its data (stopping), or all of it was delivered before
        batch = fresh
        if self.settings.log_batches:
            log.info("%s", batch_log.describe(batch_log.ranges_of(batch)))
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
        self.store.begin_batch(batch)
        can_embed = self.scorer is not None and self.scorer_ready
        plan = batch_plan(self.engine, msgs, self.store, now_ms, can_embed=can_embed)
        answer: Any = None
        try:
            while True:  # the same steps as in process (`run_plan`), with Kafka and asyncio
                effect = plan.send(answer)
                answer = None
                if isinstance(effect, Publish):
                    await self._publish(effect.out, delivery)
                elif isinstance(effect, Embed):
                    assert self.scorer is not None  # can_embed
                    answer = asyncio.ensure_future(self.scorer.embed(effect.texts, effect.version))
                else:
                    answer = await effect.handle
        except StopIteration:
            pass
        delivery.writes = self.store.take_pending()
        return delivery

    async def _fresh(
        self, batch: Sequence[Any], ack: Callable[[Sequence[Any]], Awaitable[None]]
    ) -> list[Any] | None:
        """The events of `batch` to process; None when the broker lost its data.

        Faust only delivers from the committed offset on, with one exception: a
        run it delivers twice around a rebalance (`faust_tuning`, point 6). An
        event below the committed offset is then already answered and its list
        delivered, so it is skipped. Below the committed offset of a partition
        that now ends before it, the broker lost its data: profiles remember the
        offsets they applied, so carrying on would skip new events as replays.
        """
        fresh, again, lost = sort_delivered(self.app, batch)
        if lost is not None:
            self.fatal(broker_lost_data(lost, self.settings))
            return None
        if again:
            log.info("skipped %d events delivered again below the committed offset", len(again))
            await ack(again)  # a no-op for the commit (below it), but Faust stops tracking them
        return fresh

    async def _publish(self, out: BatchOutput, delivery: BatchDelivery) -> None:
        """Hand one output's messages to the producer; `delivery` tracks them (its
        profiles are stored later, by `_settle`)."""
        now = now_ms()
        for key, value, i in self.engine.encode(out, now):
            try:
                fut = await self.outbox.send(self.outbox.t_recs, key, value)
            except ProducerSendError as exc:
                if not is_message_error(exc):
                    raise
                self.engine.unpublish(out, i, "publish_error", str(exc), now)  # its events only
                continue
            delivery.add(fut, out, i)
        for user in out.tombstones:  # erased users: their latest list goes too
            delivery.add(await self.outbox.send(self.outbox.t_recs, user.encode(), None))
        for dead_key, dead in out.dead_letters:
            delivery.add(await self.outbox.dead_letter(dead_key, dead))
        if out.deltas and self.journal is not None:  # its inputs on disk before its log goes
            ranges = [r for d in out.deltas if isinstance(d, ItemLog) for r in d.ranges]
            self.journal.append(self.worker_id, ranges, self._inputs)
            self._inputs.clear()
        for delta in out.deltas:  # before the batch's profiles are stored, or acked
            fut = await self.outbox.send(self.outbox.t_shared, delta.key, delta.to_bytes())
            delivery.add(fut)
            delivery.learning.append(fut)
            self._learning_sent.add(fut)
            fut.add_done_callback(self._learning_sent.discard)
        delivery.outputs.append(out)
        for detection in out.drift:
            await self.monitoring.publish_detection(detection)

    async def _settle(
        self,
        delivery: BatchDelivery,
        ack: Callable[[Sequence[Any]], Awaitable[None]],
        turn: tuple[asyncio.Future[None] | None, asyncio.Future[None]],
        store_turn: tuple[asyncio.Future[None] | None, asyncio.Future[None]],
    ) -> None:
        """Once the broker has the batch's learning log: store its profiles (in batch
        order); once it has every message of the batch and the batches before it are
        acked: ack its events, count it. A batch that cannot be delivered is not acked,
        and neither is any batch after it."""
        previous, mine = turn
        try:
            await self._store_profiles(delivery, store_turn)
            delivered = await self._delivered(delivery)
            await AckOrder.wait(previous)
            if delivered and not self.exit_code:
                if any(out.erasures for out in delivery.outputs):
                    # Before the forget event can be committed past: a restart from an
                    # older snapshot would bring back what it holds of the user (their
                    # pending offers, last list).
                    await self.save_snapshot()
                await ack(delivery.events)
                for out in delivery.outputs:
                    self.engine.count(out.counters)
                    for record in out.erasures:  # done and delivered: now it is on record
                        await self.outbox.audit(replace(record, by=self.worker_id))
        finally:
            mine.set_result(None)

    async def _store_profiles(
        self,
        delivery: BatchDelivery,
        turn: tuple[asyncio.Future[None] | None, asyncio.Future[None]],
    ) -> None:
        """The batch's profiles into the local store and the changelog, only once its
        learning log is on the broker: a crash then never leaves a profile that has an
        event whose learning is lost. In batch order, so a user's newer profile is
        never overtaken by an older one."""
        previous, mine = turn
        try:
            learned = await asyncio.gather(*delivery.learning, return_exceptions=True)
            await AckOrder.wait(previous)
            if self.exit_code or any(isinstance(r, BaseException) for r in learned):
                return  # not stored: the events are not acked either, and come again
            for key, value, partition in self.store.store(delivery.writes):
                delivery.add(
                    await self.outbox.send(
                        self.changelog_topic, key, value, partition, self._on_changelog_sent
                    )
                )
        finally:
            mine.set_result(None)

    async def _delivered(self, delivery: BatchDelivery) -> bool:
        """Wait for the batch's messages; dead-letter lists the broker refused. False: fatal."""
        late = BatchDelivery(())
        for sent, exc in await delivery.failures():
            if sent.out is None or not is_message_error(exc):
                self.fatal(f"a message could not be delivered ({exc!r}); the batch is not acked")
                return False
            # The broker refused this list for what it is: its event becomes a dead letter.
            before = len(sent.out.dead_letters)
            self.engine.unpublish(sent.out, sent.index, "publish_error", repr(exc), now_ms())
            for key, dead in sent.out.dead_letters[before:]:
                late.add(await self.outbox.dead_letter(key, dead))
        if late.sent and await late.failures():
            self.fatal("a dead letter could not be delivered; the batch is not acked")
            return False
        return True

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

    # -- side tasks -------------------------------------------------------------

    async def start_scorer_client(self) -> None:
        if self.scorer is not None:
            await self.scorer.start()
            self.scorer_ready = True

    async def start_up(self) -> None:
        """Before Faust starts (no partition is asked for yet): /readyz is served, and the
        catalog and item vectors are read back up to where they end now."""
        s = self.settings
        if s.metrics_port:
            serving = serve_until_stopped(
                self.monitoring.state, s.metrics_host, s.metrics_port, self.readiness.report
            )
            self._http = asyncio.ensure_future(serving)
        await self.catalog.catch_up()

    async def save_snapshot(self) -> None:
        """The learned state, between batches, once every learning log it includes is
        on the broker: a restart from it never holds learning the topic lacks (which
        the other workers would then never get)."""
        async with self._batch_lock:
            if await self._learning_delivered():
                self._write_snapshot()

    def _write_snapshot(self) -> None:
        """The snapshot, then a new generation of the ranker journal that continues it."""
        if self.journal is None:
            self.snapshots.write(self.engine, self.catalog.embedding_offsets)
            return
        if not self.journal.opened:  # not replayed yet: the journal on disk still continues it
            gen = self.snapshots.journal_gen
            self.snapshots.write(self.engine, self.catalog.embedding_offsets, journal_gen=gen)
            return
        gen = self.journal.gen + 1
        self.snapshots.write(self.engine, self.catalog.embedding_offsets, journal_gen=gen)
        self.journal.rotate(gen)

    def _open_journal(self) -> None:
        """Once, at the first assignment, after shared.state is folded: replay the
        ranker's inputs since the snapshot whose batches the ledger covers, and record
        from then on."""
        journal, sharing = self.journal, self.engine.sharing
        ranker, tuner = self.engine.recommender.ranker, self.engine.recommender.tuner
        if journal is None or sharing is None or journal.opened:
            return
        frames = journal.open(self.snapshots.journal_gen, sharing.ledger.covers_range)
        for _by, ops in frames:
            replay(ranker, ops, tuner)
        for part in (ranker, tuner):
            if part is not None:
                part.recording = self._inputs
        log.info("ranker journal: %d batches of inputs replayed (%d inputs)", len(frames),
                 sum(len(ops) for _by, ops in frames))  # fmt: skip

    async def _learning_delivered(self, timeout_s: float = 10.0) -> bool:
        """Wait (with the batch lock held) for every learning log sent so far; False
        if the broker has not taken them all in time: no snapshot then, the next one
        comes at the next interval."""
        if not self._learning_sent:
            return True
        _done, waiting = await asyncio.wait(set(self._learning_sent), timeout=timeout_s)
        if waiting:
            log.warning("snapshot skipped: %d learning logs not on the broker after %.0f s",
                        len(waiting), timeout_s)  # fmt: skip
        return not waiting

    async def publish_checkpoint(self) -> None:
        """The shared state whole, by one worker (the owner of events partition 0)."""
        if self.catalog.owns(0):
            try:
                async with self._batch_lock:
                    if not await self._learning_delivered():
                        return
                    blob = self.snapshots.encode(self.engine, users=False)
                await self.checkpoints.write(blob)
            except Exception as exc:  # the next interval tries again
                log.warning("shared checkpoint not published: %r", exc)

    # -- running ----------------------------------------------------------------

    def run(self) -> int:
        """Run in the foreground until SIGINT/SIGTERM; then publish and snapshot once more.

        Returns the exit status: 0 after a requested stop, non-zero when the worker
        had to stop (it could not deliver, or the broker lost its data).
        """
        # One event loop for the start-up and for Faust, which takes the current one: the
        # catalog follower's consumer and the HTTP server started here live on in it.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self.start_up())
        # Everything built so far (imports, the engine, restored state, the catalog, the
        # app) lives as long as the process: the collector need not walk it again.
        frozen = freeze_startup()
        log.info("start-up heap frozen: %d objects the cycle collector skips", frozen)
        return run_app(self.app, self.settings, lambda: self.exit_code, self._final)

    async def _final(self) -> None:  # pragma: no cover - shutdown path
        if self._http is not None:
            self._http.cancel()
        try:
            await self.monitoring.publish_window()
            await self.app.producer.flush()
            if self.scorer is not None and self.scorer_ready:
                await self.scorer.stop()
        except Exception as exc:
            log.warning("final metrics window not published: %s", exc)
        self._write_snapshot()
