"""The shared-state follower: every worker folds every worker's item deltas in.

A plain aiokafka consumer (no Faust hop, no group) reads every partition of
`shared.state` from where the worker's snapshot left off (or from the start)
and folds each delta into the engine between batches (`core/sharing.py`); the
worker's own deltas come back too and are skipped by the ledger. The deltas
are published by the worker itself, with each batch's lists: a batch's events
are acked only once its delta is delivered, so learning that a commit covers
is always on the topic.

After every partition assignment (start, rebalance) the worker first folds in
everything published so far (`sync`, awaited in the assignment callback,
before Faust starts the streams): the partitions it takes over may have been
learned by their previous owner up to later offsets than it committed, and
the ledger must say so before those events come again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamrec import clients
from streamrec.aio import end_offsets, wait_partitions
from streamrec.contracts import SHARED_STATE
from streamrec.core.monitoring.histogram import LogHistogram
from streamrec.core.sharing import DeltaError, Sharing, decode
from streamrec.settings import Settings

log = logging.getLogger(__name__)


class SharedStateFollower:
    """Folds `shared.state` into `sharing` for as long as it runs."""

    def __init__(self, settings: Settings, sharing: Sharing, offsets: dict[int, int]) -> None:
        self.settings = settings
        self.sharing = sharing
        self.topic = settings.topic(SHARED_STATE)
        #: shared.state partition -> next offset not folded (kept in the snapshot).
        self.offsets = offsets
        self._tps: list[TopicPartition] = []
        self._progress = asyncio.Event()
        #: Set when a sync at assignment failed: the next batch syncs first.
        self.need_sync = False
        #: Publish -> fold delay of other workers' deltas, since the last metrics window.
        self.lag = LogHistogram()

    async def run(self) -> None:
        s = self.settings
        consumer = clients.aio_consumer(
            s, enable_auto_commit=False, fetch_max_wait_ms=s.fetch_max_wait_ms
        )
        await consumer.start()
        try:
            parts = await wait_partitions(consumer, self.topic)
            self._tps = [TopicPartition(self.topic, p) for p in parts]
            consumer.assign(self._tps)
            await self._seek(consumer)
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
                now = time.time() * 1000
                for tp, records in batches.items():
                    for r in records:
                        if self._fold(r.value, tp.partition, r.offset) == "applied":
                            self.lag.record(max(0.0, now - r.timestamp))
                        self.offsets[tp.partition] = r.offset + 1
                self._progress.set()
        finally:
            await consumer.stop()

    def take_lag(self) -> dict[str, Any]:
        """The lag histogram of the window that ends now (a metrics window's field)."""
        lag, self.lag = self.lag, LogHistogram()
        return lag.to_dict() if lag.count else {}

    def _fold(self, value: bytes | None, partition: int, offset: int) -> str:
        try:
            if value is None:
                raise DeltaError("empty record")
            return self.sharing.fold(decode(value))
        except DeltaError as exc:  # an internal topic: logged and counted, never fatal
            self.sharing.counts["bad"] += 1
            log.error("skipped %s[%d]@%d: %s", self.topic, partition, offset, exc)
            return "bad"

    async def _seek(self, consumer: AIOKafkaConsumer) -> None:
        """From the snapshot's offsets if they fit the topic, else from the start."""
        saved = self.offsets
        ends = await end_offsets(self.settings, self._tps)
        fits = set(saved) == {tp.partition for tp in self._tps}
        fits = fits and all(saved[tp.partition] <= ends[tp] for tp in self._tps)
        if not fits:
            if saved:
                log.warning("shared-state offsets of the snapshot do not fit %s; from the start",
                            self.topic)  # fmt: skip
            saved.clear()
            await consumer.seek_to_beginning(*self._tps)
            for tp in self._tps:  # a partition emptied by retention starts past 0
                saved[tp.partition] = await consumer.position(tp)
            return
        for tp in self._tps:
            consumer.seek(tp, saved[tp.partition])

    async def sync_assigned(self) -> bool:
        """`sync` at an assignment; a failure leaves it to the first batch (`need_sync`)."""
        try:
            in_sync = await self.sync()
        except Exception as exc:
            log.warning("shared state not synced at assignment (%r); the first batch will", exc)
            in_sync = False
        self.need_sync = not in_sync
        return in_sync

    async def sync(self) -> bool:
        """Wait until every delta published before now is folded in (bounded); True once
        it is, False if it was not within STREAMREC_SHARE_SYNC_TIMEOUT_S."""
        s = self.settings
        deadline = time.monotonic() + s.share_sync_timeout_s
        while not self._tps:  # the follower has not found the topic yet
            if time.monotonic() > deadline:
                log.warning("%s not found within %.0f s; processing goes on without it",
                            self.topic, s.share_sync_timeout_s)  # fmt: skip
                return False
            await asyncio.sleep(0.05)
        ends = await end_offsets(s, self._tps)
        behind = self._behind(ends)
        while behind:
            self._progress.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "shared state still %d deltas behind after %.0f s; processing goes on "
                    "(events whose deltas come later may be learned twice)",
                    behind, s.share_sync_timeout_s,
                )  # fmt: skip
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), timeout=left)
            behind = self._behind(ends)
        log.info("shared state in sync: %s", self.sharing.counts)
        return True

    def _behind(self, ends: dict[TopicPartition, int]) -> int:
        return sum(max(0, end - self.offsets.get(tp.partition, 0)) for tp, end in ends.items())
