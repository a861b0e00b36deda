"""The worker's Faust app: one agent does ingest + profile + recommend.

storefront.events --(take_events micro-batch)--> the engine (core)
    --> recommendations (keyed by pseudonym), events.dlq, the profile changelog

The agent hands raw bytes to the core and sends what it returns, then settles
each batch in the background: its events are acked (so Faust may commit past
them) and its counts join the metrics window only once the broker has every
message it produced (`worker.delivery`). A Faust hop costs ~300 us of CPU per
message here: there is one on the main path. Around it, as tasks and timers:
the catalog and shared-state followers (`worker.catalog`, `worker.shared`),
the scorer client, metrics/drift/alerts (`worker.monitoring`), Prometheus
`/metrics`, snapshots, the ranker journal and the shared checkpoint
(`worker.learned_state`). Sends go through `worker.outbox`; starting and
stopping is `worker.lifecycle`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

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
from streamrec.core.plan import Embed, Publish, batch_plan
from streamrec.heap import freeze_startup
from streamrec.prometheus import serve_until_stopped
from streamrec.settings import Settings
from streamrec.worker.catalog import CatalogFollower
from streamrec.worker.checkpoint import CheckpointWriter, read_topic, start_from_checkpoint
from streamrec.worker.delivery import AckOrder, BatchDelivery, is_message_error
from streamrec.worker.faust_app import faust_app, profile_table
from streamrec.worker.faust_tuning import (
    defer_acks,
    guard_commits,
    set_end_offsets,
    set_fetch_max_wait_ms,
    sort_delivered,
)
from streamrec.worker.learned_state import LearnedState
from streamrec.worker.lifecycle import broker_lost_data, run_app
from streamrec.worker.monitoring import WorkerMonitoring
from streamrec.worker.outbox import Outbox
from streamrec.worker.profile_store import TableProfileStore
from streamrec.worker.readiness import Readiness
from streamrec.worker.scorer_client import ScorerClient
from streamrec.worker.shared import SharedStateFollower
from streamrec.worker.snapshots import Snapshots
from streamrec.worker.stall import StallWatch

log = logging.getLogger(__name__)


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
        self.learned = LearnedState(s, self.engine, self.snapshots, self.worker_id,
                                    self._batch_lock, self.catalog, self.checkpoints)  # fmt: skip
        #: Set once the latest assignment's shared state is folded (or failed to be).
        self._synced = asyncio.Event()
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
        self.profiles = profile_table(app, s, partitions)
        self.store = TableProfileStore(self.profiles, s.profile_cache_size)
        self.changelog_topic = self.profiles.changelog_topic.get_topic_name()

        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
            self.store.clear_cache()

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
            self.readiness.assigning()
            self._synced.clear()
            # Fold what the previous owners published before any of their events come
            # again. Faust's table recovery may resume the streams while this runs, so
            # batches wait for it too (`_synced`).
            in_sync = await self.shared.sync_assigned() if self.shared is not None else True
            self.learned.open_journal()
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
        app.timer(s.snapshot_interval_s)(self.learned.save_snapshot)
        if self.shared is not None and s.share_checkpoint_interval_s > 0:
            app.timer(s.share_checkpoint_interval_s)(self.learned.publish_checkpoint)
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
        self.learned.before_log(out.deltas)  # its inputs on disk before its log goes
        for delta in out.deltas:  # before the batch's profiles are stored, or acked
            fut = await self.outbox.send(self.outbox.t_shared, delta.key, delta.to_bytes())
            delivery.add(fut)
            delivery.learning.append(fut)
            self.learned.log_sent(fut)
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
                    await self.learned.save_snapshot()
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
                        self.changelog_topic, key, value, partition, self.store.persisted
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
        self.learned.write_snapshot()
