"""Learned item state shared by every worker: deltas of what each one learned, folded by all.

With N workers in one consumer group, each learns from 1/N of the shop.
Trending, popularity by category and co-visitation are *item* statistics
with no user in them, so they can be shared: each worker publishes, per
micro-batch and source partition, an `ItemDelta` of what it learned (trending
sums at one reference time, co-visitation pair weights), and every worker
folds in everyone's deltas (`fold`). All workers then converge on the
statistics one worker would have learned from the whole shop.

**Exactly once, by source offsets.** A delta (its wire format and the ledger:
`core/deltas.py`) names the source partition and the offsets it covers. A
`Ledger` keeps, per source partition, the offsets
whose item learning this state holds (its own and folded), so:

* a delta already in the ledger (a redelivery, or the worker's own coming
  back) is skipped, whatever order deltas arrive in: folding is commutative
  (sums) and idempotent (the ledger);
* an event whose offset is in the ledger teaches its items nothing again: a
  worker that takes over a partition after a rebalance or a crash does not
  count what the previous owner published, and a restarted worker refolds its
  own deltas published after its snapshot instead of losing them.

The value model's examples ride along: a purchase's (features, log order
value), computed by the worker that holds the buyer's profile, is learned by
every worker once (the same ledger). Per-user state (profiles) stays in the
co-partitioned profile table; the online ranker is shared by its own records
(`core/ranker_sharing.py`).

>>> from streamrec.core.ranking.recommender import Recommender
>>> a, b = Recommender(), Recommender()
>>> share_a, share_b = Sharing(a, "w1"), Sharing(b, "w2")
>>> row = a.items.row("42")
>>> share_a.learn(0, 7, row, "view", 1_000, [])
>>> [d.items for d in share_a.take()]  # published by w1 ...
[('42',)]
>>> share_b.fold(decode(share_a.last[0].to_bytes()))  # ... folded by w2
'applied'
>>> round(b.trending.score(b.items.row("42")), 3), share_b.ledger.covers(0, 7)
(1.0, True)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamrec.core.deltas import ItemDelta, Ledger, decode
from streamrec.core.ranker_sharing import DELTA_VERSION, RankerDelta, RankerSharing
from streamrec.core.ranking.recommender import Recommender
from streamrec.core.ranking.value import FEATURES as VALUE_FEATURES
from streamrec.errors import DeltaError

__all__ = ["DELTA_VERSION", "DeltaError", "ItemDelta", "Ledger", "RankerDelta", "Sharing", "decode"]


@dataclass
class _Pending:
    """One source partition's learning since the last `take`."""

    first: int
    last: int
    ref_ts: int = -1
    now_ts: int = 0
    adds: int = 0
    trend: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    trend_long: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    pairs: defaultdict[tuple[int, int], float] = field(default_factory=lambda: defaultdict(float))
    #: The regression's counts (`(row, row)`: its diagonal).
    gram: defaultdict[tuple[int, int], float] = field(default_factory=lambda: defaultdict(float))
    value_x: list[list[float]] = field(default_factory=list)
    value_y: list[float] = field(default_factory=list)


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
        self._pending: dict[int, _Pending] = {}
        #: The deltas of the latest `take` (tests and the doctest read them).
        self.last: list[ItemDelta | RankerDelta] = []
        #: Deltas published, folded, skipped as known, skipped as overlapping, refused.
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
        self._pending.clear()

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
        value_example: tuple[list[float], float] | None = None,
        recent_rows: Sequence[int] = (),
    ) -> None:
        """Learn one event's items locally, and keep it for the next delta (with the
        value model's example, which the caller learned from the buyer's profile)."""
        pend = self._pending.get(partition)
        if pend is None:
            pend = self._pending[partition] = _Pending(offset, offset)
        pend.first, pend.last = min(pend.first, offset), max(pend.last, offset)
        if value_example is not None:
            pend.value_x.append(value_example[0])
            pend.value_y.append(value_example[1])
        if row is None:
            return
        rec = self.rec
        weight = rec.learn_item(row, event_type, ts, session_rows, recent_rows)
        if weight <= 0:
            return
        if pend.ref_ts < 0:
            pend.ref_ts = ts
        elif (ts - pend.ref_ts) / rec.trending.half_life_ms > 400:
            self._rebase(pend, ts)  # a batch spanning years of event time: no float overflow
        pend.now_ts = max(pend.now_ts, ts)
        pend.adds += 1
        age = ts - pend.ref_ts
        pend.trend[row] += weight * 2.0 ** (age / rec.trending.half_life_ms)
        pend.trend_long[row] += weight * 2.0 ** (age / rec.trending_long.half_life_ms)
        for other, w in rec.covisit.pairs(row, session_rows, weight):
            pend.pairs[(row, other)] += w
        for other in rec.regression.pairs(row, recent_rows):
            pend.gram[(row, other)] += 1.0

    def _rebase(self, pend: _Pending, ts: int) -> None:
        """Move a pending delta's reference time to `ts` (its sums scaled to match)."""
        for sums, trending in ((pend.trend, self.rec.trending),
                               (pend.trend_long, self.rec.trending_long)):  # fmt: skip
            factor = 2.0 ** (-(ts - pend.ref_ts) / trending.half_life_ms)
            for row in sums:
                sums[row] *= factor
        pend.ref_ts = ts

    def take(self) -> list[ItemDelta | RankerDelta]:
        """The deltas learned since the last call, one per source partition (now in the
        ledger), and what the ranker learned since (if it did)."""
        ids = self.rec.items.ids
        out: list[ItemDelta | RankerDelta] = []
        for p, pend in sorted(self._pending.items()):
            self.ledger.add(p, pend.first, pend.last)
            rows = sorted(set(pend.trend) | {r for pair in pend.pairs for r in pair}
                          | {r for pair in pend.gram for r in pair})  # fmt: skip
            index = {r: i for i, r in enumerate(rows)}
            pairs = list(pend.pairs.items())
            gram = list(pend.gram.items())
            out.append(ItemDelta(
                partition=p, first=pend.first, last=pend.last, by=self.by,
                ref_ts=max(pend.ref_ts, 0), now_ts=pend.now_ts, adds=pend.adds,
                items=tuple(ids[r] for r in rows),
                trend=np.array([pend.trend.get(r, 0.0) for r in rows]),
                trend_long=np.array([pend.trend_long.get(r, 0.0) for r in rows]),
                pair_later=np.array([index[a] for (a, _b), _w in pairs], dtype=np.int32),
                pair_earlier=np.array([index[b] for (_a, b), _w in pairs], dtype=np.int32),
                pair_w=np.array([w for _k, w in pairs], dtype=np.float64),
                gram_a=np.array([index[a] for (a, _b), _w in gram], dtype=np.int32),
                gram_b=np.array([index[b] for (_a, b), _w in gram], dtype=np.int32),
                gram_w=np.array([w for _k, w in gram], dtype=np.float64),
                value_x=np.array(pend.value_x, dtype=np.float64).reshape(
                    len(pend.value_y), len(VALUE_FEATURES)),
                value_y=np.array(pend.value_y, dtype=np.float64),
            ))  # fmt: skip
        self._pending.clear()
        if self.ranker is not None and (model := self.ranker.take()) is not None:
            out.append(model)
        self.counts["published"] += len(out)
        self.last = out
        return out

    # -- folding ----------------------------------------------------------------

    def fold(self, delta: ItemDelta | RankerDelta) -> str:
        """Fold another worker's delta in: 'applied', or skipped as 'known' / 'overlap'.

        A delta whose offsets the ledger holds in part ('overlap') can only come
        from two owners of one partition at once (a rebalance while a delta was in
        flight); it is skipped and counted, never applied in half.
        """
        if isinstance(delta, RankerDelta):
            kind = self.ranker.fold(delta) if self.ranker is not None else "known"
            self.counts["folded" if kind == "applied" else "known"] += 1
            return kind
        p = delta.partition
        if self.ledger.overlaps(p, delta.first, delta.last):
            whole = all(self.ledger.covers(p, o) for o in (delta.first, delta.last))
            kind = "known" if whole else "overlap"
            self.counts[kind] += 1
            return kind
        rec = self.rec
        if delta.adds:
            rows = rec.items.rows(list(delta.items))
            nz = delta.trend != 0
            rec.trending.merge(rows[nz], delta.trend[nz], delta.ref_ts, delta.now_ts, delta.adds)
            rec.trending_long.merge(
                rows[nz], delta.trend_long[nz], delta.ref_ts, delta.now_ts, delta.adds
            )
            graphs = [rec.covisit, rec.transitions] if rec.sequence_anchors else [rec.covisit]
            later, earlier = rows[delta.pair_later], rows[delta.pair_earlier]
            for graph in graphs:
                graph.add_pairs(later, earlier, delta.pair_w.astype(np.float64, copy=False))
            # The other worker's events count towards the factors' refresh as this
            # worker's own do: counting only its own, each of N workers refreshed N
            # times less often than one worker, and ranked on staler factors.
            rec.factors.on_learned(rec.covisit, len(rec.items), delta.adds)
            ga, gb = rows[delta.gram_a].tolist(), rows[delta.gram_b].tolist()
            for a, b, w in zip(ga, gb, delta.gram_w.tolist(), strict=True):
                rec.regression.add_pair(a, b, w)
            rec.regression.on_learned(len(rec.items), delta.adds)
        known = set(VALUE_FEATURES)
        for x, y in zip(delta.value_x.tolist(), delta.value_y.tolist(), strict=True):
            features = {f: v for f, v in zip(delta.value_features, x, strict=True) if f in known}
            rec.value.learn_example(dict.fromkeys(VALUE_FEATURES, 0.0) | features, y)
        self.ledger.add(p, delta.first, delta.last)
        self.counts["folded"] += 1
        return "applied"
