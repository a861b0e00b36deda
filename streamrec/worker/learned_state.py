"""The worker's learned state kept beyond the process: its snapshots, the ranker journal
that continues the latest one, and the shared checkpoint (a part of `Worker`).

A snapshot is written between batches, and only once every learning log it
includes is on the broker: a restart from it never holds learning the topic
lacks, which the other workers would then never get. The journal records the
per-user inputs of the ranker and the tuner batch by batch, each frame on disk
before its batch's learning log goes out, so a restart from the snapshot
replays exactly the inputs its ledger does not hold yet.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from streamrec.core.engine import Engine
from streamrec.core.item_log import ItemLog
from streamrec.core.ranking.feedback import replay
from streamrec.core.sharing import RankerDelta
from streamrec.settings import Settings
from streamrec.worker.catalog import CatalogFollower
from streamrec.worker.checkpoint import CheckpointWriter
from streamrec.worker.ranker_journal import RankerJournal
from streamrec.worker.snapshots import Snapshots

log = logging.getLogger(__name__)


class LearnedState:
    """Snapshots, the ranker journal and the shared checkpoint of one worker's engine."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        snapshots: Snapshots,
        worker_id: str,
        batch_lock: asyncio.Lock,
        catalog: CatalogFollower,
        checkpoints: CheckpointWriter,
    ) -> None:
        self.engine = engine
        self.snapshots = snapshots
        self.worker_id = worker_id
        #: Its embedding offsets go into the snapshot; the owner of its partition 0
        #: writes the checkpoint.
        self.catalog = catalog
        self.checkpoints = checkpoints
        #: Held while a batch is processed: a snapshot never sees half a batch.
        self.batch_lock = batch_lock
        sharing = engine.sharing
        rec = engine.recommender
        #: The ranker's inputs since the snapshot (`worker/ranker_journal.py`): exact only
        #: with the ledger of shared learning, which says which of them are in the state.
        self.journal = (
            RankerJournal(Path(settings.data_dir) / f"{settings.app_id}-ranker.journal")
            if sharing is not None and (rec.ranker is not None or rec.tuner is not None)
            else None
        )
        #: The per-user inputs recorded since the last batch's journal frame (the
        #: ranker's and the tuner's, in the order they came).
        self.inputs: list[Any] = []
        if self.journal is not None and sharing is not None and sharing.ranker is not None:
            # Before shared.state is folded: what earlier runs of this worker published of
            # their ranker is replayed from the journal instead.
            sharing.ranker.absorb(self.journal.writers(snapshots.journal_gen))
        #: Learning logs sent and not yet acknowledged (a snapshot waits for them).
        self.learning_sent: set[asyncio.Future[Any]] = set()

    def before_log(self, deltas: list[ItemLog | RankerDelta]) -> None:
        """A batch's learning log is about to be sent: its inputs go to the journal first."""
        if deltas and self.journal is not None:
            ranges = [r for d in deltas if isinstance(d, ItemLog) for r in d.ranges]
            self.journal.append(self.worker_id, ranges, self.inputs)
            self.inputs.clear()

    def log_sent(self, fut: asyncio.Future[Any]) -> None:
        """A learning log handed to the producer: snapshots wait until the broker has it."""
        self.learning_sent.add(fut)
        fut.add_done_callback(self.learning_sent.discard)

    async def save_snapshot(self) -> None:
        """The learned state, between batches, once every learning log it includes is
        on the broker."""
        async with self.batch_lock:
            if await self.learning_delivered():
                self.write_snapshot()

    def write_snapshot(self) -> None:
        """The snapshot, then a new generation of the ranker journal that continues it."""
        offsets = self.catalog.embedding_offsets
        if self.journal is None:
            self.snapshots.write(self.engine, offsets)
            return
        if not self.journal.opened:  # not replayed yet: the journal on disk still continues it
            gen = self.snapshots.journal_gen
            self.snapshots.write(self.engine, offsets, journal_gen=gen)
            return
        gen = self.journal.gen + 1
        self.snapshots.write(self.engine, offsets, journal_gen=gen)
        self.journal.rotate(gen)

    def open_journal(self) -> None:
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
                part.recording = self.inputs
        log.info("ranker journal: %d batches of inputs replayed (%d inputs)", len(frames),
                 sum(len(ops) for _by, ops in frames))  # fmt: skip

    async def learning_delivered(self, timeout_s: float = 10.0) -> bool:
        """Wait (with the batch lock held) for every learning log sent so far; False
        if the broker has not taken them all in time: no snapshot then, the next one
        comes at the next interval."""
        if not self.learning_sent:
            return True
        _done, waiting = await asyncio.wait(set(self.learning_sent), timeout=timeout_s)
        if waiting:
            log.warning("snapshot skipped: %d learning logs not on the broker after %.0f s",
                        len(waiting), timeout_s)  # fmt: skip
        return not waiting

    async def publish_checkpoint(self) -> None:
        """The shared state whole, by one worker (the owner of events partition 0)."""
        if not self.catalog.owns(0):
            return
        try:
            async with self.batch_lock:
                if not await self.learning_delivered():
                    return
                blob = self.snapshots.encode(self.engine, users=False)
            await self.checkpoints.write(blob)
        except Exception as exc:  # the next interval tries again
            log.warning("shared checkpoint not published: %r", exc)
