"""Learned item state shared by every worker: each one's learning records, folded by all.

With N workers in one consumer group, each learns from 1/N of the shop.
Trending, popularity by category, co-visitation, the factors, the regression
and the value model are *item* statistics with no user in them, so they can
be shared: each worker publishes, per micro-batch, an `ItemLog` of the
learning records its events made (`core/item_log.py`), and every worker folds
in everyone's logs (`fold`) by learning each record with the same function
the publisher learned it with. All workers then converge on the statistics
one worker would have learned from the whole shop, and a worker that
refolds its own records after a restart gets back exactly what it had.

**Exactly once, by source offsets.** A log names the source partitions and
offsets it covers (the ledger's side: `core/deltas.py`). A `Ledger` keeps,
per source partition, the offsets whose item learning this state holds (its
own and folded), so:

* a record whose offset the ledger holds (a redelivery, the worker's own
  coming back, a partition two owners learned during a rebalance) is skipped,
  record by record;
* an event whose offset is in the ledger teaches its items nothing again: a
  worker that takes over a partition after a rebalance or a crash does not
  count what the previous owner published, and a restarted worker refolds its
  own logs published after its snapshot instead of losing them.

Per-user state (profiles) stays in the co-partitioned profile table; the
online ranker is shared by its own records (`core/ranker_sharing.py`).
Logs of the first format (summed deltas, `ItemDelta`), written by older
workers, are still folded.

>>> from streamrec.core.ranking.recommender import Recommender
>>> a, b = Recommender(), Recommender()
>>> share_a, share_b = Sharing(a, "w1"), Sharing(b, "w2")
>>> row = a.items.row("42")
>>> share_a.learn(0, 7, row, "view", 1_000, [])
>>> (published,) = share_a.take()  # published by w1 ...
>>> published.items
('42',)
>>> share_b.fold(decode(published.to_bytes()))  # ... folded by w2
'applied'
>>> round(b.trending.score(b.items.row("42")), 3), share_b.ledger.covers(0, 7)
(1.0, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from streamrec.core.deltas import ItemDelta, Ledger, decode, fold_summed
from streamrec.core.item_log import ItemLog, LogBuilder, ValueExample, learn
from streamrec.core.ranker_sharing import DELTA_VERSION, RankerDelta, RankerSharing
from streamrec.core.ranking.recommender import Recommender
from streamrec.errors import DeltaError

__all__ = ["DELTA_VERSION", "DeltaError", "ItemDelta", "ItemLog", "Ledger", "RankerDelta",
           "Sharing", "decode"]  # fmt: skip


class Sharing:
    """One worker's side of the shared item state: what it learns, and what it folds in."""

    def __init__(self, rec: Recommender, by: str, ranker: str = "sum") -> None:
        self.rec = rec
        self.by = by
        #: The online ranker's share (`core/ranker_sharing.py`); None without a ranker.
        self.ranker = (
            RankerSharing(rec.ranker, by, ranker)
            if rec.ranker is not None and ranker != "off"
            else None
        )
        self.ledger = Ledger()
        self._log = LogBuilder()
        #: Records published, folded, skipped as known, folded in part (some of their
        #: events known), refused.
        self.counts = {"published": 0, "folded": 0, "known": 0, "overlap": 0, "bad": 0}
        self._reported = dict(self.counts)

    def state(self) -> dict[str, Any]:
        """What a snapshot of the learned state keeps of its sharing (a JSON header)."""
        return {
            "ledger": self.ledger.state(),
            "ranker": self.ranker.state() if self.ranker is not None else None,
        }

    def restore(self, state: dict[str, Any] | None) -> None:
        """After the learned state was restored from a snapshot that kept `state`
        (None: a snapshot without sharing, which holds no source offsets)."""
        self.ledger = Ledger.from_state(state["ledger"]) if state else Ledger()
        if self.ranker is not None:  # restored parameters are not this worker's to publish
            self.ranker.restore(state.get("ranker") if state else None)
        self._log = LogBuilder()

    def take_window(self) -> dict[str, int]:
        """The counts since the last call (a metrics window's `shared_*` counts)."""
        out = {k: v - self._reported[k] for k, v in self.counts.items()}
        self._reported = dict(self.counts)
        return out

    # -- learning ---------------------------------------------------------------

    def knows(self, partition: int, offset: int) -> bool:
        """True if the items of the event at (partition, offset) are learned already."""
        return self.ledger.covers(partition, offset)

    def learn(
        self,
        partition: int,
        offset: int,
        row: int | None,
        event_type: str,
        ts: int,
        session_rows: Sequence[int],
        value_example: ValueExample | None = None,
        recent_rows: Sequence[int] = (),
        evidence: np.ndarray | None = None,
    ) -> None:
        """Learn one event's items, value example and tuner evidence here, and keep its
        record for the batch's log (`take`)."""
        self._log.learn(self.rec, partition, offset, row, event_type, ts, session_rows,
                        recent_rows, value_example, evidence)  # fmt: skip

    def take(self) -> list[ItemLog | RankerDelta]:
        """The batch's log (its offsets now in the ledger), and what the ranker learned
        since the last call (if it did)."""
        out: list[ItemLog | RankerDelta] = []
        if self._log:
            log = self._log.take(self.by, self.rec.items.ids)
            for p, first, last in log.ranges:
                self.ledger.add(p, first, last)
            out.append(log)
        if self.ranker is not None and (model := self.ranker.take()) is not None:
            out.append(model)
        self.counts["published"] += len(out)
        return out

    # -- folding ----------------------------------------------------------------

    def fold(self, record: ItemLog | ItemDelta | RankerDelta) -> str:
        """Fold another worker's record in: 'applied', 'overlap' (applied but for events
        the ledger held), or skipped as 'known'."""
        if isinstance(record, RankerDelta):
            kind = self.ranker.fold(record) if self.ranker is not None else "known"
            self.counts["folded" if kind == "applied" else "known"] += 1
            return kind
        if isinstance(record, ItemDelta):
            return self._fold_summed(record)
        ledger = self.ledger
        if all(ledger.covers_range(p, a, b) for p, a, b in record.ranges):
            self.counts["known"] += 1
            return "known"
        skipped = 0
        parts, offsets = record.part.tolist(), record.offset.tolist()
        for i, row, etype, ts, session, recent, value, found in record.records(self.rec.items):
            if ledger.covers(parts[i], offsets[i]):
                skipped += 1
                continue
            learn(self.rec, row, etype, ts, session, recent, value, found)
        for p, first, last in record.ranges:
            ledger.add(p, first, last)
        kind = "overlap" if skipped else "applied"
        self.counts["folded" if kind == "applied" else kind] += 1
        return kind

    def _fold_summed(self, delta: ItemDelta) -> str:
        """A delta of the first format: its sums, all or nothing (`deltas.fold_summed`)."""
        p = delta.partition
        if self.ledger.overlaps(p, delta.first, delta.last):
            whole = all(self.ledger.covers(p, o) for o in (delta.first, delta.last))
            kind = "known" if whole else "overlap"
            self.counts[kind] += 1
            return kind
        fold_summed(self.rec, delta)
        self.ledger.add(p, delta.first, delta.last)
        self.counts["folded"] += 1
        return "applied"
